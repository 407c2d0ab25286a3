"""The diffusion task's metric family: FID / KID between generated and real images through one feature
network, and a classifier's accuracy on class-conditioned samples (``metrics.generation``)."""

from __future__ import annotations

from collections.abc import Sequence

from ...metrics.registry import register_family


@register_family(
    "generation",
    ("fid", "kid", "sample_accuracy"),
    reports=("kid_std", "fid_samples"),
    lower_is_better=("fid", "kid", "kid_std"),
)
def generation_family(names: Sequence[str], **_: object):
    from ...metrics.generation import GenerationAccumulator

    return GenerationAccumulator()
