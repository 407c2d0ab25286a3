"""3D segmentation runs: the synthetic_3d recipe as typed (shortened), the Predictor's NIfTI output on
the input's grid, bit-exact resume, two processes, and one-line errors from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, run_python
from tests.helpers.launch import accelerate_launch
from tests.helpers.recipes import shortened
from tests.segmentation.volume_fixtures import write_msd_spleen

RECIPE = "recipes/train_segmentation.py"
CONFIG = str(ROOT / "recipes" / "configs" / "synthetic_3d.toml")


def short(tmp_path: Path, steps: int, *extra: str) -> list[str]:
    """The shipped synthetic_3d config on a shortened schedule, writing under ``tmp_path``."""
    return shortened(RECIPE, CONFIG, tmp_path, steps, *extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One shortened run of the recipe as typed (90 steps instead of 400), shared by the tests below."""
    tmp = tmp_path_factory.mktemp("seg3d")
    env = {"NEUROTRAIN_CACHE": str(tmp / "cache")}
    proc = run_python(short(tmp, 90), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("test metrics: ")
    run_dir = Path(next(line for line in lines if line.startswith("run folder: ")).split(": ", 1)[1])
    return {"run": run_dir, "metrics": json.loads(lines[-1].split(": ", 1)[1]), "env": env, "tmp": tmp}


def test_recipe_learns_and_writes_a_3d_run_folder(trained):
    metrics, run = trained["metrics"], trained["run"]
    assert metrics["mean_dice"] >= 0.7  # chance is ~0.05 per organ; the full 400 steps give ~0.94
    assert all(metrics[f"dice_{organ}"] > 0.5 for organ in ("liver", "spleen", "aorta"))
    assert 0 < metrics["mean_hd95"] < 10 and metrics["mean_nsd"] > 0.7
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < 0.6 * losses[0]
    fingerprint = json.loads((run / "fingerprint.json").read_text())
    assert fingerprint["cases"] == 16 and fingerprint["median_spacing"] == pytest.approx([0.9, 0.9, 2.5])
    rows = (run / "test_per_sample.csv").read_text().splitlines()
    assert (
        rows[0].split(",")[:3] == ["index", "id", "mean_dice"] and "dice_spleen" in rows[0] and len(rows) == 7
    )
    assert len(list((run / "overlays").glob("*.png"))) == 6
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    import neurotrain_hf  # noqa: F401

    model = AutoModelForSemanticSegmentation.from_pretrained(run / "model")
    processor = AutoImageProcessor.from_pretrained(run / "model")
    assert (
        model.config.spatial_dims == 3
        and processor.spacing == [1.5, 1.5, 2.5]
        and processor.intensity == "ct"
    )


def test_predictor_writes_nifti_on_the_input_grid(trained, tmp_path):
    from neurotrain_hf.predictor import Predictor

    cases = sorted((trained["tmp"] / "cache" / "synthetic_3d").rglob("test_00[01].nii.gz"))
    out = tmp_path / "pred"
    proc = run_python(
        ["-m", "neurotrain_hf.cli", "predict", str(trained["run"]), *map(str, cases), "--out", str(out)],
        env=trained["env"],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    predictor = Predictor.from_pretrained(trained["run"])
    for case in cases:  # case 000 is stored RAS, 001 LPS
        src = nib.load(case)
        written = nib.load(out / case.name.replace(".nii.gz", "_seg.nii.gz"))
        assert written.shape == src.shape and np.allclose(written.affine, src.affine)
        assert written.header.get_zooms() == src.header.get_zooms() and written.get_data_dtype() == np.uint8
        mask = np.asarray(written.dataobj)
        assert np.array_equal(mask, predictor.predict_files([str(case)])[0]["mask"])
        label = np.asarray(nib.load(str(case).replace(".nii.gz", "_label.nii.gz")).dataobj)
        for organ in (1, 2, 3):  # the prediction overlays the structures in voxel and world space
            p, r = mask == organ, label == organ
            assert 2 * (p & r).sum() / (p.sum() + r.sum()) > 0.6
            world = [src.affine[:3, :3] @ np.argwhere(m).mean(0) + src.affine[:3, 3] for m in (p, r)]
            assert np.abs(world[0] - world[1]).max() < 2.5  # mm
        assert (out / case.name.replace(".nii.gz", "_seg.png")).is_file()
    summary = json.loads(proc.stdout.strip().splitlines()[0])
    assert set(summary["volume_ml"]) == {"1", "2", "3"}


def test_resume_is_bit_exact(tmp_path):
    root = write_msd_spleen(tmp_path / "msd", cases=4)
    common = [
        f"--dataset.root={root}",
        "--dataset.name=msd",
        "--dataset.spacing=[1.0,1.0,2.5]",
        f"--dataset.preprocessed_dir={tmp_path / 'cache'}",
        "--augmentation.patch_size=[16,16,8]",
        "--training.nsd_tolerances=[2.0]",
        "--testing.run_after_training=false",
        "--training.eval_strategy=no",
        "--training.load_best_model_at_end=false",
        "--training.save_steps=3",
    ]
    straight = short(tmp_path, 6, *common, "--basic.run_id=straight")[1:]
    killed = short(tmp_path, 6, *common, "--basic.run_id=killed")[1:]
    helper = "tests/helpers/train_until.py"
    assert run_python([helper, *straight]).returncode == 0
    assert run_python([helper, killed[0], "--kill-at-step", "5", *killed[1:]]).returncode == -9
    proc = run_python([helper, *killed, "--training.resume_from_checkpoint", "last"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = tmp_path / "runs" / "segmentation"
    a = load_file(str(runs / "straight" / "model" / "model.safetensors"))
    b = load_file(str(runs / "killed" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_train_and_evaluate_like_one(tmp_path):
    env = {"NEUROTRAIN_CACHE": str(tmp_path / "cache")}
    args = short(tmp_path, 8, "--dataset.max_samples", "5", "--training.load_best_model_at_end", "false")
    proc = accelerate_launch(2, *args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    run = Path(next(line for line in lines if line.startswith("run folder: ")).split(": ", 1)[1])
    report = json.loads((run / "report.json").read_text())
    assert report["world_size"] == 2
    two = report["test"]
    # the same model evaluated in one process gives the same test metrics (5 volumes: 3 + 2 per rank)
    one = run_python(["-m", "neurotrain_hf.cli", "test", str(run / "config.toml")], env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    single = json.loads(one.stdout[one.stdout.index("{\n") :])  # after any library banner line
    for key in ("mean_dice", "dice_liver", "dice_spleen", "dice_aorta", "mean_hd95"):
        assert single[key] == pytest.approx(two[key], abs=1e-6)
    assert single["num_samples"] == 5


def test_bad_volume_on_the_command_line_is_one_line(tmp_path):
    root = write_msd_spleen(tmp_path / "msd", cases=3)
    bad = sorted((root / "labelsTr").glob("spleen_*.nii.gz"))[0]
    bad.write_bytes(b"not a nifti")
    proc = run_python(
        [
            RECIPE,
            CONFIG,
            f"--dataset.root={root}",
            "--dataset.name=msd",
            f"--dataset.preprocessed_dir={tmp_path}",
        ]
    )
    assert proc.returncode == 2
    assert bad.name in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_volume_demo_returns_the_predictors_mask_and_refuses_bad_files(trained, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from neurotrain_hf.demos import build_demo  # the model folder's task builds its demo
    from neurotrain_hf.predictor import Predictor
    from tests.test_demos import serve

    case = sorted((trained["tmp"] / "cache" / "synthetic_3d").rglob("test_001.nii.gz"))[0]
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(case.read_bytes()[:2000])
    text = tmp_path / "notes.gz"
    text.write_text("hello")
    with serve(build_demo(str(trained["run"]))) as (_, client):
        for path, message in (
            (bad, "^broken.nii.gz: truncated or corrupt"),
            (text, "expected a NIfTI volume"),
        ):
            with pytest.raises(AppError, match=message):
                client.predict(handle_file(str(path)), -1, api_name="/predict")
        mask_file, picture, table = client.predict(handle_file(str(case)), -1, api_name="/predict")
    written, src = nib.load(mask_file), nib.load(case)
    assert np.allclose(written.affine, src.affine) and written.shape == src.shape
    expected = Predictor.from_pretrained(trained["run"]).predict_files([str(case)])[0]["mask"]
    assert np.array_equal(np.asarray(written.dataobj), expected)
    assert {row[0] for row in table["data"]} == {"liver", "spleen", "aorta"}
