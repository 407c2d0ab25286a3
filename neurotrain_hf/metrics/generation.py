"""Generation quality: FID and KID from feature vectors (one implementation for the trainers' streaming
accumulator and the ``neurotrain/fid`` / ``neurotrain/kid`` evaluate modules), the clean-fid resize and
the feature extractors (the FID Inception-v3 when its weights are cached, else a classifier folder).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.images import match_channels
from ..errors import NeuroTrainError, first_line
from .common import to_numpy

KEYS = ("fid", "kid", "sample_accuracy")
# torch-fidelity's (and torchmetrics') FID Inception-v3 weights, as torch hub caches them
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(s1 + s2 - 2 sqrtm(s1 s2)), as pytorch-fid / clean-fid compute it."""
    from scipy import linalg

    diff = np.atleast_1d(np.asarray(mu1, np.float64)) - np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: offset the diagonals (pytorch-fid)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real)


def _poly(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** degree


def kid(
    features_a: Any,
    features_b: Any,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
) -> tuple[float, float]:
    """(mean, std) over ``subsets`` of the unbiased polynomial-kernel MMD^2 (clean-fid, torchmetrics)."""
    a, b = _rows(features_a, "features_a"), _rows(features_b, "features_b")
    m = min(len(a), len(b), int(subset_size))
    if m < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    full = max(len(a), len(b)) <= 4096  # kernel matrices once, subsets index them
    if full:
        kaa, kbb, kab = _poly(a, a, degree), _poly(b, b, degree), _poly(a, b, degree)
    scores = []
    for _ in range(int(subsets)):
        i, j = rng.choice(len(a), m, replace=False), rng.choice(len(b), m, replace=False)
        if full:
            kxx, kyy, kxy = kaa[np.ix_(i, i)], kbb[np.ix_(j, j)], kab[np.ix_(i, j)]
        else:
            x, y = a[i], b[j]
            kxx, kyy, kxy = _poly(x, x, degree), _poly(y, y, degree), _poly(x, y, degree)
        within = kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)
        scores.append(within / (m * (m - 1)) - 2 * kxy.sum() / m**2)
    return float(np.mean(scores)), float(np.std(scores))


def _rows(x: Any, what: str, start: int = 0, dim: int | None = None) -> np.ndarray:
    """(N, D) finite float64 rows, with one line naming the sample otherwise."""
    arr = to_numpy(x, what)
    if arr.ndim != 2 or (dim is not None and arr.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        raise ValueError(f"{what}: expected {want} feature vectors, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise ValueError(f"sample {start + int(bad[0])}: {what} contain NaN or inf")
    return arr


class GenerationAccumulator:
    """Streaming FID (float64 sums of x and x x^T per side), KID (the first ``max_kid_samples`` rows per
    side) and the accuracy of a classifier on generated samples conditioned on ``labels``."""

    SIDES = ("generated", "real")

    def __init__(
        self, max_kid_samples: int = 2000, kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0
    ) -> None:
        self.max_kid_samples, self.seed = int(max_kid_samples), seed
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.reset()

    def reset(self) -> None:
        self.dim: int | None = None
        self.count = dict.fromkeys(self.SIDES, 0)
        self.sums, self.outer = {}, {}  # per side: float64 sums of x and of x x^T
        self.kept: dict[str, list[np.ndarray]] = {side: [] for side in self.SIDES}
        self.correct = self.labelled = 0

    def _add(self, side: str, count: int, sums: np.ndarray, outer: np.ndarray, rows: list) -> None:
        if self.dim is None:
            self.dim = len(sums)
            self.sums, self.outer = {s: 0 * sums for s in self.SIDES}, {s: 0 * outer for s in self.SIDES}
        self.count[side] += count
        self.sums[side] = self.sums[side] + sums
        self.outer[side] = self.outer[side] + outer
        for r in rows:
            room = self.max_kid_samples - sum(len(k) for k in self.kept[side])
            if room > 0 and len(r):
                self.kept[side].append(r[:room])

    def update(self, predictions: dict | None, references: dict | None) -> None:
        """predictions ``{"features": (B, D), "logits"?: (B, C)}``; references ``{"features", "labels"?}``."""
        predictions, references = predictions or {}, references or {}
        for side, batch in zip(self.SIDES, (predictions, references)):
            if batch.get("features") is not None:
                rows = _rows(batch["features"], f"{side} features", self.count[side], self.dim)
                self._add(side, len(rows), rows.sum(axis=0), rows.T @ rows, [rows])
        logits, labels = predictions.get("logits"), references.get("labels")
        if logits is not None and labels is not None:
            scores, labels = to_numpy(logits, "logits"), to_numpy(labels, "labels").reshape(-1)
            if scores.ndim != 2 or len(scores) != len(labels):
                raise ValueError(f"logits of shape {scores.shape} do not match {len(labels)} labels")
            self.correct += int((scores.argmax(axis=1) == labels.astype(np.int64)).sum())
            self.labelled += len(labels)

    def merge(self, other: GenerationAccumulator) -> None:
        """Add another accumulator's state (another process's); KID keeps the first rows, ours first."""
        if other.dim is not None:
            if self.dim is not None and other.dim != self.dim:
                raise ValueError(f"cannot merge {other.dim}-d features into {self.dim}-d ones")
            for side in self.SIDES:
                self._add(side, other.count[side], other.sums[side], other.outer[side], other.kept[side])
        self.correct += other.correct
        self.labelled += other.labelled

    def statistics(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased covariance of one side's features (the Gaussian FID compares)."""
        n = self.count[side]
        mu = self.sums[side] / n
        return mu, (self.outer[side] - n * np.outer(mu, mu)) / (n - 1)

    def compute(self, keys: Iterable[str] = KEYS) -> dict[str, float]:
        """``fid``, ``kid`` (+ ``kid_std``), ``sample_accuracy``, with ``fid_samples`` (generated count)."""
        nan, out = float("nan"), {}
        for key in keys:
            if key not in KEYS:
                raise ValueError(f"unknown generation metric {key!r}; expected one of {', '.join(KEYS)}")
            if key == "fid":
                stats = [self.statistics(s) for s in self.SIDES] if min(self.count.values()) >= 2 else None
                out["fid"] = frechet_distance(*stats[0], *stats[1]) if stats else nan
            elif key == "kid":
                rows = [np.concatenate(k) if k else np.zeros((0, 1)) for k in self.kept.values()]
                mean_std = kid(*rows, self.kid_subsets, self.kid_subset_size, seed=self.seed)
                out.update(zip(("kid", "kid_std"), mean_std))
            else:
                out["sample_accuracy"] = self.correct / self.labelled if self.labelled else nan
            out["fid_samples"] = self.count["generated"]
        return out


def _pil_bicubic(x: np.ndarray, size: int) -> np.ndarray:
    """(B, C, H, W) float32 in 0-255 -> per channel PIL "F" bicubic (clean-fid ``make_resizer("PIL", "bicubic")``)."""
    from PIL import Image

    out = np.empty((*x.shape[:2], size, size), np.float32)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[b, c] = np.asarray(Image.fromarray(x[b, c]).resize((size, size), Image.Resampling.BICUBIC))
    return out.clip(0, 255)


def resize_for_features(images: Any, size: int, method: str = "pil-bicubic") -> torch.Tensor:
    """uint8 (B, H, W, C) or float [0, 1] (B, C, H, W) -> float (B, C, size, size) in [0, 1]."""
    if method not in ("pil-bicubic", "torch-bilinear"):
        raise ValueError(f"resize method {method!r}: expected pil-bicubic or torch-bilinear")
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:  # PIL gets the 0-255 values exactly, as clean-fid gives it uint8 images
        x255 = (x[..., None] if x.dim() == 3 else x).permute(0, 3, 1, 2).float()
        x = x255 / 255
    elif x.dim() != 4 or not x.is_floating_point():
        raise ValueError(
            f"images: expected uint8 (B, H, W, C) or float (B, C, H, W), got {x.dtype} {tuple(x.shape)}"
        )
    else:
        x = x.detach().cpu().float()
        low, high = float(x.min()), float(x.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"float images must lie in [0, 1]; got values in [{low:.3g}, {high:.3g}]")
        x255 = x * 255
    if x.shape[-2:] == (size, size):
        return x
    if method == "torch-bilinear":  # no antialiasing: the aliasing clean-fid warns about
        return torch.nn.functional.interpolate(
            x, (size, size), mode="bilinear", align_corners=False, antialias=False
        )
    return torch.from_numpy(_pil_bicubic(np.ascontiguousarray(x255.numpy()), size) / 255)


def inception_weights_path() -> Path:
    """Where torch hub keeps torch-fidelity's FID Inception-v3 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_available() -> bool:
    """Whether the FID Inception-v3 can be built offline: torch-fidelity installed, weights cached."""
    from importlib.util import find_spec

    return find_spec("torch_fidelity") is not None and inception_weights_path().is_file()


class InceptionFeatures:
    """The FID Inception-v3 (torch-fidelity's port of the TF graph): 2048-d pool features, comparable to
    published FIDs. Never downloads; images are resized to 299 with ``resize_method`` first."""

    size = 299
    feature_kind = "inception-v3 pool3 (2048)"

    def __init__(self, resize_method: str = "pil-bicubic") -> None:
        path = inception_weights_path()
        if not path.is_file():
            raise NeuroTrainError(
                f"FID Inception-v3 weights are not cached: {path} is missing (never downloaded)"
            )
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError:
            raise NeuroTrainError(
                "FID Inception-v3 needs torch-fidelity: pip install 'neurotrain-hf[diffusion]'"
            ) from None
        self.model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], str(path))
        self.resize_method = resize_method

    @torch.no_grad()
    def __call__(self, images: Any) -> tuple[torch.Tensor, None]:
        """Images as ``resize_for_features`` takes them -> ((B, 2048) features, no logits)."""
        x = match_channels(resize_for_features(images, self.size, self.resize_method), 3)
        (features,) = self.model((x * 255).round().clamp(0, 255).to(torch.uint8))
        return features.float(), None


class ClassifierFeatures:
    """Penultimate features and logits of an image classifier folder (ours or any
    ``AutoModelForImageClassification``); its FIDs are NOT comparable to published ones."""

    def __init__(self, folder: str | Path) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        import neurotrain_hf  # noqa: F401  (registers our model classes with the Auto classes)

        try:
            self.model = AutoModelForImageClassification.from_pretrained(str(folder)).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise NeuroTrainError(f"{folder}: not an image classifier folder ({first_line(exc)})") from None
        try:
            processor = AutoImageProcessor.from_pretrained(str(folder))
        except (OSError, ValueError, KeyError):
            processor = None
        stats = [getattr(processor, k, None) for k in ("image_mean", "image_std")]
        if None in stats or not getattr(processor, "do_normalize", True):
            stats = [None, None]  # no processor, or one that does not normalise
        self.mean, self.std = (
            None if v is None else torch.tensor(v).float().view(1, -1, 1, 1) for v in stats
        )
        size = getattr(processor, "crop_size", None) or getattr(processor, "size", None)
        self.size = size if isinstance(size, int) else (size or {}).get("height")  # for resize_for_features
        self.num_channels = getattr(self.model.config, "num_channels", None)
        linears = [m for m in self.model.modules() if isinstance(m, torch.nn.Linear)]
        heads = [m for m in linears if m.out_features == self.model.config.num_labels]
        self._head = heads[-1] if heads else None
        self.feature_kind = "unknown (not called yet)"

    @torch.no_grad()
    def __call__(self, images: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """float (B, C, H, W) in [0, 1] -> ((B, D) penultimate features, (B, num_labels) logits)."""
        x = torch.as_tensor(images, dtype=torch.float32)
        x = match_channels(x, self.num_channels) if self.num_channels else x
        if self.mean is not None:
            x = (x - self.mean) / self.std
        seen: list[torch.Tensor] = []
        hook = self._head.register_forward_hook(lambda m, i, o: seen.append(i[0])) if self._head else None
        try:
            out = self.model(pixel_values=x, output_hidden_states=True)
        finally:
            hook.remove() if hook is not None else None
        hidden = getattr(out, "hidden_states", None)
        last = hidden[-1] if hidden else None
        if last is not None and last.dim() in (2, 4):  # global average pool of (B, C, H, W)
            features, self.feature_kind = last.mean((2, 3)) if last.dim() == 4 else last, "last hidden state"
        elif seen:
            features, self.feature_kind = seen[-1].flatten(1), "input of the classification head"
        else:
            features, self.feature_kind = out.logits, "logits (the model exposes no hidden states)"
        return features.float(), out.logits.float()
