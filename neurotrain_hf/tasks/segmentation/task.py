"""``SegmentationTask``: the segmentation hooks the generic runner, Tester and Predictor call.

Inference (full image or sliding window, test-time flips), the threshold and the post-processing chosen
in the config are one ``SegmentationSettings`` object, written once into the saved ``config.json`` so the
Predictor, ``transformers.pipeline`` and the demos reproduce the Tester from the model folder alone.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from ..base import SampleBatch, TaskData, TestOutputs
from ..image_task import ImageTask
from . import outputs, prediction
from .data import prepare
from .dense import DenseModel
from .inference import SegmentationInference
from .postprocess import PostProcessConfig
from .settings import SegmentationSettings
from .trainer import SegmentationTrainer
from .unet import UNetForSemanticSegmentation
from .volume_transforms import patch_size

logger = logging.getLogger(__name__)
PIXEL_METRICS = ("f1", "accuracy", "sensitivity", "specificity", "precision", "auc", "iou", "mcc")
DEFAULT_PAD_MULTIPLE = 32  # other networks (hf/): the usual stride of a 5-level encoder


def settings_from_args(args, model: Any, roi_default: Any, saved: SegmentationSettings | None = None):
    """The ``SegmentationSettings`` a ``[training]`` section implies for a model (our networks pad
    themselves; others are padded to 32). A threshold validation chose (``saved``) is kept."""
    own = isinstance(
        getattr(model, "get_base_model", lambda: model)(), (UNetForSemanticSegmentation, DenseModel)
    )
    return SegmentationSettings(
        mode=args.eval_mode,
        roi_size=args.roi_size or roi_default,
        overlap=args.sw_overlap,
        sw_batch_size=args.sw_batch_size,
        blend=args.sw_blend,
        pad_multiple=1 if own else DEFAULT_PAD_MULTIPLE,
        mirror_axes=list(args.mirror_axes or []),
        threshold=args.threshold,
        best_threshold=saved.best_threshold if saved is not None else None,
        postprocess=PostProcessConfig(
            opening=args.post_opening,
            closing=args.post_closing,
            fill_holes=args.post_fill_holes,
            min_size=args.post_min_size,
            keep_largest=args.post_keep_largest,
            connectivity=args.post_connectivity,
        ),
    )


class SegmentationTask(ImageTask):
    """Images or volumes -> label maps; models load with ``AutoModelForSemanticSegmentation``."""

    name = "segmentation"
    auto_model = "AutoModelForSemanticSegmentation"
    hub_task = "image-segmentation"
    description = "medical image segmentation"
    medical = True
    run_files = ("fingerprint.json",)  # volumes: the dataset fingerprint behind the preprocessing

    def __init__(self) -> None:
        self._settings: SegmentationSettings | None = None  # the run's live settings (build_trainer)

    @classmethod
    def claims(cls, model_config: dict[str, Any]) -> bool:
        return any(a.endswith("ForSemanticSegmentation") for a in model_config.get("architectures") or [])

    def metric_protocol(self, key: str, config: dict[str, Any]) -> str:
        threshold = config.get("training", {}).get("threshold", 0.5)
        if threshold == "best":
            threshold = "chosen on validation (best F1)"
        if key in PIXEL_METRICS:
            name = "Dice" if key == "f1" else key
            return f"{name} over the pixels inside the FOV mask, threshold {threshold}"
        if key.startswith("best_"):
            return f"{key}: the best value over a threshold sweep inside the FOV mask"
        volumes = bool(config.get("augmentation", {}).get("patch_size"))
        if key in ("mean_dice", "mean_iou", "mean_nsd", "mean_hd95") or key.split("_")[0] in (
            "dice",
            "nsd",
            "hd95",
        ):
            if volumes:
                return (
                    f"{key}: per volume on the original voxel grid (predictions resampled back from the training "
                    "spacing), per class or region, averaged (background excluded); distances in mm"
                )
            return f"{key}: per image and class over the whole image, averaged (background excluded)"
        return key

    # --- training ---------------------------------------------------------------------------------
    def prepare_data(self, config) -> TaskData:
        return prepare(config)

    def build_trainer(self, config, model, data: TaskData, callbacks: list | None = None):
        args = config.training
        volumes = data.info.spatial_dims == 3
        roi = patch_size(config.augmentation) if volumes else config.augmentation.random_crop
        saved = SegmentationSettings.of(model.config)
        self._settings = settings_from_args(args, model, roi, saved)
        self._settings.save(model.config)
        return SegmentationTrainer(
            model,
            args,
            train_dataset=data.splits["train"],
            eval_dataset=data.splits.get("valid"),
            info=data.info,
            settings=self._settings,
            inference=SegmentationInference(self._settings),
            callbacks=callbacks,
        )

    def settings(self, model_config: Any) -> SegmentationSettings:
        return SegmentationSettings.of(model_config)

    def inference(self, model_config: Any = None) -> SegmentationInference:
        return SegmentationInference(SegmentationSettings.of(model_config))

    def finalize_model(self, model: Any, valid_artifacts: dict[str, Any]) -> None:
        """The validation best-F1 threshold joins the settings (used where ``threshold = "best"``)."""
        settings = self._settings or SegmentationSettings.of(model.config)
        if "best_f1_threshold" in valid_artifacts:
            settings.best_threshold = float(valid_artifacts["best_f1_threshold"])
        elif settings.threshold == "best" and settings.best_threshold is None:
            logger.warning("threshold = 'best': validation chose none (a multi-class head?); 0.5 is used")
        settings.save(model.config)

    # --- prediction ---------------------------------------------------------------------------------
    def read_input(self, source: str | Path) -> str:
        return prediction.check_volume(source) if prediction.is_volume(source) else super().read_input(source)

    def batch_key(self, item: Any) -> Hashable:
        return object() if prediction.is_volume(item) else super().batch_key(item)  # volumes one at a time

    def preprocess(self, processor: Any, items: Sequence[Any], settings: Any = None) -> dict[str, Any]:
        return prediction.preprocess(processor, items)

    def predictions(self, outputs: Any, model: Any, inputs=None, settings=None) -> list[dict[str, Any]]:
        return prediction.records(outputs, inputs, settings or SegmentationSettings.of(model.config))

    def explain_score(self, outputs: Any, target: int | None = None, settings: Any = None) -> tuple[Any, int]:
        return prediction.explain_score(outputs, target, settings or SegmentationSettings())

    def save_prediction(self, record: dict[str, Any], source, out_dir) -> list[Path]:
        return prediction.save(record, source, out_dir)

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        return prediction.summary(record)

    # --- test outputs ---------------------------------------------------------------------------------
    def sample_records(self, batch: SampleBatch, out: TestOutputs) -> list[dict[str, Any]]:
        if batch.references.get("spacing") is not None:
            return outputs.volume_records(batch, out)
        return outputs.image_records(batch, out)

    def write_samples(self, batch: SampleBatch, out: TestOutputs) -> None:
        if batch.references.get("spacing") is not None:
            outputs.volume_overlays(batch, out)
        else:
            outputs.image_overlays(batch, out)

    # --- sharing --------------------------------------------------------------------------------------
    def build_demo(self, folder: Path, model_name: str, examples: Any = None, **options: Any) -> Any:
        processor = self.load_processor(folder)
        if isinstance(processor, prediction.NeuroVolumeProcessor):
            from .demo_volumes import build_demo
        else:
            from .demo import build_demo
        return build_demo(folder, model_name, examples, **options)
