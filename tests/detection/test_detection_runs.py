"""Detection runs: the recipe as typed on a shortened schedule, the Tester's COCO files against pycocotools,
two processes against one, the Predictor and the demo against the Tester (bad input: test_sources.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_python
from tests.helpers.launch import accelerate_launch
from tests.helpers.recipes import shortened

RECIPE = "recipes/train_detection.py"
CONFIG = str(ROOT / "recipes" / "configs" / "synthetic_shapes_fasterrcnn.toml")
SHORT = ["--dataset.max_samples", "96", "--training.drawings", "4"]


def short(tmp_path: Path, steps: int, *extra: str) -> list[str]:
    """The shipped default on a shortened schedule (fewer steps and images), writing under ``tmp_path``."""
    return shortened(RECIPE, CONFIG, tmp_path, steps, "--training.warmup_steps", "5", *SHORT, *extra)


def _parse(stdout: str) -> tuple[Path, dict]:
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith("test metrics: ")
    run = Path(next(line for line in lines if line.startswith("run folder: ")).split(": ", 1)[1])
    return run, json.loads((run / "report.json").read_text())["test"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("det")
    proc = run_python(short(tmp, STEPS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run, metrics = _parse(proc.stdout)
    return {"run": run, "metrics": metrics, "tmp": tmp}


STEPS = 75


def cocoeval(run: Path, iou_type: str = "bbox"):
    """pycocotools' summary of the run's saved test results against its saved ground truth."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(run / "test_coco_gt.json"))
    results = json.loads((run / "test_results.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    evaluator = COCOeval(gt, gt.loadRes(results), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats


def test_recipe_learns_and_logs_every_loss_term(trained):
    metrics, run = trained["metrics"], trained["run"]
    assert metrics["map_50"] > 0.25  # chance is ~0; 0.44 observed; the full default reaches >= 0.8
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    logged = [h for h in history if "loss" in h and "eval_loss" not in h]
    for term in ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"):
        assert term in logged[-1], sorted(logged[-1])
    assert logged[-1]["loss"] < logged[0]["loss"]
    rows = (run / "test_per_sample.csv").read_text().splitlines()
    assert rows[0].split(",")[:5] == ["index", "image_id", "references", "detections", "matched_50"]
    assert len(list((run / "drawings").glob("*.png"))) == 4
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    import neurotrain_hf  # noqa: F401

    model = AutoModelForObjectDetection.from_pretrained(run / "model")
    processor = AutoImageProcessor.from_pretrained(run / "model")
    assert model.config.num_labels == 3 and processor.image_size == 96


def test_tester_results_load_in_pycocotools_and_give_the_streamed_metrics(trained):
    stats, metrics = cocoeval(trained["run"]), trained["metrics"]
    assert stats[0] == pytest.approx(metrics["map"], abs=1e-9)
    assert stats[1] == pytest.approx(metrics["map_50"], abs=1e-9)
    assert stats[8] == pytest.approx(metrics["mar_100"], abs=1e-9)


def test_predictor_and_demo_give_the_testers_detections(trained, tmp_path):
    from gradio_client import handle_file

    from neurotrain_hf.demos import build_demo  # the model folder's task builds its demo
    from neurotrain_hf.predictor import Predictor
    from tests.test_demos import serve

    run = trained["run"]
    gt = json.loads((run / "test_coco_gt.json").read_text())
    results = json.loads((run / "test_results.json").read_text())
    import neurotrain_hf.tasks.detection.data  # noqa: F401  (registers the detection datasets)
    from neurotrain_hf.data.registry import DATASETS
    from neurotrain_hf.tasks.detection.config import DetectionDataset as DatasetConfig

    source = DATASETS.get("synthetic_shapes_detection")(
        DatasetConfig(name="synthetic_shapes_detection", max_samples=96)
    )
    rows = {r["image_id"]: r for r in source.splits["test"].with_format(None)}
    image_id = gt["images"][0]["id"]
    path = tmp_path / "image.png"
    path.write_bytes(rows[image_id]["image"]["bytes"])
    record = Predictor.from_pretrained(run)(str(path))
    mine = sorted((r for r in results if r["image_id"] == image_id), key=lambda r: -r["score"])
    assert len(mine) == len(record["scores"])
    for r, box, score, label in zip(mine, record["boxes"], record["scores"], record["labels"]):
        x0, y0, x1, y1 = box.tolist()
        assert (
            np.allclose(r["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1e-3) and int(label) == r["category_id"]
        )
        assert float(score) == pytest.approx(r["score"], abs=1e-5)
    with serve(build_demo(str(run))) as (_, client):
        drawing, table = client.predict(handle_file(str(path)), 0.0, api_name="/predict")
    assert len(table["data"]) == len(mine)
    assert Path(drawing).is_file()


def test_two_processes_train_and_evaluate_like_one(trained, tmp_path):
    args = short(tmp_path, 4, "--training.load_best_model_at_end", "false", "--dataset.max_samples", "24")
    proc = accelerate_launch(2, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run, _ = _parse(proc.stdout)
    assert json.loads((run / "report.json").read_text())["world_size"] == 2
    # the trained model tested by 2 processes (each its shard, states merged once) and by one
    config = str(trained["run"] / "config.toml")
    two = accelerate_launch(2, "-m", "neurotrain_hf.cli", "test", config, "--testing.per_sample", "false")
    assert two.returncode == 0, two.stderr[-3000:]
    merged = json.loads(two.stdout[two.stdout.index("{\n") :].split("\n}")[0] + "\n}")
    single = trained["metrics"]
    assert merged["num_samples"] == single["num_samples"]
    for key in ("map", "map_50", "map_75", "mar_100", "f1_50"):
        assert merged[key] == pytest.approx(single[key], abs=1e-6)


@pytest.mark.parametrize(
    ("config", "extra", "masks"),
    [
        ("synthetic_shapes_detr.toml", [], False),
        ("synthetic_shapes_fasterrcnn.toml", ["--model.name", "rtdetr_tiny", "--model.kwargs", "{}"], False),
        (
            "synthetic_shapes_fasterrcnn.toml",
            [
                "--model.name",
                "maskrcnn",
                "--training.metrics",
                '["map", "map_50", "segm_map", "segm_map_50"]',
            ],
            True,
        ),
    ],
)
def test_other_detectors_run_end_to_end(tmp_path, config, extra, masks):
    """DETR (softmax queries), RT-DETR (sigmoid top-k) and Mask R-CNN (instance masks) through the same
    path: their printed metrics are pycocotools' on the results json they save (masks as RLE)."""
    path = str(ROOT / "recipes" / "configs" / config)
    args = shortened(
        RECIPE, path, tmp_path, 2, "--dataset.max_samples", "8", "--training.drawings", "2", *extra
    )
    proc = run_python(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run, metrics = _parse(proc.stdout)
    stats = cocoeval(run)
    assert (stats[0], stats[1]) == pytest.approx((metrics["map"], metrics["map_50"]), abs=1e-9)
    if masks:
        segm = cocoeval(run, "segm")
        assert (segm[0], segm[1]) == pytest.approx((metrics["segm_map"], metrics["segm_map_50"]), abs=1e-9)
        # a short run scores ~0 either way: each saved mask must also lie in its own box (pasted there)
        from pycocotools import mask as mask_api

        results = json.loads((run / "test_results.json").read_text())
        drawn = [r for r in results if mask_api.area(r["segmentation"]) > 0]
        assert len(drawn) >= len(results) // 2, (len(drawn), len(results))
        for r in drawn:
            x, y, w, h = mask_api.toBbox(r["segmentation"])
            bx, by, bw, bh = r["bbox"]
            assert bx - 2 <= x and by - 2 <= y and x + w <= bx + bw + 2 and y + h <= by + bh + 2, (
                r["bbox"],
                x,
                y,
                w,
                h,
            )
    assert (run / "test_results.json").is_file() and len(list((run / "drawings").glob("*.png"))) == 2


def test_tester_writes_the_split_it_is_given_where_it_is_told(detection_run, tmp_path):
    """The split and the folder reach the task's output hooks explicitly: a validation run written
    elsewhere holds valid_* files that pycocotools reads back, and nothing lands in the run folder."""
    from pycocotools.coco import COCO

    from neurotrain_hf.config import load_config
    from neurotrain_hf.tester import Tester

    before = sorted(p.name for p in detection_run.iterdir())
    out = tmp_path / "elsewhere"
    result = Tester(load_config(detection_run / "config.toml")).run(split="valid", out_dir=out)
    names = {p.name for p in out.iterdir()}
    assert {"valid_metrics.json", "valid_per_sample.csv", "valid_results.json", "valid_coco_gt.json"} <= names
    assert not any(n.startswith(".") for n in names)  # the ranks' parts were merged and removed
    rows = (out / "valid_per_sample.csv").read_text().splitlines()
    assert len(rows) == 1 + result["num_samples"] and rows[0].startswith("index,image_id,")
    gt = COCO(str(out / "valid_coco_gt.json"))
    assert len(gt.getImgIds()) == result["num_samples"]
    results = json.loads((out / "valid_results.json").read_text())
    assert results and set(gt.loadRes(results).getImgIds()) <= set(gt.getImgIds())
    drawings = sorted(p.name for p in (out / "drawings").glob("*.png"))
    assert len(drawings) == min(8, result["num_samples"]) and all(n.startswith("valid_") for n in drawings)
    assert sorted(p.name for p in detection_run.iterdir()) == before


def test_every_ranks_results_are_merged_in_order(tmp_path):
    """What rank 0 merges when each of two ranks wrote its part (the part names the task's hooks use)."""
    from neurotrain_hf.tasks.detection.outputs import RESULTS, finish_outputs
    from neurotrain_hf.trainer.evaluation import TestOutputs, merge_csv_parts

    out = TestOutputs("test", tmp_path, None, None, None, world_size=2)
    lines = [[(3, 0.2), (1, 0.9)], [(1, 0.95), (2, 0.5)]]  # (image id, score) per rank
    for rank, part in enumerate(out.parts(RESULTS)):
        part.write_text("".join(json.dumps({"image_id": i, "score": sc}) + "\n" for i, sc in lines[rank]))
    csv_parts = out.parts("per_sample.csv")
    csv_parts[0].write_text("index,loss\n2,0.5\n0,0.1\n")
    csv_parts[1].write_text("index,loss\n1,0.3\n")
    finish_outputs(out)
    merge_csv_parts(csv_parts, tmp_path / "test_per_sample.csv")
    merged = [(r["image_id"], r["score"]) for r in json.loads((tmp_path / "test_results.json").read_text())]
    assert merged == [(1, 0.95), (1, 0.9), (2, 0.5), (3, 0.2)]  # by image, best score first
    assert (tmp_path / "test_per_sample.csv").read_text().splitlines() == [
        "index,loss",
        "0,0.1",
        "1,0.3",
        "2,0.5",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_per_sample.csv", "test_results.json"]
