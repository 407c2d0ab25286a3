"""Metric-card contents (evaluate's README format) for each neurotrain evaluate module."""

from __future__ import annotations

CARDS: dict[str, dict[str, str]] = {
    "dice": {
        "title": "Dice",
        "summary": "Dice coefficient per class for 2D/3D integer label maps, equal to MONAI compute_dice.",
        "inputs": """- **predictions** (list of arrays): integer label maps, one per image, (H, W) or (D, H, W).
- **references** (list of arrays): reference label maps of the same shapes.
- **num_labels** (int): number of classes including background.
- **ignore_index** (int, optional): reference label whose pixels are excluded (and the class itself).
- **include_background** (bool, default False): score class 0 too.
- **average** ("per_image" or "global"): mean over images of per-image scores, or pooled counts.""",
        "outputs": """- **mean_dice** (float): nanmean over classes of the per-class values.
- **per_class_dice** (list of float): one value per label; excluded classes and classes whose
  reference is empty on every image are NaN (MONAI `ignore_empty=True`).""",
        "example": """dice = evaluate.load("neurotrain/dice")
dice.compute(predictions=[np.array([[0, 1], [1, 1]])], references=[np.array([[0, 1], [0, 1]])], num_labels=2)
# {'mean_dice': 0.8, 'per_class_dice': [nan, 0.8]}""",
    },
    "iou": {
        "title": "IoU",
        "summary": "Intersection over union per class for 2D/3D integer label maps, equal to MONAI compute_iou.",
        "inputs": "Same as `neurotrain/dice`.",
        "outputs": "- **mean_iou** (float)\n- **per_class_iou** (list of float, NaN for excluded/empty classes)",
        "example": """iou = evaluate.load("neurotrain/iou")
iou.compute(predictions=[np.array([[0, 1], [1, 1]])], references=[np.array([[0, 1], [0, 1]])], num_labels=2)
# {'mean_iou': 0.6666666666666666, 'per_class_iou': [nan, 0.6666666666666666]}""",
    },
    "nsd": {
        "title": "Normalized Surface Dice",
        "summary": "Normalized surface Dice at a tolerance, equal to MONAI compute_surface_dice, faster on CPU.",
        "inputs": """Label maps as for `neurotrain/dice`, plus:
- **tolerance** (float or list, one per evaluated class): accepted boundary deviation in physical units.
- **spacing** (float or list per axis, default 1.0): voxel size.
- **use_subvoxels** (bool, default False): DeepMind surface-element areas instead of voxel counts.""",
        "outputs": "- **mean_nsd** (float)\n- **per_class_nsd** (list of float)",
        "example": """nsd = evaluate.load("neurotrain/nsd")
nsd.compute(predictions=preds, references=refs, num_labels=3, tolerance=[1.0, 2.0], spacing=[1.0, 0.5, 0.5])""",
    },
    "detection_map": {
        "title": "Detection mAP",
        "summary": "COCO box mAP/mAR equal to pycocotools COCOeval (and much faster), plus F1 at IoU 0.5/0.75.",
        "inputs": """- **predictions** (list of dict): `{"boxes": [[x1, y1, x2, y2], ...], "scores": [...], "labels": [...]}` per image.
- **references** (list of dict): `{"boxes", "labels", optional "iscrowd", optional "area"}` per image.
- **box_format** ("xyxy", "xywh" or "cxcywh"), **iou_thresholds** (default COCO 0.50:0.05:0.95),
  **max_detection_thresholds** (default [1, 10, 100]), **class_metrics** (bool),
  **score_threshold** (float, for F1, default 0.5).""",
        "outputs": """`map, map_50, map_75, map_small, map_medium, map_large, mar_1, mar_10, mar_100, mar_small,
mar_medium, mar_large` (-1 where COCO reports -1), `f1_50`, `f1_75`, and with `class_metrics`
`classes`, `map_per_class`, `mar_per_class`.""",
        "example": """m = evaluate.load("neurotrain/detection_map")
m.compute(predictions=[{"boxes": [[10, 10, 50, 50]], "scores": [0.9], "labels": [1]}],
          references=[{"boxes": [[12, 10, 50, 52]], "labels": [1]}])""",
    },
    "segmentation_map": {
        "title": "Instance segmentation mAP",
        "summary": "COCO mask mAP/mAR equal to pycocotools COCOeval with iouType='segm'.",
        "inputs": "As `neurotrain/detection_map`, with `masks` (N x H x W booleans) instead of `boxes`.",
        "outputs": "As `neurotrain/detection_map`.",
        "example": """m = evaluate.load("neurotrain/segmentation_map")
m.compute(predictions=[{"masks": masks, "scores": scores, "labels": labels}], references=[{"masks": gt, "labels": gl}])""",
    },
    "clip_retrieval": {
        "title": "CLIP retrieval recall",
        "summary": "Text-to-image and image-to-text recall@k with the CLIP-paper protocol.",
        "inputs": """- **predictions** (list of rows): `predictions[i]` = similarity of text i to every image.
- **references** (list of int): index of text i's image (several texts may share one).
- **k_values** (default [1, 5, 10]).""",
        "outputs": """`text_to_image_recall@k`, `image_to_text_recall@k` (an image is a hit if ANY of its texts is in
its top k), `clip_accuracy` (mean of the two recall@1), `mean_matched_similarity`.""",
        "example": """m = evaluate.load("neurotrain/clip_retrieval")
m.compute(predictions=[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], references=[0, 1, 0], k_values=[1])""",
    },
    "bleu": {
        "title": "BLEU",
        "summary": "BLEU computed by sacrebleu, with cumulative BLEU-1..4 and variable references per prediction.",
        "inputs": """- **predictions** (list of str), **references** (list of list of str; the count may vary).
- **max_order** (4), **tokenize** ("13a"), **smooth_method** ("exp"), **lowercase** (False),
  **sentence_level** (False: corpus BLEU; True: mean of sentence BLEU).""",
        "outputs": """`bleu` (0-1), `bleu_1`..`bleu_4`, `precisions`, `brevity_penalty`, `length_ratio`,
`translation_length`, `reference_length`.""",
        "example": """bleu = evaluate.load("neurotrain/bleu")
bleu.compute(predictions=["the cat sat on the mat"], references=[["the cat is on the mat", "a cat sat on the mat"]])""",
    },
    "classification": {
        "title": "Classification",
        "summary": "Accuracy, precision, recall, F1, one-vs-rest AUC and top-k accuracy, equal to scikit-learn.",
        "inputs": """- **predictions**: labels (N) or scores (N x C); **references**: labels (N).
- **average** ("macro", "micro", "weighted"), **top_k** ([1, 3, 5]), **from_logits** (softmax the scores).""",
        "outputs": "`accuracy`, `precision`, `recall`, `f1`, `auc` (with scores), `top_k_accuracy@k`.",
        "example": """m = evaluate.load("neurotrain/classification")
m.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[1, 1], top_k=[1])""",
    },
    "threshold": {
        "title": "Threshold sweep",
        "summary": "Metrics of binary probability maps over thresholds: best-F1, best-accuracy, target-recall.",
        "inputs": """- **predictions** (probabilities, any shape), **references** (0/1, same shape).
- **mode**: "best" (maximise `metric`, default "f1"), "at_threshold" (`threshold`),
  "at_accuracy_threshold", "at_recall_threshold" (`recall`); **thresholds** (default 0.00..1.00).""",
        "outputs": "`threshold`, `precision`, `recall`, `f1`, `accuracy`, `iou`, `specificity` at the chosen threshold.",
        "example": """m = evaluate.load("neurotrain/threshold")
m.compute(predictions=[[0.2, 0.7, 0.9]], references=[[0, 1, 1]], mode="best")""",
    },
    "fid": {
        "title": "FID",
        "summary": "Frechet distance between generated and real feature vectors, equal to torchmetrics FID.",
        "inputs": """- **predictions** (N x D): feature vectors of generated images (e.g. Inception-v3 pool features).
- **references** (M x D): feature vectors of real images, from the same extractor.""",
        "outputs": """- **fid** (float): ||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 sqrtm(S_g S_r)) (pytorch-fid's formula); NaN with
  fewer than 2 samples on a side.
- **fid_samples** (int): number of generated samples; FID is biased in N, so report it with the value.""",
        "example": """fid = evaluate.load("neurotrain/fid")
rng = np.random.default_rng(0)
fid.compute(predictions=rng.normal(size=(500, 16)), references=rng.normal(0.2, 1, size=(500, 16)))
# {'fid': 1.0604390622624251, 'fid_samples': 500}""",
    },
    "kid": {
        "title": "KID",
        "summary": "Kernel inception distance (unbiased cubic-kernel MMD^2 over subsets), as clean-fid and torchmetrics.",
        "inputs": """- **predictions** (N x D) and **references** (M x D): generated and real feature vectors.
- **subsets** (100), **subset_size** (1000, clamped to the sample counts), **degree** (3), **seed** (0).""",
        "outputs": "- **kid** (float): mean over subsets of the unbiased MMD^2\n- **kid_std** (float): its standard deviation",
        "example": """kid = evaluate.load("neurotrain/kid")
rng = np.random.default_rng(0)
kid.compute(predictions=rng.normal(size=(500, 16)), references=rng.normal(0.2, 1, size=(500, 16)), subsets=10,
            subset_size=200)
# {'kid': 0.16453083378040775, 'kid_std': 0.020568915835458366}""",
    },
}
