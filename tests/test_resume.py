"""Crash safety beyond classification: SIGKILL mid-training then resuming from `last` ends with the weights
of an uninterrupted run, for detection (Faster R-CNN, DETR), 3D segmentation on 2 processes and DeepSpeed
ZeRO-2; a full disk while writing a checkpoint stops the run in one line, keeps the previous checkpoint
and resumes to the same weights.

The kill tests run 5 steps, save every 3 and are killed at step 4 (checkpoint-3 complete, step 4 lost);
with epochs of 2 steps (detection, 3D) the resume starts one batch into the second epoch, where the
augmentation seeds and the sampler depend on the epoch. The uninterrupted reference runs first in the
same interpreter (``--first``) to spare one start-up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from neurotrain_hf.trainer.checkpointing import checkpoints, is_complete, last_good_checkpoint

from .conftest import run_python, tiny_config_dict, write_toml
from .helpers.launch import accelerate_launch
from .segmentation.volume_fixtures import write_msd_spleen

HELPER = "tests/helpers/train_until.py"
DDP = "tests/helpers/ddp_train.py"
SAVE_EVERY, KILL_AT, STEPS = 3, 4, 5
RUN = {
    "max_steps": STEPS,
    "eval_strategy": "no",
    "save_strategy": "steps",
    "save_steps": SAVE_EVERY,
    "logging_steps": 1,
}


def configs(tmp_path: Path, data: dict) -> tuple[Path, Path]:
    """TOML files of the same experiment as run ``straight`` and run ``killed``."""
    paths = []
    for run_id in ("straight", "killed"):
        data["basic"]["run_id"] = run_id
        paths.append(write_toml(tmp_path / f"{run_id}.toml", data))
    return paths[0], paths[1]


def run_dirs(data: dict) -> tuple[Path, Path]:
    root = Path(data["basic"]["output_dir"]) / data["basic"]["task"]
    return root / "straight", root / "killed"


def assert_same_weights(a_dir: Path, b_dir: Path) -> None:
    """Bit-identical final model folders (every tensor, buffers included)."""
    a, b = (load_file(str(d / "model" / "model.safetensors")) for d in (a_dir, b_dir))
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"


def assert_resumed(run: Path, steps: int = STEPS) -> None:
    """The resumed run continued the killed one: one loss row per step, none repeated, none missing."""
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, steps + 1))


def kill_and_resume(tmp_path: Path, data: dict) -> tuple[Path, Path]:
    """One process: reference run, then the same run SIGKILLed at step 4, then resumed from `last`."""
    straight, killed = configs(tmp_path, data)
    proc = run_python([HELPER, str(killed), "--first", str(straight), "--kill-at-step", str(KILL_AT)])
    assert proc.returncode == -9, proc.stderr[-3000:]
    a, b = run_dirs(data)
    assert (a / "model").is_dir() and not (b / "model").exists()
    assert last_good_checkpoint(b).name == f"checkpoint-{SAVE_EVERY}"
    proc = run_python([HELPER, str(killed), "--training.resume_from_checkpoint", "last"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_resumed(b)
    return a, b


def kill_and_resume_launched(tmp_path: Path, data: dict, **launch) -> tuple[Path, Path]:
    """The same on 2 processes through `accelerate launch` (both ranks SIGKILL themselves at step 4)."""
    straight, killed = configs(tmp_path, data)
    argv = [DDP, "--first", str(straight), "--kill-at-step", str(KILL_AT), str(killed)]
    proc = accelerate_launch(2 if not launch else None, *argv, timeout=300, **launch)
    assert proc.returncode != 0
    a, b = run_dirs(data)
    ranks = [json.loads((a / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2 and ranks[0]["weights"] == ranks[1]["weights"]
    assert not (b / "model").exists() and not (b / "ranks").exists()
    assert last_good_checkpoint(b).name == f"checkpoint-{SAVE_EVERY}"
    argv = [DDP, str(killed), "--training.resume_from_checkpoint", "last"]
    proc = accelerate_launch(2 if not launch else None, *argv, timeout=300, **launch)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_resumed(b)
    ranks = [json.loads((b / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # still one group after the resume
    return a, b


def detection_data(tmp_path: Path, model: dict) -> dict:
    """Synthetic shapes at 64 px with flips, 4 training images in batches of 2 (epochs of 2 steps)."""
    return {
        "basic": {"task": "detection", "run_id": "", "seed": 0, "output_dir": str(tmp_path / "runs")},
        "model": model,
        "dataset": {"name": "synthetic_shapes_detection", "max_samples": 4},
        "augmentation": {"image_size": 64, "horizontal_flip": 0.5, "vertical_flip": 0.5},
        "training": {"batch_size": 2, "learning_rate": 1e-3, "metrics": [], **RUN},
        "testing": {"run_after_training": False},
    }


FASTERRCNN = {
    "name": "fasterrcnn",
    "kwargs": {
        "backbone": "resnet18",
        "trainable_backbone_layers": 1,
        "fpn_channels": 16,
        "representation_size": 32,
        "rpn_post_nms_top_n": 50,
        "box_batch_size_per_image": 16,
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("model", [FASTERRCNN, {"name": "detr_tiny"}], ids=["fasterrcnn", "detr"])
def test_detection_resume_after_sigkill_is_bit_exact(tmp_path, model):
    """RPN/RoI sampling (Faster R-CNN) and dropout (DETR) draw from the global RNG, flips from the loader's."""
    a, b = kill_and_resume(tmp_path, detection_data(tmp_path, model))
    assert_same_weights(a, b)


@pytest.mark.slow
def test_3d_segmentation_resume_on_two_processes_is_bit_exact(tmp_path):
    """Dropout draws from each rank's RNG; 4 training volumes, 1 per rank and step (epochs of 2 steps)."""
    root = write_msd_spleen(tmp_path / "msd", cases=4)
    data = {
        "basic": {"task": "segmentation", "run_id": "", "seed": 0, "output_dir": str(tmp_path / "runs")},
        "model": {
            "name": "unet",
            "kwargs": {"spatial_dims": 3, "depth": 2, "base_channels": 4, "norm": "instance", "dropout": 0.2},
        },
        "dataset": {
            "name": "msd",
            "root": str(root),
            "spacing": [1.0, 1.0, 2.5],
            "preprocessed_dir": str(tmp_path / "cache"),
            "valid_ratio": 0.0,
            "test_ratio": 0.0,
        },
        "augmentation": {"patch_size": [16, 16, 8], "samples_per_volume": 2, "axis_flip": 0.5},
        "training": {
            "per_device_train_batch_size": 1,
            "learning_rate": 0.01,
            "optim": "adamw_torch",
            "metrics": ["mean_dice"],
            "load_best_model_at_end": False,
            **RUN,
        },
        "testing": {"run_after_training": False},
    }
    a, b = kill_and_resume_launched(tmp_path, data)
    assert_same_weights(a, b)


def digits_data(tmp_path: Path, **training) -> dict:
    """Digits, the tiny MLP with dropout, AdamW (optimizer state that a resume must restore)."""
    data = tiny_config_dict(
        tmp_path,
        model={"name": "mlp", "kwargs": {"hidden": [32], "dropout": 0.3}},
        training={"optim": "adamw_torch", "metrics": [], **RUN, **training},
        augmentation={"horizontal_flip": 0.5},
        testing={"run_after_training": False},
    )
    return data


@pytest.mark.slow
@pytest.mark.requires("deepspeed", "g++")
def test_deepspeed_zero2_resume_after_sigkill_is_bit_exact(tmp_path):
    """2 ranks, each with its shard of the AdamW state in DeepSpeed's own files, and dropout."""
    data = digits_data(tmp_path, per_device_train_batch_size=16)
    del data["training"]["batch_size"]
    a, b = kill_and_resume_launched(tmp_path, data, config_file="zero2")
    shards = b / f"checkpoint-{SAVE_EVERY}" / f"global_step{SAVE_EVERY}"  # the engine's own, one per rank
    assert len(list(shards.glob("*optim_states.pt"))) == 2
    assert_same_weights(a, b)


@pytest.mark.slow
def test_full_disk_while_saving_stops_in_one_line_and_resumes_exactly(tmp_path):
    """Checkpoint 4 fails writing its optimizer state (its weights already written): the run stops in one
    line, checkpoint 2 stays complete and loadable, and resuming from it ends with the reference weights."""
    data = digits_data(tmp_path, max_steps=6, save_steps=2, save_total_limit=10)  # keeps every checkpoint
    straight, killed = configs(tmp_path, data)
    a, b = run_dirs(data)
    file = b / "checkpoint-4" / "optimizer.pt"
    proc = run_python([HELPER, str(killed), "--first", str(straight), "--fail-in-save", "4:optimizer.pt"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]  # no traceback, no progress bar
    assert f"({file}: No space left on device)" in lines[0]
    assert f"Last complete checkpoint: {b / 'checkpoint-2'} " in lines[0]
    assert [p.name for _, p in checkpoints(b)] == ["checkpoint-2"]  # the partial one was removed
    assert is_complete(b / "checkpoint-2") and not (b / "model").exists()
    state = json.loads((b / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    reference = load_file(str(a / "checkpoint-2" / "model.safetensors"))
    kept = load_file(str(b / "checkpoint-2" / "model.safetensors"))
    assert kept.keys() == reference.keys() and all(torch.equal(reference[k], kept[k]) for k in kept)
    optimizer = torch.load(b / "checkpoint-2" / "optimizer.pt", weights_only=True)
    assert len(optimizer["state"]) == len(kept)  # AdamW moments for every weight
    proc = run_python([HELPER, str(killed), "--training.resume_from_checkpoint", "last"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_resumed(b, 6)
    assert_same_weights(a, b)


def test_best_model_reload_restores_every_weight(tmp_path):
    """``load_best_model_at_end`` puts back the best checkpoint's weights, all of them: DETR's saved keys
    are renamed by transformers' conversion mapping, which a raw ``load_state_dict`` skipped."""
    from transformers import TrainerCallback

    from neurotrain_hf.config import build_config
    from neurotrain_hf.runner import build

    saved = {}

    class Keep(TrainerCallback):
        def on_save(self, args, state, control, model=None, **kwargs):
            saved[state.global_step] = {k: v.clone() for k, v in model.state_dict().items()}

    data = detection_data(tmp_path, {"name": "detr_tiny"})
    data["basic"]["run_id"] = "best"
    data["training"].update(max_steps=2, save_steps=1)
    _, _, trainer = build(build_config(data), callbacks=[Keep()])
    trainer.train()
    now = trainer.model.state_dict()
    assert any(not torch.equal(now[k], saved[1][k]) for k in now)  # step 2 moved the weights
    trainer.state.best_model_checkpoint = str(Path(trainer.args.output_dir) / "checkpoint-1")
    trainer._load_best_model()
    now = trainer.model.state_dict()
    differ = [k for k in now if not torch.equal(now[k], saved[1][k])]
    assert not differ, f"{len(differ)} of {len(now)} tensors not restored, e.g. {differ[:3]}"


def test_what_a_full_disk_raises_is_recognised_as_a_write_error(tmp_path):
    """safetensors and ``torch.save`` do not raise ``OSError`` when a write fails; a file size limit makes
    them fail for real (``EFBIG`` standing in for ``ENOSPC``)."""
    import resource
    import signal

    from safetensors.torch import save_file

    from neurotrain_hf.trainer.checkpointing import is_write_error, write_error_text

    tensors = {"w": torch.zeros(4096)}
    writes = {
        "safetensors": lambda: save_file(tensors, str(tmp_path / "model.safetensors")),
        "torch.save": lambda: torch.save(tensors, tmp_path / "optimizer.pt"),
        "open": lambda: (tmp_path / "trainer_state.json").write_text("x" * 4096),
    }
    errors = {}
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the process is killed
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))
    try:
        for name, write in writes.items():
            try:
                write()
            except Exception as exc:  # whatever each library raises
                errors[name] = exc
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert set(errors) == set(writes)
    assert not isinstance(errors["safetensors"], OSError) and not isinstance(errors["torch.save"], OSError)
    assert all(is_write_error(exc) for exc in errors.values())
    assert "File too large" in write_error_text(errors["safetensors"])
    assert write_error_text(errors["open"]) == "File too large"  # a failed write() names no file
    assert not is_write_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))
