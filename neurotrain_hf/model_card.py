"""The model card of a run: ``huggingface_hub.ModelCard`` built from the run's own report and config.

Results go into ``model-index`` with the names and values exactly as measured, the split, the sample count
and the protocol the task states (e.g. "Dice inside the FOV mask, threshold 0.5"). Nothing secret is
read: the config written into run folders already has no token fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config.io import read_config_file
from .trainer.run_folder import CONFIG_NAME

SKIP_KEYS = {"split", "num_samples", "loss", "runtime", "samples_per_second", "steps_per_second"}


def _results(task: Any, report: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, float, str]]:
    test = report.get("test") or {}
    split, count = test.get("split", "test"), test.get("num_samples")
    out = []
    for key, value in test.items():
        if key in SKIP_KEYS or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        where = f"{split} split" + (f", {count} samples" if count else "")
        out.append((key, float(value), f"{task.metric_protocol(key, config)} ({where})"))
    return out


def base_model_of(config: dict[str, Any], run_dir: Path) -> str | None:
    """The Hub model a run fine-tuned (``hf/<id>`` with pretrained weights), if any."""
    model = config.get("model", {})
    name = str(model.get("name", ""))
    if name.startswith("hf/") and model.get("pretrained") and not Path(name[3:]).exists():
        return name[3:]
    return None


def build_card(run_dir: str | Path, repo_id: str, license: str = "apache-2.0") -> Any:
    """A ``ModelCard`` for the run folder, to be pushed as the repo's README.md."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from .tasks import get_task

    run_dir = Path(run_dir)
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    config = read_config_file(run_dir / CONFIG_NAME)
    task = get_task(report["task"]).load()
    dataset = config.get("dataset", {})
    dataset_name = dataset.get("hub_id") or dataset.get("name", "unknown")
    results = _results(task, report, config)
    split = (report.get("test") or {}).get("split", "test")
    eval_results = [
        EvalResult(
            task_type=task.hub_task,
            dataset_type=str(dataset_name),
            dataset_name=str(dataset_name),
            dataset_split=split,
            metric_type=key,
            metric_name=key,
            metric_value=value,
        )
        for key, value, _ in results
    ]
    tags = ["neurotrain", task.name, *(["medical"] if task.medical else [])]
    base = base_model_of(config, run_dir)
    data = ModelCardData(
        license=license,
        library_name="peft"
        if (run_dir / "adapter").is_dir() and not (run_dir / "model").is_dir()
        else "transformers",
        tags=tags,
        datasets=[str(dataset_name)] if dataset.get("hub_id") else None,
        base_model=base,
        pipeline_tag=task.hub_task,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results or None,
    )
    rows = "\n".join(f"| `{key}` | {value:.4f} | {protocol} |" for key, value, protocol in results)
    training = config.get("training", {})
    summary = ", ".join(
        f"{k} = {training[k]}"
        for k in ("loss", "max_steps", "num_train_epochs", "batch_size", "learning_rate", "optim")
        if k in training
    )
    limitations = task.limitations()
    text = f"""---
{data.to_yaml()}
---

# {repo_id.split("/")[-1]}

A {task.description} model trained with neurotrain_hf on `{dataset_name}`
(model `{config.get("model", {}).get("name")}`{f", fine-tuned from `{base}`" if base else ""}).

## Results

Measured by the run's Tester on its held-out split; values exactly as in the run's `report.json`.

| metric | value | protocol |
| --- | --- | --- |
{rows or "| (no test metrics) | | |"}

## Load it

```python
{task.load_snippet(repo_id)}
```

## Training

{summary or "see config.toml"}; seed {config.get("basic", {}).get("seed")}; {report.get("global_step")} optimizer steps
on {report.get("world_size", 1)} process(es). The resolved experiment file is `neurotrain/config.toml`; the
metrics history is `neurotrain/history.csv` and the final report `neurotrain/report.json`.

## Intended use and limitations

{limitations}
"""
    return ModelCard(text)
