"""``evaluate`` modules wrapping neurotrain's metric implementations (one implementation per metric).

Each class follows evaluate's ``compute(predictions=..., references=..., **kwargs)`` / ``add_batch`` /
``add`` convention. Inputs (numpy arrays, torch tensors, nested lists, dicts of them) are kept as given
instead of going through evaluate's Arrow cache, which would flatten masks and drop dict keys; the
computation is the same function the trainers stream through.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import datasets
import evaluate

from .classification import compute_classification
from .detection import compute_detection_map
from .generation import GenerationAccumulator, kid
from .overlap import compute_dice, compute_iou
from .retrieval import compute_clip_retrieval
from .surface import compute_nsd
from .text import compute_bleu
from .threshold import at_accuracy_threshold, at_recall_threshold, at_threshold, best_threshold

CITATION_NEUROTRAIN = """@software{neurotrain_hf,
  title = {neurotrain_hf: NeuroTrain on the Hugging Face stack},
  year = {2026}
}"""


class NeuroMetric(evaluate.Metric):
    """Base: buffers inputs as given, then calls ``self.compute_fn`` on all of them."""

    description = ""
    citation = CITATION_NEUROTRAIN
    inputs_description = ""
    features_spec: Any = None
    compute_fn: Any = None  # the shared implementation: fn(predictions, references, **kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.description,
            citation=self.citation,
            inputs_description=self.inputs_description,
            features=self.features_spec,
            homepage="https://huggingface.co/neurotrain",
            codebase_urls=["https://huggingface.co/neurotrain"],
        )

    def _buffer(self) -> tuple[list, list]:
        if not hasattr(self, "_preds"):
            self._preds, self._refs = [], []
        return self._preds, self._refs

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of predictions and references."""
        if predictions is None or references is None:
            raise ValueError("add_batch needs both predictions and references")
        preds, refs = self._buffer()
        preds.extend(list(predictions))
        refs.extend(list(references))

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one prediction and its reference."""
        self.add_batch(predictions=[prediction], references=[reference])

    def _compute(self, predictions, references, **kwargs) -> dict[str, Any]:
        return self.compute_fn(predictions, references, **kwargs)

    def compute(self, *, predictions=None, references=None, **kwargs) -> dict[str, Any]:
        """Compute the metric on everything added so far plus ``predictions``/``references``."""
        if predictions is not None or references is not None:
            self.add_batch(predictions=predictions, references=references)
        preds, refs = self._buffer()
        self._preds, self._refs = [], []
        return self._compute(preds, refs, **kwargs)


def _seq(depth: int, leaf: str) -> Any:
    feature: Any = datasets.Value(leaf)
    for _ in range(depth):
        feature = datasets.Sequence(feature)
    return feature


LABEL_MAPS = [
    datasets.Features({"predictions": _seq(d, "int64"), "references": _seq(d, "int64")}) for d in (2, 3)
]
DETECTION = datasets.Features(
    {
        "predictions": {
            "boxes": _seq(2, "float64"),
            "scores": _seq(1, "float64"),
            "labels": _seq(1, "int64"),
        },
        "references": {"boxes": _seq(2, "float64"), "labels": _seq(1, "int64")},
    }
)
SEGM = datasets.Features(
    {
        "predictions": {"masks": _seq(3, "bool"), "scores": _seq(1, "float64"), "labels": _seq(1, "int64")},
        "references": {"masks": _seq(3, "bool"), "labels": _seq(1, "int64")},
    }
)


class Dice(NeuroMetric):
    description = (
        "Dice coefficient per class over integer label maps (2D or 3D); MONAI ignore_empty semantics."
    )
    features_spec = LABEL_MAPS
    compute_fn = staticmethod(compute_dice)


class IoU(NeuroMetric):
    description = "Intersection over union per class over integer label maps (2D or 3D)."
    features_spec = LABEL_MAPS
    compute_fn = staticmethod(compute_iou)


class NSD(NeuroMetric):
    description = "Normalized surface Dice at a tolerance in physical units (MONAI compute_surface_dice)."
    features_spec = LABEL_MAPS
    compute_fn = staticmethod(compute_nsd)


class DetectionMAP(NeuroMetric):
    description = "COCO box mAP/mAR (equal to pycocotools COCOeval) and F1 at IoU 0.5/0.75."
    features_spec = DETECTION
    compute_fn = staticmethod(partial(compute_detection_map, iou_type="bbox"))


class SegmentationMAP(NeuroMetric):
    description = "COCO instance-mask mAP/mAR (equal to pycocotools COCOeval with iouType='segm')."
    features_spec = SEGM
    compute_fn = staticmethod(partial(compute_detection_map, iou_type="segm"))


class ClipRetrieval(NeuroMetric):
    description = "Text-to-image and image-to-text recall@k (CLIP protocol) from a similarity matrix."
    features_spec = datasets.Features(
        {"predictions": _seq(1, "float64"), "references": datasets.Value("int64")}
    )
    compute_fn = staticmethod(compute_clip_retrieval)


class Bleu(NeuroMetric):
    description = "BLEU computed by sacrebleu (corpus or mean sentence BLEU) with cumulative BLEU-1..4."
    citation = """@inproceedings{post-2018-call, title = {A Call for Clarity in Reporting {BLEU} Scores},
  author = {Post, Matt}, booktitle = {Proceedings of the Third Conference on Machine Translation}, year = {2018}}"""
    features_spec = datasets.Features(
        {"predictions": datasets.Value("string"), "references": _seq(1, "string")}
    )
    compute_fn = staticmethod(compute_bleu)


class Classification(NeuroMetric):
    description = (
        "Accuracy, precision, recall, F1, one-vs-rest AUC and top-k accuracy, equal to scikit-learn."
    )
    features_spec = [
        datasets.Features({"predictions": _seq(1, "float64"), "references": datasets.Value("int64")}),
        datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
    ]

    def _compute(
        self, predictions, references, average="macro", top_k=(1, 3, 5), num_labels=None, from_logits=False
    ):
        out = compute_classification(
            predictions,
            references,
            num_labels=num_labels,
            average=average,
            top_k=top_k,
            from_logits=from_logits,
        )
        return {(f"top_k_accuracy@{k[3:]}" if k.startswith("top") else k): v for k, v in out.items()}


FEATURE_ROWS = datasets.Features({"predictions": _seq(1, "float64"), "references": _seq(1, "float64")})


class FID(NeuroMetric):
    description = "Frechet distance between Gaussians fitted to generated and real feature vectors."
    citation = """@inproceedings{heusel2017gans, title = {{GANs} Trained by a Two Time-Scale Update Rule Converge
  to a Local {Nash} Equilibrium}, author = {Heusel, Martin and others}, booktitle = {NeurIPS}, year = {2017}}"""
    features_spec = FEATURE_ROWS

    def _compute(self, predictions, references):
        acc = GenerationAccumulator(max_kid_samples=0)  # the trainers' accumulator, one batch per side
        acc.update({"features": predictions}, {"features": references})
        return acc.compute(["fid"])


class KID(NeuroMetric):
    description = "Kernel inception distance: unbiased polynomial-kernel MMD^2 over random subsets."
    citation = """@inproceedings{binkowski2018demystifying, title = {Demystifying {MMD} {GANs}},
  author = {Bi{\\'n}kowski, Miko{\\l}aj and others}, booktitle = {ICLR}, year = {2018}}"""
    features_spec = FEATURE_ROWS

    def _compute(self, predictions, references, subsets=100, subset_size=1000, degree=3, seed=0):
        mean, std = kid(predictions, references, subsets, subset_size, degree, seed)
        return {"kid": mean, "kid_std": std}


class Threshold(NeuroMetric):
    description = (
        "Threshold sweep for binary probabilities: metrics at a threshold, best-F1/accuracy, target recall."
    )
    features_spec = datasets.Features({"predictions": _seq(1, "float64"), "references": _seq(1, "int64")})

    def _compute(
        self, predictions, references, mode="best", threshold=0.5, metric="f1", recall=0.9, thresholds=None
    ):
        import numpy as np

        probs, refs = (
            np.concatenate([np.ravel(p) for p in predictions]),
            np.concatenate([np.ravel(r) for r in references]),
        )
        if mode == "at_threshold":
            return at_threshold(probs, refs, threshold, thresholds)
        if mode == "at_accuracy_threshold":
            return at_accuracy_threshold(probs, refs, thresholds)
        if mode == "at_recall_threshold":
            return at_recall_threshold(probs, refs, recall, thresholds)
        if mode == "best":
            return best_threshold(probs, refs, metric, thresholds)
        raise ValueError(
            f"mode={mode!r}: expected at_threshold, at_accuracy_threshold, at_recall_threshold or best"
        )


MODULES: dict[str, type[NeuroMetric]] = {
    "dice": Dice,
    "iou": IoU,
    "nsd": NSD,
    "detection_map": DetectionMAP,
    "segmentation_map": SegmentationMAP,
    "clip_retrieval": ClipRetrieval,
    "bleu": Bleu,
    "classification": Classification,
    "threshold": Threshold,
    "fid": FID,
    "kid": KID,
}
