"""Run an image-classification experiment end to end: data, model, train, test, run folder."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from typing import Any

from transformers import set_seed

from ..config.experiment import ExperimentConfig
from ..config.io import write_config_file
from ..data.api import attach_transforms, load_splits
from ..model_io import save_model_dir
from ..models import get_model
from ..tester import Tester
from ..trainer.run_folder import (
    CONFIG_NAME,
    MODEL_DIR,
    plot_confusion,
    plot_curves,
    read_history,
    write_report,
)
from .classification_trainer import ClassificationTrainer

logger = logging.getLogger(__name__)


def ensure_metric_modules() -> None:
    """Make ``evaluate.load("neurotrain/<name>")`` work offline for what this run reports (idempotent)."""
    from ..metrics.hub import install_modules

    try:
        install_modules()
    except OSError as exc:  # a read-only cache must not stop training
        logger.warning("could not install the neurotrain evaluate modules: %s", exc)


def resume_argument(value: str | None) -> str | bool | None:
    """``[training] resume_from_checkpoint``: "last"/"true" -> newest complete checkpoint, else a path."""
    if value is None or value == "":
        return None
    return True if value.lower() in ("last", "true") else value


def build_classification(config: ExperimentConfig, callbacks: list | None = None):
    """(trainer, info) for a config: seeded model init, datasets with transforms, ClassificationTrainer."""
    set_seed(config.basic.seed)
    dsd, info = load_splits(config)
    attach_transforms(dsd, config, info)
    model = get_model(config.model.name, config.model, num_labels=info.num_labels, in_channels=info.channels)
    trainer = ClassificationTrainer(
        model,
        config.training,
        train_dataset=dsd["train"],
        eval_dataset=dsd.get("valid"),
        num_labels=info.num_labels,
        label_names=info.label_names,
        callbacks=callbacks,
    )
    return trainer, info


def run_classification(config: ExperimentConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train, keep the best model, test it, and write the run folder; returns the report."""
    started = time.time()
    ensure_metric_modules()
    trainer, info = build_classification(config, callbacks)
    run_dir = config.run_dir
    main = trainer.is_world_process_zero()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config_file(config.to_dict(), run_dir / CONFIG_NAME)
    train_output = trainer.train(
        resume_from_checkpoint=resume_argument(config.training.resume_from_checkpoint)
    )
    report: dict[str, Any] = {
        "task": config.basic.task,
        "run_id": config.basic.run_id,
        "run_dir": str(run_dir),
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "train": train_output.metrics,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_metric": trainer.state.best_metric,
        "dataset": {"name": config.dataset.name, **asdict(info)},
    }
    if not main:
        return report
    save_model_dir(trainer.model, run_dir / MODEL_DIR, config, info)
    if trainer.confusion is not None and config.training.plots:
        plot_confusion(run_dir, trainer.confusion, info.label_names, name="valid_confusion_matrix.png")
    if config.testing.run_after_training:
        tester = Tester(config, model=trainer.model)
        report["test"] = tester.run()
        if config.training.plots and hasattr(tester, "confusion"):
            plot_confusion(run_dir, tester.confusion, info.label_names)
    if config.training.plots:
        plot_curves(run_dir, read_history(run_dir))
    report["wall_time_s"] = round(time.time() - started, 2)
    write_report(run_dir, report)
    logger.info("report: %s", json.dumps(report.get("test", {})))
    return report
