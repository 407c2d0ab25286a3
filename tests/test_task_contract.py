"""The trainer contract every task builds on: own-loss models, label-free batches, keyword inputs."""

import math

import pytest
import torch

from neurotrain_hf.config import build_config
from neurotrain_hf.runner import build
from neurotrain_hf.runner import run as run_experiment
from neurotrain_hf.trainer.run_folder import read_history

from .conftest import ROOT, tiny_config_dict
from .helpers.toy_task import register


@pytest.fixture(autouse=True)
def _unregister_toy_task():
    """The toy task exists only during these tests (other tests list the installed tasks)."""
    yield
    from neurotrain_hf.tasks import TASKS

    TASKS.unregister("toy_reconstruction")


def toy_config(tmp_path, run_id="toy", **training):
    register()
    data = tiny_config_dict(
        tmp_path,
        basic={"task": "toy_reconstruction", "run_id": run_id},
        model={"name": "unused", "kwargs": {"hidden": 16}},
        training={"num_train_epochs": 3, "metrics": None, "logging_steps": 4, **training},
    )
    del data["training"]["metrics"]
    return build_config(data)


def test_label_free_own_loss_task_runs_through_the_generic_runner(tmp_path):
    config = toy_config(tmp_path, learning_rate=1e-2)
    report = run_experiment(config)
    losses = [r["loss"] for r in read_history(config.run_dir) if "loss" in r]
    assert len(losses) >= 3 and losses[-1] < 0.7 * losses[0]  # it learns
    evals = [r["eval_loss"] for r in read_history(config.run_dir) if "eval_loss" in r]
    assert len(evals) == 3 and all(math.isfinite(v) for v in evals)
    assert report["test"]["num_samples"] == 32 and math.isfinite(report["test"]["loss"])
    assert {p.name for p in (config.run_dir / "model").iterdir()} == {"config.json", "model.safetensors"}
    assert (config.run_dir / "test_per_sample.csv").read_text().splitlines()[0] == "index,loss"


def test_own_loss_accumulation_equals_big_batch(tmp_path):
    """No items to count (a batch-mean loss): accumulation divides by the steps, still one big batch."""

    def weights(run_id, **training):
        config = toy_config(
            tmp_path,
            run_id,
            max_steps=5,
            optim="sgd",
            learning_rate=0.5,
            eval_strategy="no",
            save_strategy="no",
            **training,
        )
        _, _, trainer = build(config)
        trainer.train()
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    big = weights("big", batch_size=None, per_device_train_batch_size=32)
    small = weights("small", batch_size=None, per_device_train_batch_size=16, gradient_accumulation_steps=2)
    for key in big:
        torch.testing.assert_close(big[key], small[key], rtol=0, atol=1e-6)


def test_model_own_loss_equals_registry_loss(tmp_path):
    """A transformers model computing its own cross-entropy (labels passed as keywords) trains like ours."""
    from neurotrain_hf.tasks.classification.trainer import ClassificationTrainer

    vit = {
        "image_size": 8,
        "patch_size": 4,
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 20,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }

    def weights(run_id, own_loss):
        data = tiny_config_dict(
            tmp_path,
            basic={"run_id": run_id},
            model={"name": "hf/vit", "kwargs": vit},
            training={
                "max_steps": 4,
                "optim": "sgd",
                "learning_rate": 0.1,
                "eval_strategy": "no",
                "save_strategy": "no",
                "batch_size": None,
                "per_device_train_batch_size": 8,
                "gradient_accumulation_steps": 2,
                "metrics": [],
            },
            augmentation={"resize": 8},
        )
        del data["training"]["batch_size"]
        task, dsd, trainer = build(build_config(data))
        if own_loss:
            trainer = ClassificationTrainer(
                trainer.model,
                trainer.args,
                train_dataset=dsd.splits["train"],
                num_labels=10,
                loss_fn=None,
                metrics=None,
            )
            assert trainer.loss_fn is None
        trainer.train()
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    ours, own = weights("ours", own_loss=False), weights("own", own_loss=True)
    for key in ours:
        torch.testing.assert_close(own[key], ours[key], rtol=0, atol=1e-6)
    start = build(build_config(tiny_config_dict(tmp_path, model={"name": "hf/vit", "kwargs": vit})))[2].model
    assert any(not torch.equal(start.state_dict()[k], ours[k]) for k in ours)  # training moved them


def test_models_are_called_with_keyword_inputs(tmp_path):
    seen = {}
    config = toy_config(tmp_path, max_steps=1, eval_strategy="no", save_strategy="no")
    _, data, trainer = build(config)

    def hook(module, args, kwargs):
        seen["args"], seen["kwargs"] = args, sorted(kwargs)

    trainer.model.register_forward_pre_hook(hook, with_kwargs=True)
    trainer.train()
    assert seen["args"] == () and seen["kwargs"] == ["pixel_values"]


def test_items_counted_for_the_loss(tmp_path):
    """Classification counts samples; a label-free own-loss model counts nothing (its loss is a mean)."""
    _, _, toy = build(toy_config(tmp_path, max_steps=1))
    assert toy.count_items({"pixel_values": torch.zeros(4, 1, 8, 8)}) is None
    _, _, classifier = build(build_config(tiny_config_dict(tmp_path, basic={"run_id": "c"})))
    assert classifier.count_items({"labels": torch.zeros(5, dtype=torch.long)}) == 5


def test_no_shared_module_names_a_task_or_an_architecture():
    """Task knowledge lives in task folders: outside ``tasks/`` and ``metrics/`` no module quotes a task's
    name, maps architectures to tasks, or imports a task's folder (tasks are found through entry points)."""
    import re
    from pathlib import Path

    from neurotrain_hf.tasks import list_tasks

    package = Path(__file__).resolve().parents[1] / "neurotrain_hf"
    names = "|".join(re.escape(t) for t in list_tasks())
    patterns = [
        re.compile(rf"[\"']({names})[\"']"),  # if task == "segmentation", {"clip": ...}
        re.compile(
            r"For(ImageClassification|SemanticSegmentation|ObjectDetection)\b"
        ),  # architecture -> task
        re.compile(rf"tasks[./]({names})\b"),  # importing a task's modules
    ]
    shared = [p for p in package.rglob("*.py") if p.relative_to(package).parts[0] not in ("tasks", "metrics")]
    assert len(shared) > 30
    found = [
        f"{path.relative_to(package)}:{n}: {line.strip()}"
        for path in shared
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(p.search(line) for p in patterns)
    ]
    assert not found, "\n".join(found)
    planted = 'if config.basic.task == "detection":'  # what the check exists to catch
    assert patterns[0].search(planted)


def test_architecture_doc_names_every_hook_and_only_hooks_that_exist():
    import re
    from pathlib import Path

    from neurotrain_hf.tasks.base import Task

    hooks = {n for n in vars(Task) if not n.startswith("_")}
    text = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text.split("## The task contract")[1].split("\n\n")[1]  # the hooks table
    named = {n for row in table.splitlines()[2:] for n in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert named == hooks, (sorted(hooks - named), sorted(named - hooks))


def test_a_broken_installed_task_is_left_out_not_fatal(caplog):
    """A plugin whose modules fail to import: the others keep working; asking for it is one line."""
    from neurotrain_hf import tasks
    from neurotrain_hf.config import load_config
    from neurotrain_hf.errors import ConfigError, RegistryError
    from neurotrain_hf.metrics import list_metrics

    tasks.register_task(
        tasks.TaskSpec(
            name="broken", task="no_such_pkg.task:T", training="no_such_pkg.config:C", models="no_such_pkg"
        )
    )
    try:
        tasks.register_all_models()  # what `import neurotrain_hf` runs
        assert "broken" not in tasks.list_tasks() and "mcc" in list_metrics()
        with pytest.raises(
            RegistryError, match=r"task 'broken': its modules failed to import \(No module named"
        ):
            tasks.get_task("broken")
        with pytest.raises(ConfigError, match="the classification task does not read this key"):
            load_config(ROOT / "recipes" / "configs" / "digits_cnn.toml", ["--augmentation.spacing", "1"])
        assert "task 'broken' is left out" in caplog.text
    finally:
        tasks.TASKS.unregister("broken")
        tasks._broken.pop("broken", None)
