"""The segmentation Predictor hooks: 2D images or NIfTI volumes in, label maps out.

A ``neurotrain predict`` argument that is a NIfTI file (``.nii``/``.nii.gz``, any case) or a case folder
of channel volumes (BraTS) is a volume: the volume processor loads it, the sliding-window inference
restores the logits onto the file's own grid, and the record carries the file's affine and header (a
NIfTI mask is written by default). Anything else is an image file. Scores become labels through the one
function, ``postprocess.scores_to_labels``, at the settings' threshold, then the saved post-processing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import NeuroTrainError
from ...models.registry import logits_of
from .nifti import header_info, is_nifti
from .postprocess import postprocess, scores_to_labels
from .settings import SegmentationSettings
from .volume_processor import NeuroVolumeProcessor

SUFFIXES = (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def is_volume(item: Any) -> bool:
    return isinstance(item, (str, Path)) and (Path(item).is_dir() or is_nifti(item))


def check_volume(source: str | Path) -> str:
    """A NIfTI file whose header reads, or a case folder; one line naming it otherwise."""
    if Path(source).is_file():
        header_info([str(source)])
    elif not Path(source).is_dir():
        raise NeuroTrainError(f"{source}: file not found")
    return str(source)


def preprocess_volume(processor: Any, path: str) -> dict[str, Any]:
    """One volume as a batch of one, with its geometry, header and channel files."""
    if not isinstance(processor, NeuroVolumeProcessor):
        raise NeuroTrainError(f"{path}: a volume, but this is a 2D model (it takes image files)")
    item = processor.load(path)
    inputs: dict[str, Any] = {k: v[None] for k, v in item.items() if torch.is_tensor(v)}
    inputs.update(header=[item["header"]], files=[processor.files(path)])
    return inputs


def records(
    outputs: Any, inputs: dict[str, Any] | None, settings: SegmentationSettings
) -> list[dict[str, Any]]:
    """Per input: the post-processed label map (uint8) at its target size (``inputs["target_sizes"]``:
    the image's own, when the processor resized it), the foreground probability of binary heads and,
    for volumes, the geometry to write the map back as NIfTI."""
    logits = logits_of(outputs).float()
    sizes = (inputs or {}).get("target_sizes")
    post = settings.postprocess
    num_labels = max(logits.shape[1], 2)
    out = []
    for k in range(len(logits)):
        item = logits[k : k + 1]
        if sizes is not None and tuple(item.shape[2:]) != tuple(sizes[k]):
            item = F.interpolate(item, size=tuple(sizes[k]), mode="bilinear", align_corners=False)
        labels, probability = scores_to_labels(item, settings.threshold_value)
        mask = labels[0].cpu().numpy().astype(np.uint8)
        if post.active():
            mask = postprocess(mask, num_labels, post).astype(np.uint8)
        record: dict[str, Any] = {
            "mask": mask,
            "probability": probability[0].cpu().numpy() if logits.shape[1] == 1 else None,
            "threshold": settings.threshold_value,
            "postprocess": asdict(post),
        }
        if inputs is not None and inputs.get("dst_affine") is not None:
            record.update(
                affine=inputs["dst_affine"][k].cpu().numpy(),
                header=inputs["header"][k],
                spacing=inputs["spacing"][k].cpu().tolist(),
                image=inputs["files"][k],
            )
        out.append(record)
    return out


def explain_score(outputs: Any, target: int | None, settings: SegmentationSettings) -> tuple[Any, int]:
    """Grad-CAM's score for one input: the ``target`` class's logits summed over the pixels predicted as
    that class (all pixels when none are); binary heads score class 0 by the negated logit. Default
    target: the foreground class predicted on the most pixels (1 when none is)."""
    logits = logits_of(outputs)[0]
    labels = scores_to_labels(logits[None].detach(), settings.threshold_value)[0][0]
    classes = max(logits.shape[0], 2)
    if target is None:
        counts = torch.bincount(labels.flatten(), minlength=classes)[1:]
        target = int(counts.argmax()) + 1 if counts.sum() else 1
    if not 0 <= target < classes:
        raise NeuroTrainError(f"--target {target}: the model has {classes} classes (0..{classes - 1})")
    if logits.shape[0] == 1:
        score = logits[0] if target == 1 else -logits[0]
    else:
        score = logits[target]
    mask = labels == target
    return (score * mask).sum() if mask.any() else score.sum(), target


def stem(source: Any) -> str:
    """A file or case-folder name without its extensions (``img0001.nii.gz`` -> ``img0001``)."""
    name = Path(str(source).rstrip("/")).name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def save(record: dict[str, Any], source: Any, out_dir: str | Path | None) -> list[Path]:
    """2D (with ``out_dir``): ``<name>_mask.png``. Volumes (default ``predictions/``): ``<name>_seg.nii.gz``
    with the input's affine and header, and ``<name>_seg.png`` (the slice with the most foreground)."""
    from PIL import Image

    if "affine" not in record:
        if out_dir is None:
            return []
        from ...drawing import mask_to_png_array

        path = Path(out_dir) / f"{stem(source)}_mask.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask_to_png_array(record["mask"])).save(path)
        return [path]
    import nibabel as nib

    from .nifti import read_image
    from .volume_overlay import slice_picture

    out = Path(out_dir or "predictions")
    out.mkdir(parents=True, exist_ok=True)
    nifti = nib.Nifti1Image(record["mask"].astype(np.uint8), record["affine"], header=record["header"].copy())
    nifti.set_data_dtype(np.uint8)
    nifti.header.set_slope_inter(1.0, 0.0)
    mask_path, png_path = out / f"{stem(source)}_seg.nii.gz", out / f"{stem(source)}_seg.png"
    nib.save(nifti, str(mask_path))
    image = read_image(record["image"][:1])[0][0]
    Image.fromarray(slice_picture(image, record["mask"])).save(png_path)
    return [mask_path, png_path]


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """Shape and foreground fraction; volumes: each class's volume in millilitres."""
    mask = record["mask"]
    out = {"shape": list(mask.shape), "foreground_fraction": round(float((mask > 0).mean()), 6)}
    if "spacing" in record:
        voxel_ml = float(np.prod(record["spacing"])) / 1000.0
        counts = np.bincount(mask.ravel())
        out["volume_ml"] = {str(c): round(float(n) * voxel_ml, 3) for c, n in enumerate(counts) if c and n}
    return out


def preprocess(processor: Any, items: Sequence[Any]) -> dict[str, Any]:
    """A batch for the model: one volume, or images of one size with their own sizes (``target_sizes``)."""
    from ...data.images import upright_hw

    if is_volume(items[0]):
        if len(items) != 1:
            raise NeuroTrainError("volumes are predicted one at a time")
        return preprocess_volume(processor, str(items[0]))
    inputs = dict(processor(list(items), return_tensors="pt"))
    inputs["target_sizes"] = [upright_hw(item) for item in items]
    return inputs
