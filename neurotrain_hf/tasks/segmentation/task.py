"""``SegmentationTask``: the segmentation hooks the generic runner, Tester and Predictor call.

Inference settings (full image or sliding window), the threshold and the post-processing chosen in
the config are written into the saved ``config.json`` (``neurotrain_inference``,
``neurotrain_postprocess``) so the Predictor reproduces the Tester from the model folder alone.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from ...models.dense import DenseModel
from ...models.registry import logits_of
from ...models.unet import UNetForSemanticSegmentation
from ..base import Task, TaskData
from .data import prepare
from .inference import SegmentationInference
from .postprocess import PostProcessConfig, postprocess
from .trainer import SegmentationTrainer
from .volume_transforms import patch_size

PIXEL_METRICS = ("f1", "accuracy", "sensitivity", "specificity", "precision", "auc", "iou", "mcc")
DEFAULT_PAD_MULTIPLE = 32  # other networks (hf/): the usual stride of a 5-level encoder


def inference_settings(args, model: Any, roi_default: int | None) -> dict[str, Any]:
    """The ``SegmentationInference`` keyword arguments a config implies for a model."""
    dense = (UNetForSemanticSegmentation, DenseModel)
    multiple = model.size_multiple if isinstance(model, dense) else DEFAULT_PAD_MULTIPLE
    return {
        "mode": args.eval_mode,
        "roi_size": args.roi_size or roi_default,
        "overlap": args.sw_overlap,
        "sw_batch_size": args.sw_batch_size,
        "blend": args.sw_blend,
        "pad_multiple": multiple,
        "threshold": args.threshold,
        "mirror_axes": list(args.mirror_axes or []),
    }


def postprocess_settings(args) -> dict[str, Any]:
    """``PostProcessConfig`` fields from the ``post_*`` options and the threshold."""
    return {
        "threshold": args.threshold,
        "opening": args.post_opening,
        "closing": args.post_closing,
        "fill_holes": args.post_fill_holes,
        "min_size": args.post_min_size,
        "keep_largest": args.post_keep_largest,
        "connectivity": args.post_connectivity,
    }


class SegmentationTask(Task):
    """Images -> label maps; models load with ``AutoModelForSemanticSegmentation``."""

    name = "segmentation"
    auto_model = "AutoModelForSemanticSegmentation"
    hub_task = "image-segmentation"
    description = "medical image segmentation"
    medical = True

    def metric_protocol(self, key: str, config: dict[str, Any]) -> str:
        threshold = config.get("training", {}).get("threshold", 0.5)
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

    def prepare_data(self, config) -> TaskData:
        return prepare(config)

    def build_trainer(self, config, model, data: TaskData, callbacks: list | None = None):
        args = config.training
        volumes = data.info.spatial_dims == 3
        roi = patch_size(config.augmentation) if volumes else config.augmentation.random_crop
        model.config.neurotrain_inference = inference_settings(args, model, roi)
        model.config.neurotrain_postprocess = postprocess_settings(args)
        return SegmentationTrainer(
            model,
            args,
            train_dataset=data.splits["train"],
            eval_dataset=data.splits.get("valid"),
            num_labels=data.info.num_labels,
            mean=data.info.mean,
            std=data.info.std,
            sources=data.info.sources,
            label_names=data.info.label_names,
            regions=data.info.regions,
            inference=self.inference(model.config),
            callbacks=callbacks,
        )

    def finalize_model(self, model: Any, valid_artifacts: dict[str, Any]) -> None:
        """The validation best-F1 threshold is saved with the model (the Predictor still uses ``threshold``)."""
        if "best_f1_threshold" in valid_artifacts:
            settings = dict(model.config.neurotrain_postprocess)
            settings["best_threshold"] = valid_artifacts["best_f1_threshold"]
            model.config.neurotrain_postprocess = settings

    def inference(self, model_config: Any = None) -> SegmentationInference:
        settings = getattr(model_config, "neurotrain_inference", None) or {}
        return SegmentationInference(**settings)

    def predictions(self, outputs: Any, model: Any) -> list[dict[str, Any]]:
        """Per image: the post-processed label map (uint8) and, for binary heads, the probability map."""
        settings = getattr(model.config, "neurotrain_postprocess", None) or {}
        cfg = PostProcessConfig(
            **{f.name: settings[f.name] for f in fields(PostProcessConfig) if f.name in settings}
        )
        logits = logits_of(outputs).float()
        num_labels = logits.shape[1]
        records = []
        for item in logits:
            if num_labels == 1:
                probability = item[0].sigmoid().cpu().numpy()
                labels = (probability >= cfg.threshold).astype(np.uint8)
            else:
                probability = None
                labels = item.argmax(0).cpu().numpy().astype(np.uint8)
            if cfg.active():
                labels = postprocess(labels, max(num_labels, 2), cfg).astype(np.uint8)
            records.append({"mask": labels, "probability": probability, "postprocess": asdict(cfg)})
        return records

    def save_prediction(self, record: dict[str, Any], source, out_dir) -> list[Path]:
        """2D: ``<name>_mask.png``; volumes: ``<name>_seg.nii.gz`` with the input's affine and header, and
        ``<name>_seg.png`` (the slice with the most foreground, predicted classes tinted)."""
        out = Path(out_dir or "predictions")
        out.mkdir(parents=True, exist_ok=True)
        stem = _stem(source)
        if "affine" not in record:
            from PIL import Image

            from .overlay import mask_to_png_array

            path = out / f"{stem}_mask.png"
            Image.fromarray(mask_to_png_array(record["mask"])).save(path)
            return [path]
        import nibabel as nib
        from PIL import Image

        from ...data.nifti import read_image
        from .volume_overlay import slice_picture

        nifti = nib.Nifti1Image(
            record["mask"].astype(np.uint8), record["affine"], header=record["header"].copy()
        )
        nifti.set_data_dtype(np.uint8)
        nifti.header.set_slope_inter(1.0, 0.0)
        mask_path, png_path = out / f"{stem}_seg.nii.gz", out / f"{stem}_seg.png"
        nib.save(nifti, str(mask_path))
        image = read_image(record["image"][:1])[0][0]
        Image.fromarray(slice_picture(image, record["mask"])).save(png_path)
        return [mask_path, png_path]

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        mask = record["mask"]
        out = {"shape": list(mask.shape), "foreground_fraction": round(float((mask > 0).mean()), 6)}
        if "spacing" in record:  # volumes: each class's volume in millilitres
            voxel_ml = float(np.prod(record["spacing"])) / 1000.0
            counts = np.bincount(mask.ravel())
            out["volume_ml"] = {
                str(c): round(float(n) * voxel_ml, 3) for c, n in enumerate(counts) if c and n
            }
        return out


def _stem(source) -> str:
    """A file or case-folder name without its extensions (``img0001.nii.gz`` -> ``img0001``)."""
    name = Path(str(source).rstrip("/")).name
    for suffix in (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem
