"""Detection data: sources -> splits of images with ``objects`` -> box-aware transforms and targets.

Rows follow ``sources.DETECTION_FEATURES`` (boxes xyxy in image pixels, 0-based categories, COCO polygons
or RLE). Training samples go through ``torchvision.transforms.v2`` with ``tv_tensors.BoundingBoxes`` and
``tv_tensors.Mask``: an optional random crop that keeps a box when at least ``min_visible`` of it stays
visible (others are dropped and counted), flips and colour jitter from ``[augmentation]``, then the
processor's letterbox. Targets are the transformers DETR convention (``class_labels``, ``boxes`` as
normalised cx, cy, w, h of the canvas, ``masks``); evaluation batches also carry each image's reference
objects in its own pixels (crowd regions included, for the COCO protocol) and its size.
Random draws come from torch's RNG, seeded per batch by the loader (exact resume).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ...config.experiment import ExperimentConfig
from ...data.images import decode_image
from ...data.registry import DATASETS
from ...data.splits import add_missing_splits
from ...errors import DataError
from ..base import TaskData
from . import sources as _sources  # noqa: F401  (registers coco, voc, yolo, hub_detection)
from . import synthetic as _synthetic  # noqa: F401  (registers synthetic_shapes_detection)
from .config import DetectionAugmentation
from .processor import NeuroDetectionProcessor

logger = logging.getLogger(__name__)
MASK_MODELS = ("maskrcnn",)
COLUMNS = ["image", "objects", "image_id"]


@dataclass
class DetectionInfo:
    """What the model and metrics need: categories (index = training label), channels, masks or not."""

    num_labels: int
    label_names: list[str]
    channels: int = 3
    masks: bool = False
    dropped_boxes: dict[str, int] = field(default_factory=dict)


def decode_masks(segmentations: Any, height: int, width: int) -> np.ndarray:
    """COCO polygons / RLE JSON strings -> (n, H, W) uint8 (an empty string gives an empty mask)."""
    from pycocotools import mask as mask_utils

    out = np.zeros((len(segmentations), height, width), np.uint8)
    for i, text in enumerate(segmentations):
        if not text:
            continue
        seg = json.loads(text)
        if isinstance(seg, list):
            rles = mask_utils.frPyObjects(seg, height, width)
            rle = mask_utils.merge(rles)
        else:
            rle = mask_utils.frPyObjects(seg, height, width) if isinstance(seg["counts"], list) else seg
        out[i] = mask_utils.decode(rle)
    return out


def to_cxcywh(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """xyxy canvas pixels -> normalised cx, cy, w, h."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1) / size


def visible_crop(image, boxes, masks, min_visible: float) -> tuple[Any, Any, Any, torch.Tensor, int]:
    """A random crop (0.5-1 of each side); boxes keep only when >= ``min_visible`` of them stays inside."""
    h, w = image.shape[-2:]
    ch, cw = (int(s * float(torch.empty(()).uniform_(0.5, 1.0))) for s in (h, w))
    top, left = int(torch.randint(h - ch + 1, ())), int(torch.randint(w - cw + 1, ()))
    before = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    image = TF.crop(image, top, left, ch, cw)
    boxes = TF.clamp_bounding_boxes(TF.crop(boxes, top, left, ch, cw))
    after = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = after >= min_visible * before.clamp_min(1e-6)
    keep &= after > 0
    if masks is not None:  # indexing unwraps tv_tensors: wrap again so later ops treat them as masks/boxes
        masks = tv_tensors.wrap(TF.crop(masks, top, left, ch, cw)[keep], like=masks)
    return image, tv_tensors.wrap(boxes[keep], like=boxes), masks, keep, int((~keep).sum())


@dataclass
class DetectionTransform:
    """``image``/``objects`` rows -> ``pixel_values``, ``pixel_mask``, ``labels`` (+ references when evaluating)."""

    processor: NeuroDetectionProcessor
    aug: DetectionAugmentation
    train: bool = False
    masks: bool = False
    crop_probability: float = 0.0
    min_visible: float = 0.4
    dropped: list[int] = field(default_factory=lambda: [0])  # boxes dropped by crops (counted, logged)
    _photometric: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        jitter = self.aug.color_jitter
        self._photometric = v2.ColorJitter(jitter, jitter, jitter, min(jitter, 0.5) / 2) if jitter else None

    def _sample(self, image_value: Any, objects: dict) -> dict[str, Any]:
        image = decode_image(image_value, 3)
        h, w = image.shape[-2:]
        # torch.tensor copies: the Arrow-backed arrays are read-only
        boxes = torch.tensor(np.asarray(objects["bbox"], np.float32).reshape(-1, 4))
        labels = torch.tensor(np.asarray(objects["category"], np.int64).reshape(-1))
        crowd = torch.tensor(np.asarray(objects["iscrowd"], np.int64).reshape(-1)).bool()
        masks = decode_masks(objects["segmentation"], h, w) if self.masks else None
        reference = None
        if not self.train:  # COCO protocol: every object (crowd regions ignore detections), own pixels
            reference = {
                "boxes": boxes.clone(),
                "labels": labels.clone(),
                "iscrowd": crowd.long(),
                "area": torch.tensor(np.asarray(objects["area"], np.float32).reshape(-1)),
            }
            if masks is not None:
                reference["masks"] = torch.from_numpy(masks)
        keep = ~crowd  # crowd regions are not training targets
        img = tv_tensors.Image(image)
        bxs = tv_tensors.BoundingBoxes(boxes[keep], format="XYXY", canvas_size=(h, w))
        labels = labels[keep]
        msk = tv_tensors.Mask(torch.from_numpy(masks[keep.numpy()])) if masks is not None else None
        if self.train:
            if self.crop_probability and float(torch.rand(())) < self.crop_probability and len(bxs):
                img, bxs, msk, kept, dropped = visible_crop(img, bxs, msk, self.min_visible)
                labels = labels[kept]
                self.dropped[0] += dropped
            for p, flip in (
                (self.aug.horizontal_flip, TF.horizontal_flip),
                (self.aug.vertical_flip, TF.vertical_flip),
            ):
                if p and float(torch.rand(())) < p:
                    img, bxs = flip(img), flip(bxs)
                    msk = flip(msk) if msk is not None else None
            if self._photometric is not None:
                img = self._photometric(img)
        canvas, pixel_mask, scale = self.processor.letterbox(img.as_subclass(torch.Tensor))
        size = self.processor.image_size
        target = {"class_labels": labels, "boxes": to_cxcywh(bxs.as_subclass(torch.Tensor) * scale, size)}
        if msk is not None:
            ih, iw = img.shape[-2:]
            nh, nw = round(ih * scale), round(iw * scale)
            resized = TF.resize(
                msk.as_subclass(torch.Tensor),
                [max(nh, 1), max(nw, 1)],
                interpolation=v2.InterpolationMode.NEAREST,
            )
            full = torch.zeros(len(resized), size, size, dtype=torch.uint8)
            full[:, : resized.shape[-2], : resized.shape[-1]] = resized
            target["masks"] = full
        out = {"pixel_values": canvas, "pixel_mask": pixel_mask, "labels": target}
        if reference is not None:
            out.update(reference=reference, original_size=(h, w))
        return out

    def __call__(self, batch: dict) -> dict:
        samples = [self._sample(image, objects) for image, objects in zip(batch["image"], batch["objects"])]
        out: dict[str, Any] = {
            "pixel_values": torch.stack([s["pixel_values"] for s in samples]),
            "pixel_mask": torch.stack([s["pixel_mask"] for s in samples]),
            "labels": [s["labels"] for s in samples],
        }
        if not self.train:
            out["references"] = [s["reference"] for s in samples]
            out["original_size"] = torch.tensor([s["original_size"] for s in samples], dtype=torch.long)
            out["image_id"] = torch.as_tensor(np.asarray(batch["image_id"], dtype=np.int64))
        return out


def prepare(config: ExperimentConfig) -> TaskData:
    """Build and split the configured dataset; attach the train / eval transforms."""
    cfg = config.dataset
    source = DATASETS.get(cfg.name)(cfg)
    if not getattr(source, "categories", None):
        raise DataError(f"[dataset] {cfg.name}: not a detection dataset (no categories)")
    dsd = datasets.DatasetDict({k: v for k, v in source.splits.items() if k == "train" or len(v)})
    dsd = add_missing_splits(dsd, cfg, config.basic.seed)
    if len(dsd["train"]) == 0:
        raise DataError(f"[dataset] {cfg.name}: the train split is empty")
    aug = config.augmentation
    processor = NeuroDetectionProcessor(image_size=aug.image_size)
    masks = config.model.name in MASK_MODELS
    if masks and not any(
        any(s) for s in dsd["train"].with_format(None)["objects"][:200] for s in [s["segmentation"]]
    ):
        raise DataError(
            f"[dataset] {cfg.name}: [model] {config.model.name} needs instance masks; the dataset has none"
        )
    info = DetectionInfo(len(source.categories), list(source.categories), 3, masks)
    for name, split in dsd.items():
        transform = DetectionTransform(
            processor,
            config.augmentation,
            train=name == "train",
            masks=masks,
            crop_probability=aug.crop_probability,
            min_visible=aug.min_visible,
        )
        split.set_transform(transform, columns=COLUMNS)
    skipped = list(source.skipped)
    report = {
        "skipped_samples": len(skipped),
        "skipped": skipped[:50],
        "clipped_boxes": int(getattr(source, "clipped", 0)),
        "dataset": {"name": cfg.name, **asdict(info), "samples": {k: len(v) for k, v in dsd.items()}},
    }
    return TaskData(dsd, info, processor, report)
