"""LoRA through PEFT: wrap a model from ``[peft]``, and merge a saved adapter into its base.

Norm layers with running statistics (BatchNorm) change in training even when frozen, so they are
added to ``modules_to_save``: the saved adapter then reproduces the trained model exactly. A base
built from a config has no folder to reload from, so the runner saves it (``base_model/``) and the
adapter points there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from .config.sections import PeftConfig
from .errors import NeuroTrainError

logger = logging.getLogger(__name__)
ADAPTER_DIR = "adapter"
BASE_DIR = "base_model"
PROCESSOR_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
)


def is_peft_model(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def stat_norm_modules(model: torch.nn.Module) -> list[str]:
    """Names of modules with running statistics (BatchNorm-like), which an adapter must carry."""
    return [
        name for name, m in model.named_modules() if name and getattr(m, "running_mean", None) is not None
    ]


def apply_peft(
    model: torch.nn.Module,
    cfg: PeftConfig,
    default_targets: list[str] | str = "all-linear",
    trained: list[str] | tuple[str, ...] = (),
) -> torch.nn.Module:
    """``model`` wrapped as a PEFT LoRA model per ``[peft]`` (unchanged when the method is `none`);
    ``default_targets``: the task's choice when ``target_modules`` is not set (``Task.lora_targets``);
    ``trained``: modules the task trains in full beside the adapter (``Task.lora_trained``)."""
    if cfg.method == "none":
        return model
    from peft import LoraConfig, get_peft_model

    save = list(cfg.modules_to_save) + [m for m in trained if m not in cfg.modules_to_save]
    norms = [n for n in stat_norm_modules(model) if not any(n == s or n.endswith("." + s) for s in save)]
    if norms:
        logger.info("adapter also saves %d norm layers with running statistics", len(norms))
    lora = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules or default_targets,
        modules_to_save=(save + norms) or None,
        bias=cfg.bias,
    )
    try:
        wrapped = get_peft_model(model, lora)
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0]
        raise NeuroTrainError(f"[peft] target_modules: {first}") from None
    trainable, total = wrapped.get_nb_trainable_parameters()
    logger.info("LoRA: %d of %d parameters train (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))
    return wrapped


def copy_processor(src: Path, dst: Path) -> None:
    for name in PROCESSOR_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def adapter_folder(path: str | Path) -> Path:
    """An adapter folder from a run folder (its ``adapter/``) or the folder itself; one line otherwise."""
    path = Path(path)
    for folder in (path / ADAPTER_DIR, path):
        if (folder / "adapter_config.json").is_file():
            return folder
    raise NeuroTrainError(
        f"{path}: not a run folder with an adapter or an adapter folder (no adapter_config.json)"
    )


def load_with_adapter(adapter: Path, base: str | None = None) -> tuple[Any, Any]:
    """(task, PEFT model): the base through its task's Auto class, then the adapter on it."""
    from peft import PeftModel

    from .predictor import task_of_config
    from .tasks import get_task

    base = (
        base
        or json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))[
            "base_model_name_or_path"
        ]
    )
    if not base:
        raise NeuroTrainError(f"{adapter}: adapter_config.json names no base model; pass --base")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(base)
    except (OSError, ValueError) as exc:
        raise NeuroTrainError(
            f"{adapter}: cannot load its base model {base!r} ({str(exc).splitlines()[0]})"
        ) from None
    task = get_task(task_of_config(config.to_dict(), base)).load()
    peft_model = PeftModel.from_pretrained(task.load_model(base).eval(), str(adapter)).eval()
    return task, peft_model


@contextlib.contextmanager
def single_process_loading():
    """Inside a ZeRO-3 run, ``from_pretrained`` partitions weights across ranks with collectives; a
    merge runs on the main process alone, so it must load plainly (the other ranks are not loading)."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref  # what is_deepspeed_zero3_enabled() reads
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def task_settings(config: Any) -> dict[str, Any]:
    """The task and its settings saved in a model config (the ``neurotrain_*`` keys: task, inference and
    post-processing settings, zero-shot prompts), which a merged or reloaded model must carry."""
    return {k: v for k, v in config.to_dict().items() if k.startswith("neurotrain_")}


def update_config_json(folder: Path, values: dict[str, Any]) -> None:
    """Add ``values`` to the ``config.json`` of a saved model folder (atomically; no folder, nothing)."""
    path = Path(folder) / "config.json"
    if not path.is_file() or not values:
        return
    from .trainer.checkpointing import write_json_atomic

    write_json_atomic(path, {**json.loads(path.read_text(encoding="utf-8")), **values})


def merge_adapter(
    path: str | Path, out: str | Path, base: str | None = None, config_updates: dict[str, Any] | None = None
) -> float:
    """Merge an adapter into its base, save a normal model folder at ``out``; returns the largest
    difference between merged and unmerged outputs on a probe batch (raises if it is not small).
    ``config_updates``: settings the merged config carries (the trained model's ``task_settings``)."""
    adapter = adapter_folder(path)
    with single_process_loading():
        task, peft_model = load_with_adapter(adapter, base)
    probe = task.probe_inputs(peft_model.get_base_model())
    with torch.no_grad():
        before = task.probe_outputs(peft_model, probe)
        merged = peft_model.merge_and_unload()
        after = task.probe_outputs(merged, probe)
    diff = max(float((a - b).abs().max()) for a, b in zip(before, after))
    scale = max(float(a.abs().max()) for a in before) or 1.0
    if diff > 1e-4 * max(scale, 1.0):
        raise NeuroTrainError(f"{adapter}: merged and unmerged outputs differ by {diff:.3g}; not saved")
    out = Path(out)
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    merged.config.update(config_updates or {})
    merged.save_pretrained(str(staging), safe_serialization=True)
    copy_processor(adapter, staging)
    from .trainer.checkpointing import replace_dir_atomic

    replace_dir_atomic(staging, out)
    return diff
