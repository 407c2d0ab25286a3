"""The segmentation Tester's outputs: per-image (2D) or per-case (volumes) CSV rows, and overlay PNGs of
the first ``[training] overlays`` samples (green hit, red false positive, blue miss; volumes: the slice
with the most reference foreground), written under ``<folder>/overlays/<split>_*.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..base import SampleBatch, TestOutputs, loss_text
from .metrics import SegmentationMetrics
from .overlay import save_overlay


def image_scores(pred: np.ndarray, ref: np.ndarray, inside: np.ndarray) -> dict[str, float]:
    """Per-image foreground Dice/IoU/sensitivity/specificity/accuracy inside ``inside`` (binary rule)."""
    p, r = pred[inside] > 0, ref[inside] > 0
    tp, fp, fn = float((p & r).sum()), float((p & ~r).sum()), float((~p & r).sum())
    tn = float(inside.sum()) - tp - fp - fn
    return {
        "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "iou": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "accuracy": (tp + tn) / max(tp + tn + fp + fn, 1.0),
    }


def picture(pixel_values: torch.Tensor, mean: Any, std: Any) -> np.ndarray:
    """Undo the processor's normalisation for display: (C, H, W) -> (H, W, C) float in [0, 1]."""
    mean = torch.as_tensor(mean).view(-1, 1, 1)
    std = torch.as_tensor(std).view(-1, 1, 1)
    x = (pixel_values.detach().float().cpu() * std + mean).clamp(0, 1)
    return x.permute(1, 2, 0).numpy()


def _overlay_path(out: TestOutputs, name: str) -> Path:
    return out.folder / "overlays" / f"{out.split}_{name}.png"


def image_records(batch: SampleBatch, out: TestOutputs) -> list[dict[str, Any]]:
    """2D: Dice, IoU, sensitivity, specificity and accuracy inside the FOV, and the loss, per image."""
    maps = batch.predictions["labels"].cpu().numpy()
    refs = batch.references["labels"].cpu().numpy()
    fovs = batch.references["fov"].cpu().numpy().astype(bool)
    rows = []
    for k, index in enumerate(batch.indices):
        scores = image_scores(maps[k], refs[k], fovs[k])
        rows.append(
            {
                "index": index,
                **{name: f"{value:.6f}" for name, value in scores.items()},
                "loss": loss_text(batch.losses, k),
            }
        )
    return rows


def image_overlays(batch: SampleBatch, out: TestOutputs) -> None:
    maps = batch.predictions["labels"].cpu().numpy()
    refs = batch.references["labels"].cpu().numpy()
    fovs = batch.references["fov"].cpu().numpy().astype(bool)
    for k, index in enumerate(batch.indices):
        if index < out.config.training.overlays:
            image = picture(batch.inputs["pixel_values"][k], out.info.mean, out.info.std)
            save_overlay(_overlay_path(out, f"{index:04d}"), image, refs[k], maps[k], fov=fovs[k])


def case_id(out: TestOutputs, index: int) -> str:
    ids = out.rows["id"] if out.rows is not None and "id" in out.rows.column_names else None
    return str(ids[index]) if ids is not None and index < len(ids) else str(index)


def volume_records(batch: SampleBatch, out: TestOutputs) -> list[dict[str, Any]]:
    """Volumes, per case: id, Dice per class (or region) on the original grid, loss."""
    info = out.info
    metrics = SegmentationMetrics(
        ["mean_dice", "per_class"], info.num_labels, label_names=info.label_names, regions=info.regions
    )
    rows = []
    for k, index in enumerate(batch.indices):
        metrics.reset()
        probability = batch.predictions.get("probability")
        metrics.update(
            {
                "labels": batch.predictions["labels"][k : k + 1],
                "probability": None if probability is None else probability[k : k + 1],
            },
            {"labels": batch.references["labels"][k : k + 1]},
        )
        scores = metrics.compute()
        rows.append(
            {
                "index": index,
                "id": case_id(out, index),
                **{name: f"{value:.6f}" for name, value in scores.items()},
                "loss": loss_text(batch.losses, k),
            }
        )
    return rows


def volume_overlays(batch: SampleBatch, out: TestOutputs) -> None:
    from .volume_overlay import save_volume_overlay

    for k, index in enumerate(batch.indices):
        if index < out.config.training.overlays:
            save_volume_overlay(
                _overlay_path(out, case_id(out, index)),
                batch.inputs,
                k,
                batch.references["labels"][k].cpu().numpy(),
                batch.predictions["labels"][k].cpu().numpy(),
            )
