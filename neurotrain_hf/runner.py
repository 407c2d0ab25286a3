"""The one run path every task shares: seed, data, model, trainer, resume, train, save, test, plots, report.

A task supplies only what differs, through ``tasks.base.Task``; ``run(config)`` is what
``neurotrain train``, ``recipes/train_<task>.py`` and the Python API call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from transformers import set_seed

from .adapters import (
    ADAPTER_DIR,
    BASE_DIR,
    apply_peft,
    is_peft_model,
    merge_adapter,
    task_settings,
    update_config_json,
)
from .config.experiment import ExperimentConfig
from .config.io import write_config_file
from .errors import ConfigError, NeuroTrainError, TrainingHaltedError, peer_lost
from .runs.live import LiveRecord, device_name
from .runs.recorder import git_commit
from .tasks import get_task
from .tasks.base import TASK_KEY
from .tester import Tester
from .trainer.checkpointing import (
    EVAL_ARTIFACTS,
    is_write_error,
    last_good_checkpoint,
    replace_dir_atomic,
    write_error_text,
    write_json_atomic,
)
from .trainer.consolidation import consolidate_in_place, save_full_state
from .trainer.run_folder import CONFIG_NAME, MODEL_DIR, plot_curves, read_history, write_report
from .trainer.run_lock import RunLock
from .trainer.trackers import finish_trackers, tracking

logger = logging.getLogger(__name__)


def shutdown_distributed() -> None:
    """Leave the process group before the interpreter exits: a rank that exits with live gloo threads
    can abort at teardown ("terminate called without an active exception") after its work is done."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def resume_argument(value: str | None) -> str | bool | None:
    """``[training] resume_from_checkpoint``: "last"/"true" -> newest complete, "auto" -> that or fresh."""
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("last", "true"):
        return True
    return "auto" if lowered == "auto" else value


def save_model(trainer, task, data, path: Path) -> Path:
    """The final model folder, written by the trainer on every rank (ZeRO-3, PEFT), staged and renamed.

    For a PEFT model this is the adapter folder (adapter weights, config, processor). A failed write (full
    disk) stops with one line naming the folder; the staging folder is removed, the checkpoints kept."""
    staging = path.with_name(f".{path.name}.staging")
    main = trainer.args.should_save  # rank 0, or each node's main process without a shared filesystem
    if main:
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    setattr(trainer.model.config, TASK_KEY, task.name)
    try:
        if not save_full_state(trainer, staging):  # FSDP's sharded states: gathered here
            trainer.save_model(str(staging))
        if main:
            consolidate_in_place(staging)  # ZeRO-3 without its 16-bit gather leaves per-rank shards
            (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; config.toml says the same
            if data.processor is not None:
                data.processor.save_pretrained(str(staging))
            replace_dir_atomic(staging, path)
    except Exception as exc:
        if not is_write_error(exc):
            raise
        shutil.rmtree(staging, ignore_errors=True)
        last = last_good_checkpoint(path.parent)
        raise TrainingHaltedError(
            f"could not write the model folder {path} ({write_error_text(exc)}); training finished and "
            f"the last complete checkpoint is {last or 'none'}: free some space, then run again with "
            '[training] resume_from_checkpoint = "last"'
        ) from None
    trainer.accelerator.wait_for_everyone()
    return path


def best_eval_artifacts(trainer) -> dict[str, Any]:
    """The artifacts of the evaluation that chose the saved model (best checkpoint, else the last one)."""
    best = trainer.state.best_model_checkpoint
    if best and (Path(best) / EVAL_ARTIFACTS).is_file():
        return json.loads((Path(best) / EVAL_ARTIFACTS).read_text(encoding="utf-8"))
    return trainer.last_eval


def save_base(model, task, data, folder: Path) -> None:
    """A base built from a config has no folder an adapter could name: save it (main process) and name it.

    Called on every rank: under ZeRO-3 the weights are already partitioned and are gathered for the save.
    """
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    gathered = contextlib.nullcontext()
    if is_deepspeed_zero3_enabled():
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
    with gathered:
        if is_main_process():
            staging = folder.with_name(f".{folder.name}.staging")
            setattr(model.config, TASK_KEY, task.name)
            model.save_pretrained(str(staging), safe_serialization=True)
            if data.processor is not None:
                data.processor.save_pretrained(str(staging))
            replace_dir_atomic(staging, folder)
    model.name_or_path = str(folder.resolve())


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def build(config: ExperimentConfig, callbacks: list | None = None) -> tuple[Any, Any, Any]:
    """(task, data, trainer) for a config: seeded data preparation and model initialisation."""
    task = get_task(config.basic.task).load()
    set_seed(config.basic.seed)
    data = task.prepare_data(config)
    if config.dataset.streaming:  # the train split becomes this process's stream (data/streaming.py)
        from .data.streaming import stream_train_split

        stream_train_split(config, data)
    model = build_model(config, task, data)
    return task, data, task.build_trainer(config, model, data, callbacks)


def build_model(config: ExperimentConfig, task, data) -> Any:
    """The task's model for a config, fake-quantized (``[quantization] qat``) or wrapped in its ``[peft]``
    adapter; also the ``model_init`` of a hyperparameter search (``neurotrain tune``). Seeded here, so a
    trial's model and the same config trained alone start from the same weights."""
    set_seed(config.basic.seed)
    model = task.build_model(config, data)
    if config.quantization.qat:
        if config.peft.method != "none":
            raise ConfigError(
                f"{config.source}: [quantization] qat = true cannot train a [peft] adapter (choose one)"
            )
        from .trainer.qat import prepare_qat

        logger.info(
            "quantization-aware training: %d linear layers fake-quantized",
            prepare_qat(model, config.quantization),
        )
    if config.peft.method != "none":
        if not getattr(model, "name_or_path", ""):
            save_base(model, task, data, config.run_dir / BASE_DIR)
        model = apply_peft(model, config.peft, task.lora_targets(model), task.lora_trained(model))
    return model


def split_to_test(config: ExperimentConfig, splits: dict[str, Any]) -> tuple[str | None, str | None]:
    """(split the run is tested on, why nothing is tested). Without a test split (COCO has no public test
    annotations; ``test_ratio = 0``) the validation split is tested and named, never an empty success."""
    wanted = config.testing.split
    if not config.testing.run_after_training:
        return None, "[testing] run_after_training = false"
    if len(splits.get(wanted, ())):
        return wanted, None
    if wanted == "test" and len(splits.get("valid", ())):
        logger.warning("the dataset has no test split: testing the validation split instead")
        return "valid", None
    have = ", ".join(f"{name} ({len(rows)})" for name, rows in splits.items())
    return (
        None,
        f"the dataset has no non-empty {wanted} or valid split (it has {have}); set [dataset] test_ratio",
    )


def run(config: ExperimentConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train, keep the best model, test it, and write the run folder; returns the report. The main process
    holds the run folder's lock (``trainer/run_lock.py``) meanwhile, so ``neurotrain cleanup`` leaves it alone."""
    lock, record = RunLock(config.run_dir), LiveRecord()
    try:
        with tracking(config):  # report_to's local stores: build, train, test, finish_trackers
            return _run(config, callbacks, lock, record)
    except BaseException as exc:
        lost = peer_lost(exc) if not isinstance(exc, NeuroTrainError) else None
        record.failed(lost or exc)
        if lost is not None:
            raise lost from None
        raise
    finally:
        lock.release()


def _run(
    config: ExperimentConfig, callbacks: list | None, lock: RunLock, record: LiveRecord
) -> dict[str, Any]:
    started = time.time()
    if config.hub.push_to_hub and not config.hub.repo_id:
        raise ConfigError(f"{config.source}: [hub] push_to_hub needs repo_id")
    task, data, trainer = build(config, callbacks)
    run_dir = config.run_dir
    main = trainer.is_world_process_zero()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        write_config_file(config.to_dict(), run_dir / CONFIG_NAME)
        for name, value in data.files.items():  # e.g. the 3D dataset fingerprint
            write_json_atomic(run_dir / name, value)
        record.start(config, trainer)  # the runs index (docs/runs.md)
    train_output = trainer.train(
        resume_from_checkpoint=resume_argument(config.training.resume_from_checkpoint)
    )
    valid_artifacts = best_eval_artifacts(trainer)
    task.finalize_model(trainer.model, valid_artifacts)
    if is_peft_model(trainer.model):
        save_model(trainer, task, data, run_dir / ADAPTER_DIR)
        settings = task_settings(trainer.model.config)  # what the base's saved config.json lacks
        if main:
            update_config_json(
                run_dir / BASE_DIR, settings
            )  # a base built from a config: `lora merge` reads it
        if main and config.peft.merge:
            diff = merge_adapter(run_dir / ADAPTER_DIR, run_dir / MODEL_DIR, config_updates=settings)
            logger.info("merged adapter into %s (largest output difference %.3g)", run_dir / MODEL_DIR, diff)
        trainer.accelerator.wait_for_everyone()
    else:
        if config.quantization.qat:  # the saved and tested model is the quantized one
            from .trainer.qat import convert_qat

            convert_qat(trainer.model, config.quantization)
        save_model(trainer, task, data, run_dir / MODEL_DIR)
    report: dict[str, Any] = {
        "task": config.basic.task,
        "run_id": config.basic.run_id,
        "run_dir": str(run_dir),
        "world_size": trainer.accelerator.num_processes,
        "device": device_name(trainer.args.device),
        "git_commit": git_commit(),
        "global_step": trainer.state.global_step,
        "train": train_output.metrics,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_metric": trainer.state.best_metric,
        "valid": {k: v for k, v in valid_artifacts.items() if not isinstance(v, list)},
        **data.report,
    }
    test_artifacts: dict[str, Any] = {}
    split, untested = split_to_test(config, data.splits)
    if split:
        tester = Tester(config, trainer=trainer, data=data, task=task)
        report["test"] = tester.run(split=split)
        test_artifacts = tester.artifacts
    elif untested:
        report["untested"] = untested
    if not main:
        return report
    if config.training.plots:
        task.write_plots(run_dir, valid_artifacts, test_artifacts, trainer.model)
        plot_curves(run_dir, read_history(run_dir))
    report["wall_time_s"] = round(time.time() - started, 2)
    write_report(run_dir, report)
    finish_trackers(config, run_dir, report)
    record.finish("finished", report)
    if config.hub.push_to_hub:
        from .hub import push_run

        hub = config.hub
        pushed = push_run(
            run_dir,
            hub.repo_id,
            private=hub.private,
            revision=hub.revision,
            include_checkpoints=hub.include_checkpoints,
            include_optimizer=hub.include_optimizer,
            license=hub.license,
        )
        report["hub"] = {"repo_id": hub.repo_id, "commit_url": pushed["commit_url"]}
        write_report(run_dir, report)
    logger.info("report: %s", json.dumps(report.get("test", {})))
    return report
