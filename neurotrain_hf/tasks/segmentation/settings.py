"""``SegmentationSettings``: how a segmentation model turns an input into a label map, in one object.

Inference (full image or sliding window, test-time flips), the score-to-label threshold and the
post-processing are written once into the model's ``config.json`` (``neurotrain_inference``) and read
from there by evaluation, the Tester, the Predictor, the image processor's
``post_process_semantic_segmentation`` (``transformers.pipeline``) and the demos. ``threshold = "best"``
uses the threshold validation chose (``best_threshold``, saved when training ends; 0.5 before that).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..base import SETTINGS_KEY
from .postprocess import PostProcessConfig

LEGACY_KEY = "neurotrain_postprocess"  # folders saved before the settings were one object
DEFAULT_THRESHOLD = 0.5


@dataclass
class SegmentationSettings:
    """Inference, threshold and post-processing of a segmentation model (saved in ``config.json``)."""

    mode: str = "full"  # "full" image (padded to pad_multiple) or "sliding" window
    roi_size: Any = None  # sliding-window size (int, or one value per spatial axis)
    overlap: float = 0.5
    sw_batch_size: int = 8
    blend: str = "gaussian"
    pad_multiple: int = 1
    mirror_axes: list[int] = field(default_factory=list)
    threshold: float | str = DEFAULT_THRESHOLD  # binary heads; "best": the validation-chosen one
    best_threshold: float | None = None
    postprocess: PostProcessConfig = field(default_factory=PostProcessConfig)

    @property
    def threshold_value(self) -> float:
        """The threshold in use: the number, or for ``"best"`` the validation choice (0.5 until chosen)."""
        if self.threshold == "best":
            return float(self.best_threshold) if self.best_threshold is not None else DEFAULT_THRESHOLD
        return float(self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> SegmentationSettings:
        """From a saved ``config.json`` value (unknown keys ignored, missing ones default)."""
        values = dict(values or {})
        post = values.pop("postprocess", None) or {}
        known = {f.name for f in fields(cls)}
        post_known = {f.name for f in fields(PostProcessConfig)}
        return cls(
            **{k: v for k, v in values.items() if k in known},
            postprocess=PostProcessConfig(**{k: v for k, v in post.items() if k in post_known}),
        )

    @classmethod
    def of(cls, model_config: Any) -> SegmentationSettings:
        """The settings saved in a model config (defaults for a foreign model). Folders saved before the
        settings were one object kept the post-processing and the tuned threshold under another key."""
        values = dict(getattr(model_config, SETTINGS_KEY, None) or {})
        legacy = getattr(model_config, LEGACY_KEY, None)
        if legacy and "postprocess" not in values:
            values["postprocess"] = legacy
            values.setdefault("best_threshold", legacy.get("best_threshold"))
        return cls.from_dict(values)

    def save(self, model_config: Any) -> None:
        """Write the settings into the model config (the one copy ``config.json`` holds)."""
        setattr(model_config, SETTINGS_KEY, self.to_dict())
