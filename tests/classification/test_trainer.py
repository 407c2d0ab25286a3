"""NeuroTrainer: end-to-end run folder, resumption, crash safety, NaN stop, early stopping, GA, bf16."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, TrainerCallback

from neurotrain_hf.errors import TrainingHaltedError
from neurotrain_hf.runner import build, resume_argument
from neurotrain_hf.runner import run as run_experiment
from neurotrain_hf.trainer.checkpointing import COMPLETE_MARKER, checkpoints, last_good_checkpoint
from neurotrain_hf.trainer.neuro_trainer import NeuroTrainer
from neurotrain_hf.trainer.run_folder import read_history

from ..conftest import make_config, run_python, tiny_config_dict, write_toml


def test_end_to_end_run_folder(tmp_path):
    config = make_config(
        tmp_path, training={"num_train_epochs": 2, "metrics": ["accuracy", "f1", "auc", "top3"]}
    )
    _, _, trainer = build(config)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    report = run_experiment(config)
    run = config.run_dir
    for name in (
        "config.toml",
        "history.csv",
        "history.jsonl",
        "training_curves.png",
        "confusion_matrix.png",
        "valid_confusion_matrix.png",
        "report.json",
        "test_per_sample.csv",
        "test_metrics.json",
        "model/model.safetensors",
        "model/config.json",
        "model/preprocessor_config.json",
    ):
        assert (run / name).is_file(), name
    ckpts = checkpoints(run)
    assert ckpts and all((p / COMPLETE_MARKER).is_file() for _, p in ckpts)
    assert all((p / "model.safetensors").is_file() for _, p in ckpts)
    assert not list((run / "model").glob("*.bin")) and not list((run / "model").glob("*.pt"))
    saved = json.loads((run / "report.json").read_text())
    assert saved["test"]["num_samples"] == report["test"]["num_samples"] > 0
    assert math.isfinite(saved["train"]["train_loss"])
    trained = load_file(str(run / "model" / "model.safetensors"))
    changed = [n for n, p in before.items() if not torch.equal(p, trained[n])]
    assert set(changed) == set(before), "every trainable parameter must change"
    history = read_history(run)
    assert any("eval_accuracy" in r for r in history) and any("loss" in r for r in history)
    assert any("samples_per_second" in r and "cpu_ram_mb" in r for r in history)
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert "eval_accuracy" in header and "loss" in header


def test_streaming_eval_matches_sklearn_and_keeps_no_logits(tmp_path, monkeypatch):
    from sklearn.metrics import accuracy_score, f1_score
    from transformers.trainer_pt_utils import EvalLoopContainer

    config = make_config(
        tmp_path,
        training={"num_train_epochs": 1, "per_device_eval_batch_size": 7, "metrics": ["accuracy", "f1"]},
    )
    _, _, trainer = build(config)
    trainer.train()
    added = []
    original = EvalLoopContainer.add
    monkeypatch.setattr(EvalLoopContainer, "add", lambda self, t: (added.append(t.shape), original(self, t)))
    metrics = trainer.evaluate()
    assert added == [], f"evaluation gathered per-sample tensors: {added}"  # state stays on each rank
    model = trainer.model.eval()
    ds = trainer.eval_dataset
    batch = ds.__getitems__(list(range(len(ds))))
    with torch.no_grad():
        preds = model(pixel_values=batch["pixel_values"]).logits.argmax(1).numpy()
    labels = batch["labels"].numpy()
    assert metrics["eval_accuracy"] == pytest.approx(accuracy_score(labels, preds))
    assert metrics["eval_f1"] == pytest.approx(f1_score(labels, preds, average="macro"))


def _kill_config(tmp_path, run_id, save_total_limit=10):
    """Three epochs of 8 steps, a checkpoint every 5, dropout and random flips/rotation (exact-resume checks)."""
    data = tiny_config_dict(
        tmp_path,
        basic={"run_id": run_id},
        training={
            "num_train_epochs": 3,
            "eval_strategy": "no",
            "save_strategy": "steps",
            "save_steps": 5,
            "save_total_limit": save_total_limit,
            "logging_steps": 1,
            "metrics": [],
        },
        model={"kwargs": {"channels": [8, 16], "dropout": 0.3}},
        augmentation={"horizontal_flip": 0.5, "rotation": 10.0},
        testing={"run_after_training": False},
    )
    return write_toml(tmp_path / f"{run_id}.toml", data)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    straight = _kill_config(tmp_path, "straight")
    killed = _kill_config(tmp_path, "killed")
    proc = run_python(["tests/helpers/train_until.py", str(straight)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_python(["tests/helpers/train_until.py", str(killed), "--kill-at-step", "13"])
    assert proc.returncode == -9, proc.stderr[-2000:]
    run = tmp_path / "runs" / "classification" / "killed"
    assert last_good_checkpoint(run).name == "checkpoint-10"
    rows_before = [r for r in read_history(run) if r["step"] <= 10]
    proc = run_python(
        ["tests/helpers/train_until.py", str(killed), "--training.resume_from_checkpoint", "last"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = load_file(str(tmp_path / "runs" / "classification" / "straight" / "model" / "model.safetensors"))
    b = load_file(str(run / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history = read_history(run)
    steps = [r["step"] for r in history if "loss" in r]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == 24  # appended, no duplicates
    assert history[: len(rows_before)] == rows_before


def _saving_config(tmp_path, save_steps: int):
    """Three epochs of 8 steps, no evaluation, a checkpoint every ``save_steps``."""
    training = {"num_train_epochs": 3, "eval_strategy": "no", "save_strategy": "steps", "metrics": []}
    return make_config(tmp_path, training={**training, "save_steps": save_steps})


def test_crash_while_saving_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from transformers import Trainer

    config = _saving_config(tmp_path, save_steps=4)
    _, _, trainer = build(config)
    calls = {"n": 0}
    original = Trainer._save_optimizer_and_scheduler

    def crash_on_second(self, output_dir):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated)")
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", crash_on_second)
    with pytest.raises(TrainingHaltedError, match=r"checkpoint-8 \(disk full \(simulated\)\)"):
        trainer.train()
    run = config.run_dir
    assert [p.name for _, p in checkpoints(run)] == ["checkpoint-4"]  # half-written checkpoint-8 removed
    assert last_good_checkpoint(run).name == "checkpoint-4"
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", original)
    _, _, trainer2 = build(config)
    trainer2.train(resume_from_checkpoint=True)
    assert trainer2.state.global_step == 24
    assert all((p / COMPLETE_MARKER).is_file() for _, p in checkpoints(run))


def test_full_disk_while_writing_the_model_folder_is_one_line_and_keeps_the_checkpoints(
    tmp_path, monkeypatch
):
    import errno

    from neurotrain_hf.runner import save_model

    config = _saving_config(tmp_path, save_steps=4)
    task, data, trainer = build(config)
    trainer.train()
    model_dir = config.run_dir / "model"

    def full_disk(output_dir=None, _internal_call=False):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        Path(output_dir, "model.safetensors").write_bytes(b"\0" * 64)  # a partial file, then no room
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(output_dir, "model.safetensors")))

    monkeypatch.setattr(trainer, "save_model", full_disk)
    with pytest.raises(TrainingHaltedError) as info:
        save_model(trainer, task, data, model_dir)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"could not write the model folder {model_dir} (")
    assert "No space left on device" in message and "checkpoint-24" in message
    assert not model_dir.exists() and not list(config.run_dir.glob(".model.staging*"))  # nothing half-written
    assert last_good_checkpoint(config.run_dir).name == "checkpoint-24"


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = _saving_config(tmp_path, save_steps=3)
    _, _, trainer = build(config)
    step = {"n": 0}

    def poison(module, inputs, output):
        step["n"] += 1
        return output * float("nan") if step["n"] == 5 else output

    trainer.model.head.register_forward_hook(poison)
    with pytest.raises(TrainingHaltedError) as err:
        trainer.train()
    message = str(err.value)
    assert "non-finite training loss" in message and "at step 5" in message and "checkpoint-3" in message
    good = last_good_checkpoint(config.run_dir)
    weights = load_file(str(good / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # the NaN step was not applied


def test_early_stopping(tmp_path):
    config = make_config(
        tmp_path,
        training={
            "num_train_epochs": 10,
            "learning_rate": 0.0,
            "early_stopping_patience": 2,
            "metrics": ["accuracy"],
        },
    )
    _, _, trainer = build(config)
    trainer.train()
    evals = [r for r in trainer.state.log_history if "eval_accuracy" in r]
    assert len(evals) == 3  # best at the first, then 2 without improvement
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{trainer.state.global_step // 3}")


def test_gradient_accumulation_equals_big_batch(tmp_path):
    def final_weights(run_id, **training):
        config = make_config(
            tmp_path,
            basic={"run_id": run_id},
            model={"name": "mlp", "kwargs": {"dropout": 0.0}},
            training={
                "max_steps": 3,
                "eval_strategy": "no",
                "save_strategy": "no",
                "metrics": [],
                "batch_size": None,
                "optim": "sgd",  # AdamW hides loss-scale errors (platform notes)
                "learning_rate": 0.1,
                **training,
            },
            dataset={"max_samples": 96},
        )
        _, _, trainer = build(config)
        trainer.train()
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    big = final_weights("big", per_device_train_batch_size=32, gradient_accumulation_steps=1)
    small = final_weights("small", per_device_train_batch_size=16, gradient_accumulation_steps=2)
    for k in big:
        torch.testing.assert_close(big[k], small[k], rtol=1e-5, atol=1e-6)


@pytest.mark.requires("tensorboard")
def test_bf16_on_cpu_and_tensorboard(tmp_path):
    config = make_config(
        tmp_path,
        training={
            "bf16": True,
            "max_steps": 4,
            "eval_strategy": "no",
            "save_strategy": "no",
            "metrics": [],
            "report_to": ["tensorboard"],
            "logging_steps": 1,
        },
    )
    # without a GPU, bf16 needs use_cpu (set automatically); with one, the GPU does it
    assert config.training.use_cpu == (not torch.cuda.is_available())
    _, _, trainer = build(config)
    seen = []  # dtype of every conv/linear output during training: autocast must run them in bf16
    layers = [m for m in trainer.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.dtype)) for m in layers]
    out = trainer.train()
    for hook in hooks:
        hook.remove()
    assert layers and len(seen) == 4 * len(layers)  # 4 steps, every layer
    assert set(seen) == {torch.bfloat16}
    assert math.isfinite(out.training_loss)
    events = list((tmp_path / "runs").rglob("events.out.tfevents.*"))
    assert events, "tensorboard wrote no event file"


def test_tester_and_predictor_agree(tmp_path):
    from neurotrain_hf import Predictor, Tester
    from neurotrain_hf.data import get_test_dataset

    config = make_config(tmp_path, training={"num_train_epochs": 1})
    run_experiment(config)
    result = Tester(config).run()  # loads the best model from the run folder
    rows = (config.run_dir / "test_per_sample.csv").read_text().splitlines()
    assert len(rows) - 1 == result["num_samples"]
    correct = np.mean([int(r.split(",")[6]) for r in rows[1:]])
    assert result["accuracy"] == pytest.approx(correct)
    predictor = Predictor.from_pretrained(config.run_dir)
    raw = get_test_dataset(config).with_format("numpy")[:]["image"]
    preds = predictor.predict(list(raw))
    assert [p["label"] for p in preds] == [int(r.split(",")[3]) for r in rows[1:]]
    single = predictor(raw[0])
    assert single["label"] == preds[0]["label"] and abs(sum(single["scores"]) - 1) < 1e-6


def test_broken_multiprocess_launch_is_refused(monkeypatch):
    from neurotrain_hf.trainer.neuro_trainer import check_distributed_launch

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainingHaltedError, match="WORLD_SIZE=2 but training runs on 1 process"):
        check_distributed_launch(1)
    check_distributed_launch(2)


def test_use_cpu_is_set_for_cpu_multiprocess(monkeypatch, tmp_path):
    from neurotrain_hf.tasks.classification.config import ClassificationConfig
    from neurotrain_hf.trainer.neuro_config import use_cpu_without_gpu

    args = ClassificationConfig(output_dir=str(tmp_path))
    args.use_cpu = False
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    use_cpu_without_gpu(args)
    assert args.use_cpu


# --- checkpoints: rotation never leaves the run folder without a complete checkpoint ---------------
@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("straight")
    proc = run_python(
        ["tests/helpers/train_until.py", str(_kill_config(tmp_path, "straight", save_total_limit=1))]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "runs" / "classification" / "straight"
    assert [p.name for _, p in checkpoints(run)] == ["checkpoint-24"]  # save_total_limit = 1
    return load_file(str(run / "model" / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("point", ["optimizer", "rotate", "delete"])
def test_sigkill_inside_a_save_keeps_a_complete_checkpoint_and_resumes_exactly(tmp_path, point, straight_run):
    cfg = _kill_config(tmp_path, "killed", save_total_limit=1)
    proc = run_python(["tests/helpers/train_until.py", str(cfg), "--kill-in-save", f"10:{point}"])
    assert proc.returncode == -9, proc.stderr[-2000:]
    run = tmp_path / "runs" / "classification" / "killed"
    good = last_good_checkpoint(run)
    assert good is not None, f"no complete checkpoint after a kill at {point}"
    assert good.name == ("checkpoint-5" if point == "optimizer" else "checkpoint-10")
    weights = load_file(str(good / "model.safetensors"))
    assert weights and all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    proc = run_python(["tests/helpers/train_until.py", str(cfg), "--training.resume_from_checkpoint", "last"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    final = load_file(str(run / "model" / "model.safetensors"))
    assert final.keys() == straight_run.keys()
    assert all(torch.equal(final[k], straight_run[k]) for k in final)
    assert [p.name for _, p in checkpoints(run)] == ["checkpoint-24"]


class CountSteps(TrainerCallback):
    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


def _steps_config(tmp_path, max_steps, **training):
    return make_config(
        tmp_path,
        training={
            "max_steps": max_steps,
            "eval_strategy": "no",
            "save_strategy": "steps",
            "save_steps": 4,
            "save_total_limit": 10,
            "metrics": [],
            **training,
        },
        testing={"run_after_training": False},
    )


def test_resume_auto_starts_fresh_then_resumes(tmp_path):
    counter = CountSteps()
    _, _, trainer = build(_steps_config(tmp_path, 8), callbacks=[counter])
    trainer.train(resume_from_checkpoint=resume_argument("auto"))  # nothing to resume: fresh start
    assert counter.steps == 8 and trainer.state.global_step == 8
    counter = CountSteps()
    _, _, trainer = build(_steps_config(tmp_path, 12), callbacks=[counter])
    trainer.train(resume_from_checkpoint=resume_argument("auto"))
    assert counter.steps == 4 and trainer.state.global_step == 12  # resumed from checkpoint-8


def test_named_checkpoint_is_never_deleted(tmp_path):
    config = _steps_config(tmp_path, 8)
    build(config)[2].train()
    run = config.run_dir
    named = run / "checkpoint-4"
    (run / "checkpoint-8" / COMPLETE_MARKER).unlink()  # as if a save had been interrupted
    with pytest.raises(TrainingHaltedError, match="incomplete"):
        build(config)[2].train(resume_from_checkpoint=str(run / "checkpoint-8"))
    assert (run / "checkpoint-8").is_dir()  # a named checkpoint is not cleaned up, even incomplete
    config = _steps_config(tmp_path, 16, save_total_limit=1)
    build(config)[2].train(resume_from_checkpoint=str(named))
    assert named.is_dir() and (named / COMPLETE_MARKER).is_file()  # rotation spared it
    assert [p.name for _, p in checkpoints(run)] == ["checkpoint-4", "checkpoint-16"]


# --- one loss definition, the best model's artifacts, no side effects ------------------------------
def test_eval_test_and_reference_losses_agree_with_label_smoothing(tmp_path):
    import torch.nn.functional as F

    config = make_config(tmp_path, training={"num_train_epochs": 1, "label_smoothing": 0.1})
    report = run_experiment(config)
    _, data, trainer = build(config)
    model = AutoModelForImageClassification.from_pretrained(str(config.run_dir / "model")).eval()
    trainer.model = model
    evaluated = trainer.evaluate(data.splits["test"])
    assert evaluated["eval_loss"] == pytest.approx(report["test"]["loss"], rel=1e-6)
    batch = NeuroTrainer.wrap_dataset(data.splits["test"], trainer.args).__getitems__(
        list(range(len(data.splits["test"])))
    )
    with torch.no_grad():
        logits = model(pixel_values=batch["pixel_values"]).logits
    reference = F.cross_entropy(logits, batch["labels"], label_smoothing=0.1).item()
    assert report["test"]["loss"] == pytest.approx(reference, rel=1e-5)


def test_validation_confusion_matrix_belongs_to_the_saved_model(tmp_path, monkeypatch):
    from neurotrain_hf.tasks.classification import task as task_module

    drawn = {}
    monkeypatch.setattr(
        task_module,
        "plot_confusion",
        lambda run_dir, cm, names, name="confusion_matrix.png": drawn.update({name: cm}),
    )
    # "best" = lowest accuracy: the saved model is an early one, not the last evaluated
    config = make_config(
        tmp_path,
        training={"num_train_epochs": 4, "metrics": ["accuracy"], "greater_is_better": False},
    )
    report = run_experiment(config)
    evals = [r["eval_accuracy"] for r in read_history(config.run_dir) if "eval_accuracy" in r]
    assert report["best_metric"] == min(evals) != evals[-1]
    cm = np.asarray(drawn["valid_confusion_matrix.png"])
    assert np.trace(cm) / cm.sum() == pytest.approx(report["best_metric"])


def test_no_pin_memory_warning_and_no_evaluate_install(tmp_path, monkeypatch, recwarn):
    import neurotrain_hf.metrics.hub as hub

    monkeypatch.setattr(hub, "install_modules", lambda *a, **k: pytest.fail("training installed modules"))
    config = make_config(tmp_path, training={"num_train_epochs": 1, "dataloader_pin_memory": True})
    # pinning is kept only where an accelerator serves it (the same question torch asks)
    assert config.training.dataloader_pin_memory is torch.accelerator.is_available()
    run_experiment(config)
    assert not [w for w in recwarn if "pin_memory" in str(w.message)]


def test_summed_loss_logs_each_term(tmp_path):
    config = make_config(
        tmp_path,
        training={"num_train_epochs": 1, "loss": "ce+focal", "loss_weights": [1.0, 0.5], "logging_steps": 2},
    )
    run_experiment(config)
    rows = [r for r in read_history(config.run_dir) if "loss" in r and "eval_loss" not in r]
    assert rows and all("loss_ce" in r and "loss_focal" in r for r in rows)
    for r in rows:
        assert r["loss"] == pytest.approx(r["loss_ce"] + 0.5 * r["loss_focal"], rel=1e-4)
    header = (config.run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert {"loss_ce", "loss_focal"} <= set(header)
