"""The loss registry, and weighted sums written in the config (``loss = "ce+focal"``, ``loss_weights``).

``register_loss(name, kinds)`` registers a factory ``(LossOptions) -> fn``; the kinds say what ``fn``
compares, and a task's ``[training]`` class names the kinds it takes (``loss_kinds``):

- ``logits`` (class logits (B, C) against labels (B,)) and ``dense`` (logit maps (B, C, *spatial) against
  label maps): ``fn(logits, labels, num_items_in_batch=None, reduction="mean")``. Without
  ``num_items_in_batch`` it reduces like PyTorch's ``reduction="mean"``; with it, it returns the per-item
  sum divided by that count, which keeps gradient accumulation and multi-process runs equal to one big
  batch; ``reduction="none"`` gives the per-item values (the Tester's per-sample losses). ``build_loss``
  returns a ``WeightedLoss`` that also keeps each term's last value, logged as ``loss_<name>``.
- ``contrastive``: ``fn(image_embeds, text_embeds, logit_scale, logit_bias=None, *, gather=True,
  gather_with_grad=True, local_loss=False, reduction="mean")`` (the CLIP task's ``infonce``, ``siglip``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from .errors import ConfigError
from .registry import Registry, did_you_mean

LossFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class LossOptions:
    """Options shared by the registered losses (from ``[training]``)."""

    label_smoothing: float = 0.0
    class_weights: Sequence[float] | None = None
    focal_gamma: float = 2.0


@dataclass(frozen=True)
class RegisteredLoss:
    """A registry entry: what the loss compares (``kinds``) and its factory."""

    kinds: tuple[str, ...]
    factory: Callable[[LossOptions], LossFn]


LOSSES: Registry[RegisteredLoss] = Registry("loss")


def register_loss(name: str, kinds: str | Sequence[str] = ("logits", "dense")):
    """Decorator registering a factory ``(LossOptions) -> fn`` under ``name``."""

    def decorator(factory: Callable[[LossOptions], LossFn]) -> Callable[[LossOptions], LossFn]:
        LOSSES.register(name)(RegisteredLoss((kinds,) if isinstance(kinds, str) else tuple(kinds), factory))
        return factory

    return decorator


def list_losses(pattern: str = "*", kinds: Sequence[str] | None = None) -> list[str]:
    """Registered loss names (those taking any of the given kinds)."""
    return [n for n in LOSSES.list(pattern) if kinds is None or set(LOSSES.get(n).kinds) & set(kinds)]


def loss_terms(spec: str) -> list[str]:
    return [n.strip() for n in spec.split("+") if n.strip()]


def check_loss(spec: str, kinds: Sequence[str], task: str) -> None:
    """One line for a loss name that is unknown or of a kind the task does not take."""
    valid = list_losses(kinds=kinds)
    terms = loss_terms(spec)
    if not terms:
        raise ConfigError(f"[training] loss is empty; valid: {', '.join(valid)}")
    for name in terms:
        if name not in valid:
            raise ConfigError(
                f"[training] loss: {name!r} is not a {task} loss{did_you_mean(name, valid)}; valid: {', '.join(valid)}"
            )
    summable = [n for n in terms if set(LOSSES.get(n).kinds) & {"logits", "dense"}]
    if len(terms) > 1 and len(summable) < len(terms):
        raise ConfigError(
            f"[training] loss = {spec!r}: contrastive losses are not summed; choose one of {', '.join(valid)}"
        )


def _weights(opts: LossOptions, logits: torch.Tensor) -> torch.Tensor | None:
    if opts.class_weights is None:
        return None
    if len(opts.class_weights) != logits.shape[1]:
        raise ConfigError(
            f"[training] class_weights has {len(opts.class_weights)} values, the model has {logits.shape[1]} classes"
        )
    return torch.as_tensor(opts.class_weights, dtype=logits.dtype, device=logits.device)


def _reduce(
    per_item: torch.Tensor, num_items_in_batch: int | torch.Tensor | None, denom=None, reduction: str = "mean"
) -> torch.Tensor:
    if reduction == "none":
        return per_item
    if num_items_in_batch is not None:
        return per_item.sum() / num_items_in_batch
    if denom is not None:
        return per_item.sum() / denom
    return per_item.mean()


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    """Dense per-pixel values (B, ...) -> one value per sample (mean over the spatial dims)."""
    return values.flatten(1).mean(1) if values.dim() > 1 else values


@register_loss("ce")
def cross_entropy(opts: LossOptions) -> LossFn:
    """Cross-entropy with optional label smoothing and class weights.

    Dense logits (B, C, *spatial) give one value per sample (pixel mean); a single-channel dense head is
    a sigmoid head and takes binary cross-entropy.
    """

    def fn(
        logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None, reduction="mean"
    ) -> torch.Tensor:
        if logits.dim() > 2 and logits.shape[1] == 1:
            per_pixel = F.binary_cross_entropy_with_logits(
                logits[:, 0], labels.to(logits.dtype), reduction="none"
            )
            return _reduce(_per_sample(per_pixel), num_items_in_batch, reduction=reduction)
        if logits.dim() > 2:
            per_item = _per_sample(
                F.cross_entropy(
                    logits,
                    labels.long(),
                    weight=_weights(opts, logits),
                    label_smoothing=opts.label_smoothing,
                    reduction="none",
                )
            )
            return _reduce(per_item, num_items_in_batch, reduction=reduction)
        weight = _weights(opts, logits)
        per_item = F.cross_entropy(
            logits, labels, weight=weight, label_smoothing=opts.label_smoothing, reduction="none"
        )
        # PyTorch's weighted mean divides by the summed weights of the targets.
        denom = weight[labels].sum() if weight is not None else None
        return _reduce(per_item, num_items_in_batch, denom, reduction)

    return fn


@register_loss("bce")
def bce_with_logits(opts: LossOptions) -> LossFn:
    """Binary cross-entropy with logits; integer class labels become one-hot targets, dense masks per pixel."""

    def fn(
        logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None, reduction="mean"
    ) -> torch.Tensor:
        target = labels
        if logits.dim() > 2 and logits.shape[1] == 1 and labels.dim() == logits.dim() - 1:
            target = labels.unsqueeze(1)  # dense sigmoid head: (B, H, W) masks against (B, 1, H, W) logits
        elif not labels.is_floating_point():
            target = (
                F.one_hot(labels.long(), logits.shape[1]).to(logits.dtype) if logits.dim() == 2 else labels
            )
        target = target.to(logits.dtype)
        pos_weight = _weights(opts, logits) if logits.dim() == 2 else None
        per_elem = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
        per_item = per_elem.flatten(1).mean(1) if per_elem.dim() > 1 else per_elem
        return _reduce(per_item, num_items_in_batch, reduction=reduction)

    return fn


@register_loss("focal")
def focal(opts: LossOptions) -> LossFn:
    """Focal loss (Lin et al. 2017): ``-alpha_y (1 - p_y)^gamma log p_y``; dense maps average per sample."""

    def fn(
        logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None, reduction="mean"
    ) -> torch.Tensor:
        if logits.dim() > 2 and logits.shape[1] == 1:  # dense sigmoid head: binary focal per pixel
            z, y = logits[:, 0].float(), labels.float()
            log_p = -F.binary_cross_entropy_with_logits(z, y, reduction="none")  # log p_t
            per_pixel = -((1 - log_p.exp()) ** opts.focal_gamma) * log_p
            return _reduce(_per_sample(per_pixel), num_items_in_batch, reduction=reduction).to(logits.dtype)
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, labels.long().unsqueeze(1)).squeeze(1)
        per_item = -((1 - log_p.exp()) ** opts.focal_gamma) * log_p
        weight = _weights(opts, logits)
        if weight is not None:
            per_item = per_item * weight[labels].float()
        return _reduce(_per_sample(per_item), num_items_in_batch, reduction=reduction).to(logits.dtype)

    return fn


def _monai_region_loss(kind: str, **options):
    """Dice / Tversky from MONAI, one value per sample: sigmoid for a 1-channel head, else softmax."""

    built: dict[bool, torch.nn.Module] = {}  # one MONAI loss per head type, built on first use

    def loss_for(binary: bool) -> torch.nn.Module:
        if binary not in built:
            try:
                from monai.losses import DiceLoss, TverskyLoss
            except ImportError:
                raise ConfigError(
                    f"[training] loss {kind!r} needs MONAI: pip install 'neurotrain-hf[medical]'"
                ) from None
            cls = DiceLoss if kind == "dice" else TverskyLoss
            built[binary] = cls(
                sigmoid=binary,
                softmax=not binary,
                to_onehot_y=not binary,
                include_background=binary,
                reduction="none",
                **options,
            )
        return built[binary]

    def fn(
        logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None, reduction="mean"
    ) -> torch.Tensor:
        binary = logits.shape[1] == 1
        loss = loss_for(binary)
        target = labels.unsqueeze(1)
        per_item = loss(logits.float(), target.float() if binary else target).flatten(1).mean(1)
        if kind == "focal_tversky":
            per_item = per_item.clamp_min(0) ** 0.75  # Abraham & Khan 2019, gamma = 0.75
        return _reduce(per_item, num_items_in_batch, reduction=reduction).to(logits.dtype)

    return fn


@register_loss("dice", kinds="dense")
def dice(opts: LossOptions) -> LossFn:
    """Soft Dice (MONAI ``DiceLoss``), per sample; background excluded for softmax heads."""
    return _monai_region_loss("dice", smooth_nr=1e-5, smooth_dr=1e-5)


@register_loss("tversky", kinds="dense")
def tversky(opts: LossOptions) -> LossFn:
    """Tversky loss (MONAI ``TverskyLoss``, alpha 0.3 on false positives, beta 0.7 on false negatives)."""
    return _monai_region_loss("tversky", alpha=0.3, beta=0.7)


@register_loss("focal_tversky", kinds="dense")
def focal_tversky(opts: LossOptions) -> LossFn:
    """Focal Tversky loss: the per-sample Tversky loss raised to 0.75."""
    return _monai_region_loss("focal_tversky", alpha=0.3, beta=0.7)


@register_loss("cldice", kinds="dense")
def cldice(opts: LossOptions) -> LossFn:
    """Soft clDice (Shit et al. 2021, MONAI ``SoftclDiceLoss``): topology of thin tubes, binary heads."""

    def fn(
        logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None, reduction="mean"
    ) -> torch.Tensor:
        try:
            from monai.losses import SoftclDiceLoss
        except ImportError:
            raise ConfigError(
                "[training] loss 'cldice' needs MONAI: pip install 'neurotrain-hf[medical]'"
            ) from None
        if logits.shape[1] != 1:
            raise ConfigError("[training] loss 'cldice' is for binary (1-channel sigmoid) heads")
        # smooth_nr/smooth_dr = 1 as in the paper's code; ``smooth`` is the harmonic mean's epsilon (1e-4)
        loss = SoftclDiceLoss(iter_=3, smooth_nr=1.0, smooth_dr=1.0, sigmoid=True, reduction="none")
        per_item = loss(logits.float(), labels.float().unsqueeze(1)).reshape(len(logits))
        return _reduce(per_item, num_items_in_batch, reduction=reduction).to(logits.dtype)

    return fn


class WeightedLoss:
    """``sum_i w_i * term_i``; keeps the last (detached, unweighted) value of each term for logging."""

    def __init__(self, names: Sequence[str], weights: Sequence[float], terms: Sequence[LossFn]) -> None:
        self.names, self.weights, self.terms = list(names), list(weights), list(terms)
        self.last_terms: dict[str, torch.Tensor] = {}

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        values = [t(logits, labels, num_items_in_batch) for t in self.terms]
        if len(values) > 1:
            self.last_terms = {n: v.detach() for n, v in zip(self.names, values)}
        return (
            values[0] * self.weights[0]
            if len(values) == 1
            else sum(w * v for w, v in zip(self.weights, values))
        )

    def per_item(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The weighted sum of the terms per item, shape (B,)."""
        return sum(w * t(logits, labels, reduction="none") for w, t in zip(self.weights, self.terms))


def build_loss(
    spec: str, weights: Sequence[float] | None = None, opts: LossOptions | None = None
) -> WeightedLoss:
    """Build ``"a+b"`` as ``w_a * a + w_b * b`` (weights default to 1)."""
    opts = opts or LossOptions()
    names = loss_terms(spec)
    if not names:
        raise ConfigError("[training] loss is empty; expected a name such as 'ce' or 'ce+focal'")
    if weights is not None and len(weights) != len(names):
        raise ConfigError(
            f"[training] loss_weights has {len(weights)} values for {len(names)} loss terms ({spec!r})"
        )
    try:
        terms = [LOSSES.get(n).factory(opts) for n in names]
    except KeyError as exc:
        raise ConfigError(f"[training] loss: {exc}") from None
    return WeightedLoss(names, list(weights) if weights is not None else [1.0] * len(terms), terms)


@dataclass
class LossFields:
    """``[training]`` keys of tasks that train with registry losses on ``(logits, labels)`` (a mixin of
    their ``NeuroTrainingArguments`` subclass, which names the kinds it takes: ``logits`` or ``dense``)."""

    loss_kinds: ClassVar[tuple[str, ...]] = ("logits",)

    loss: str = field(
        default="ce",
        metadata={
            "help": "Loss name from the registry, or a sum such as `ce+focal`; `neurotrain list losses --task`."
        },
    )
    loss_weights: list[float] | None = field(
        default=None, metadata={"help": "Weights of the terms of a summed loss (default: all 1.0)."}
    )
    class_weights: list[float] | None = field(
        default=None, metadata={"help": "Per-class weights for cross-entropy and focal losses."}
    )
    label_smoothing: float = field(
        default=0.0,
        metadata={
            "help": "Label smoothing of the cross-entropy loss (the loss's own option; eval and test use it too).",
            "min": 0.0,
            "max": 1.0,
        },
    )
    focal_gamma: float = field(
        default=2.0, metadata={"help": "Focusing parameter of the focal loss.", "min": 0.0}
    )

    def __post_init__(self) -> None:
        if getattr(self, "label_smoothing_factor", 0.0):
            raise ConfigError(
                "label_smoothing_factor is not used: set [training] label_smoothing (the loss's own option)"
            )
        super().__post_init__()  # type: ignore[misc]

    def build_loss(self) -> WeightedLoss:
        """The configured ``WeightedLoss``."""
        opts = LossOptions(self.label_smoothing, self.class_weights, self.focal_gamma)
        return build_loss(self.loss, self.loss_weights, opts)
