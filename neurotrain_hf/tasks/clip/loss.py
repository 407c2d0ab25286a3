"""Contrastive losses of CLIP (symmetric InfoNCE) and SigLIP (pairwise sigmoid), with open_clip's gathering.

With several processes the features of every rank are gathered so each sample sees the negatives of
the global batch. ``gather_with_grad`` gathers through ``torch.distributed.nn`` so gradients flow back
to the rank that owns a feature; without it the gathered copies are constants except this rank's own
slice (open_clip's default; the gradients are then 1/world of the single-process ones). ``local_loss`` computes only this rank's rows against all columns (memory
linear in the global batch instead of quadratic). Either way, the loss and the DDP-averaged gradients
on N ranks x batch B equal one rank's on the concatenated N*B batch with ``gather_with_grad``
(tested). Both are registered in the loss registry as ``contrastive`` losses; ``reduction="none"`` gives
each image's loss against this batch (the Tester's per-sample values).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...losses import LossOptions, register_loss

MAX_LOGIT_SCALE = math.log(100.0)  # open_clip clamps the learnable log-temperature to [0, ln 100]


def _world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_features(features: torch.Tensor, with_grad: bool) -> torch.Tensor:
    """All ranks' features concatenated in rank order (this rank's slice keeps its gradient)."""
    rank, world = _world()
    if world == 1:
        return features
    if with_grad:
        from torch.distributed import _functional_collectives as fc

        return fc.wait_tensor(
            fc.all_gather_single_autograd(features.contiguous(), 0, torch.distributed.group.WORLD)
        )
    parts = [torch.zeros_like(features) for _ in range(world)]
    torch.distributed.all_gather(parts, features.detach().contiguous())
    parts[rank] = features
    return torch.cat(parts, dim=0)


def _gathered(image: torch.Tensor, text: torch.Tensor, gather_with_grad: bool, gather: bool = True):
    rank, world = _world() if gather else (0, 1)
    if world == 1:
        return image, text, 0, 1
    return (
        gather_features(image, gather_with_grad),
        gather_features(text, gather_with_grad),
        rank * image.shape[0],
        world,
    )


def clip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | None = None,
    *,
    gather: bool = True,
    gather_with_grad: bool = True,
    local_loss: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Symmetric InfoNCE over the (global) batch; embeddings are L2-normalised here (``logit_bias`` unused).

    ``reduction="none"``: per pair i, the mean of image i's and text i's cross-entropies.
    """
    image = F.normalize(image_embeds, dim=-1)
    text = F.normalize(text_embeds, dim=-1)
    scale = logit_scale.clamp(0, MAX_LOGIT_SCALE).exp()
    all_image, all_text, offset, world = _gathered(image, text, gather_with_grad, gather)
    if world > 1 and local_loss:
        per_image = scale * image @ all_text.T
        per_text = scale * text @ all_image.T
        targets = torch.arange(image.shape[0], device=image.device) + offset
    else:
        per_image = scale * all_image @ all_text.T
        per_text = per_image.T
        targets = torch.arange(all_image.shape[0], device=image.device)
    per_pair = (
        F.cross_entropy(per_image, targets, reduction="none")
        + F.cross_entropy(per_text, targets, reduction="none")
    ) / 2
    return per_pair if reduction == "none" else per_pair.mean()


def siglip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | None = None,
    *,
    gather: bool = True,
    gather_with_grad: bool = True,
    local_loss: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Pairwise sigmoid loss (SigLIP): every (image, text) pair is a binary match/non-match.

    Summed over pairs and divided by the number of images, as in the paper. With ``local_loss`` each
    rank scores its own images against all texts (the mean over ranks is the global loss); without it
    every rank scores the global image-text matrix. ``reduction="none"``: each image's summed pair losses.
    """
    if logit_bias is None:
        raise ValueError("the siglip loss needs the model's logit_bias")
    image = F.normalize(image_embeds, dim=-1)
    text = F.normalize(text_embeds, dim=-1)
    scale = logit_scale.exp()
    all_image, all_text, offset, world = _gathered(image, text, gather_with_grad, gather)
    if world > 1 and local_loss:
        logits = scale * image @ all_text.T + logit_bias
        rows = torch.arange(image.shape[0], device=image.device)
        signs = -torch.ones_like(logits)
        signs[rows, rows + offset] = 1.0
        per_image = -F.logsigmoid(signs * logits).sum(1)
    else:
        logits = scale * all_image @ all_text.T + logit_bias
        signs = 2 * torch.eye(logits.shape[0], device=logits.device, dtype=logits.dtype) - 1
        per_image = -F.logsigmoid(signs * logits).sum(1)
    return per_image if reduction == "none" else per_image.mean()


@register_loss("infonce", kinds="contrastive")
def infonce(opts: LossOptions):
    """CLIP's symmetric InfoNCE with a learnable temperature (clamped to [0, ln 100], as open_clip)."""
    return clip_loss


@register_loss("siglip", kinds="contrastive")
def siglip(opts: LossOptions):
    """SigLIP's pairwise sigmoid loss (needs the model's learnable ``logit_bias``)."""
    return siglip_loss
