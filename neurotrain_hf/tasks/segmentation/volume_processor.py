"""``NeuroVolumeProcessor``: the deterministic preprocessing of NIfTI volumes, saved beside 3D models.

Orientation to RAS, intensity normalisation and resampling to the target spacing, with MONAI's array
transforms; the training cache, evaluation, the Tester and the Predictor all call it. ``restore``
resamples outputs from the preprocessed grid back onto the input file's own voxel grid (its affine
and shape), so predictions are scored, and written as NIfTI, exactly where the input's voxels are.
It saves as ``preprocessor_config.json`` and loads with ``AutoImageProcessor`` after
``import neurotrain_hf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from ...errors import DataError
from .nifti import is_nifti, read_image, spacing_of

RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
INTENSITY_SCHEMES = ("ct", "window", "zscore", "none")


def _meta(array: torch.Tensor, affine: np.ndarray):
    from monai.data import MetaTensor

    if isinstance(array, MetaTensor):
        array = array.as_tensor()
    return MetaTensor(array, affine=torch.as_tensor(np.asarray(affine), dtype=torch.float64))


class NeuroVolumeProcessor(BaseImageProcessor):
    """NIfTI file(s) -> (C, X, Y, Z) float32 in RAS at ``spacing``, normalised by ``intensity``."""

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        num_channels: int = 1,
        channel_names: Sequence[str] | None = None,
        spacing: Sequence[float] | None = None,
        intensity: str = "zscore",
        clip_low: Sequence[float] | None = None,
        clip_high: Sequence[float] | None = None,
        intensity_mean: Sequence[float] | None = None,
        intensity_std: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if intensity not in INTENSITY_SCHEMES:
            raise ValueError(f"intensity must be one of {INTENSITY_SCHEMES}, got {intensity!r}")
        self.num_channels = int(num_channels)
        self.channel_names = list(channel_names or [f"channel{i}" for i in range(self.num_channels)])
        self.spacing = [float(s) for s in spacing] if spacing else None
        self.intensity = intensity
        self.clip_low = list(clip_low) if clip_low is not None else None
        self.clip_high = list(clip_high) if clip_high is not None else None
        self.intensity_mean = list(intensity_mean) if intensity_mean is not None else None
        self.intensity_std = list(intensity_std) if intensity_std is not None else None

    # --- steps ------------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel intensity normalisation of a (C, ...) tensor (see ``[dataset] intensity``)."""
        if self.intensity == "none":
            return x
        if self.intensity == "zscore":
            from monai.transforms import NormalizeIntensity

            return NormalizeIntensity(nonzero=True, channel_wise=True)(x)
        shape = (-1,) + (1,) * (x.dim() - 1)
        low = torch.as_tensor(self.clip_low, dtype=x.dtype).view(shape)
        high = torch.as_tensor(self.clip_high, dtype=x.dtype).view(shape)
        x = torch.maximum(torch.minimum(x, high), low)
        if self.intensity == "window":
            return (x - low) / (high - low)
        mean = torch.as_tensor(self.intensity_mean, dtype=x.dtype).view(shape)
        std = torch.as_tensor(self.intensity_std, dtype=x.dtype).view(shape)
        return (x - mean) / std.clamp_min(1e-8)

    def prepare(self, image: np.ndarray, affine: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """(C, X, Y, Z) voxels in file order -> preprocessed (C, X', Y', Z') and its affine."""
        from monai.transforms import Orientation, Spacing

        if image.shape[0] != self.num_channels:
            raise DataError(f"the volume has {image.shape[0]} channels, the model takes {self.num_channels}")
        t = Orientation(axcodes="RAS", labels=RAS_LABELS)(_meta(torch.from_numpy(image), affine))
        t = _meta(self.normalize(t.as_tensor()), t.affine.numpy())
        if self.spacing:
            t = Spacing(pixdim=self.spacing, mode="bilinear")(t)
        return t.as_tensor().float().contiguous(), t.affine.numpy()

    def prepare_label(self, label: np.ndarray, affine: np.ndarray) -> torch.Tensor:
        """(X, Y, Z) training labels -> the preprocessed grid (nearest neighbour)."""
        from monai.transforms import Orientation, Spacing

        t = Orientation(axcodes="RAS", labels=RAS_LABELS)(_meta(torch.from_numpy(label[None]), affine))
        if self.spacing:
            t = Spacing(pixdim=self.spacing, mode="nearest")(t)
        return t.as_tensor()[0].to(torch.uint8).contiguous()

    @staticmethod
    def restore(
        values: torch.Tensor,
        src_affine: np.ndarray | torch.Tensor,
        dst_affine: np.ndarray | torch.Tensor,
        dst_shape: Sequence[int],
        mode: str = "bilinear",
    ) -> torch.Tensor:
        """(C, X', Y', Z') on the preprocessed grid -> (C, X, Y, Z) on the original file's grid."""
        from monai.transforms import SpatialResample

        src = torch.as_tensor(src_affine, dtype=torch.float64).cpu()
        dst = torch.as_tensor(dst_affine, dtype=torch.float64).cpu()
        out = SpatialResample(mode=mode, padding_mode="border")(
            _meta(values, src.numpy()), dst_affine=dst, spatial_size=[int(s) for s in dst_shape]
        )
        return out.as_tensor().to(values.dtype)

    def files(self, path: str | Path | Sequence[str]) -> list[str]:
        """The channel files of one input: a file, a list of files, or a case folder with one file per
        channel named ``*<sep><channel>.nii(.gz)`` (BraTS: ``..._t1ce.nii.gz`` or ``...-t1c.nii.gz``)."""
        if isinstance(path, (list, tuple)):
            return [str(p) for p in path]
        path = Path(path)
        if not path.is_dir():
            return [str(path)]
        files = sorted(p for p in path.iterdir() if is_nifti(p) and not p.name.startswith("."))
        out = []
        for name in self.channel_names:
            aliases = {name, *CHANNEL_ALIASES.get(name, ())}
            match = [p for p in files if _channel_of(p) in aliases]
            if len(match) != 1:
                raise DataError(
                    f"{path}: expected one file for channel {name!r} ({' or '.join(sorted(aliases))})"
                )
            out.append(str(match[0]))
        return out

    def load(self, path: str | Path | Sequence[str]) -> dict[str, Any]:
        """One input -> pixel_values (C, ...), its grid and the original file's geometry and header."""
        image, affine, header = read_image(self.files(path))
        pixel_values, pre_affine = self.prepare(image, affine)
        return {
            "pixel_values": pixel_values,
            "src_affine": torch.as_tensor(pre_affine, dtype=torch.float64),
            "dst_affine": torch.as_tensor(affine, dtype=torch.float64),
            "dst_shape": torch.as_tensor(image.shape[1:], dtype=torch.long),
            "spacing": torch.as_tensor(spacing_of(affine), dtype=torch.float64),
            "header": header,
        }

    # --- the transformers processor API ------------------------------------------------------------
    def preprocess(self, volumes: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """One input (path, file list or case folder) -> a batch of one with its geometry."""
        item = self.load(volumes)
        data = {k: v[None] for k, v in item.items() if torch.is_tensor(v)}
        return BatchFeature(data, tensor_type=return_tensors)

    def __call__(self, volumes: Any, **kwargs: Any) -> BatchFeature:
        return self.preprocess(volumes, **kwargs)


CHANNEL_ALIASES = {"t1": ("t1n",), "t1ce": ("t1c",), "t2": ("t2w",), "flair": ("t2f",)}


def _channel_of(path: Path) -> str:
    """The channel suffix of a file name: ``BraTS2021_00000_t1ce.nii.gz`` -> ``t1ce``."""
    stem = path.name.lower()
    for suffix in (".nii.gz", ".nii"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    for sep in ("_", "-"):
        if sep in stem:
            stem = stem.rsplit(sep, 1)[-1]
            break
    return stem
