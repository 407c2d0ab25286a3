"""Loss registry and weighted sums written in the config (``loss = "ce+focal"``, ``loss_weights = [1, 0.5]``).

Every loss is ``fn(logits, labels, num_items_in_batch=None) -> scalar``. Without ``num_items_in_batch``
it reduces like PyTorch's ``reduction="mean"``; with it, it returns the per-item sum divided by that
count, which keeps gradient accumulation and multi-process runs equal to one big batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import ConfigError
from .registry import Registry

LossFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class LossOptions:
    """Options shared by the registered losses (from ``[training]``)."""

    label_smoothing: float = 0.0
    class_weights: Sequence[float] | None = None
    focal_gamma: float = 2.0


LOSSES: Registry[Callable[[LossOptions], LossFn]] = Registry("loss")
register_loss = LOSSES.register


def list_losses(pattern: str = "*") -> list[str]:
    return LOSSES.list(pattern)


def _weights(opts: LossOptions, logits: torch.Tensor) -> torch.Tensor | None:
    if opts.class_weights is None:
        return None
    if len(opts.class_weights) != logits.shape[1]:
        raise ConfigError(
            f"[training] class_weights has {len(opts.class_weights)} values, the model has {logits.shape[1]} classes"
        )
    return torch.as_tensor(opts.class_weights, dtype=logits.dtype, device=logits.device)


def _reduce(
    per_item: torch.Tensor, num_items_in_batch: int | torch.Tensor | None, denom=None
) -> torch.Tensor:
    if num_items_in_batch is not None:
        return per_item.sum() / num_items_in_batch
    if denom is not None:
        return per_item.sum() / denom
    return per_item.mean()


@register_loss("ce")
def cross_entropy(opts: LossOptions) -> LossFn:
    """Cross-entropy with optional label smoothing and class weights."""

    def fn(logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        weight = _weights(opts, logits)
        per_item = F.cross_entropy(
            logits, labels, weight=weight, label_smoothing=opts.label_smoothing, reduction="none"
        )
        # PyTorch's weighted mean divides by the summed weights of the targets.
        denom = weight[labels].sum() if weight is not None else None
        return _reduce(per_item, num_items_in_batch, denom)

    return fn


@register_loss("bce")
def bce_with_logits(opts: LossOptions) -> LossFn:
    """Binary cross-entropy with logits; integer class labels become one-hot targets."""

    def fn(logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        target = labels
        if not labels.is_floating_point():
            target = (
                F.one_hot(labels.long(), logits.shape[1]).to(logits.dtype) if logits.dim() == 2 else labels
            )
        target = target.to(logits.dtype)
        pos_weight = _weights(opts, logits) if logits.dim() == 2 else None
        per_elem = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
        per_item = per_elem.flatten(1).mean(1) if per_elem.dim() > 1 else per_elem
        return _reduce(per_item, num_items_in_batch)

    return fn


@register_loss("focal")
def focal(opts: LossOptions) -> LossFn:
    """Multi-class focal loss (Lin et al. 2017): ``-alpha_y (1 - p_y)^gamma log p_y``."""

    def fn(logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, labels.long().unsqueeze(1)).squeeze(1)
        per_item = -((1 - log_p.exp()) ** opts.focal_gamma) * log_p
        weight = _weights(opts, logits)
        if weight is not None:
            per_item = per_item * weight[labels].float()
        return _reduce(per_item, num_items_in_batch).to(logits.dtype)

    return fn


def build_loss(spec: str, weights: Sequence[float] | None = None, opts: LossOptions | None = None) -> LossFn:
    """Build ``"a+b"`` as ``w_a * a + w_b * b``; a single name returns that loss itself."""
    opts = opts or LossOptions()
    names = [n.strip() for n in spec.split("+") if n.strip()]
    if not names:
        raise ConfigError("[training] loss is empty; expected a name such as 'ce' or 'ce+focal'")
    if weights is not None and len(weights) != len(names):
        raise ConfigError(
            f"[training] loss_weights has {len(weights)} values for {len(names)} loss terms ({spec!r})"
        )
    try:
        terms = [LOSSES.get(n)(opts) for n in names]
    except KeyError as exc:
        raise ConfigError(f"[training] loss: {exc}") from None
    if len(terms) == 1 and weights is None:
        return terms[0]
    coefs = list(weights) if weights is not None else [1.0] * len(terms)

    def combined(logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        return sum(c * t(logits, labels, num_items_in_batch) for c, t in zip(coefs, terms))

    return combined
