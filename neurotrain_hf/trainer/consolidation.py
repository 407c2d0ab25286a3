"""Sharded weights made whole: ZeRO-3 partitions and FSDP2 DCP shards into one safetensors file that one CPU
process loads (``from_pretrained``), and the test that tells a consolidated folder from a shard set.

A checkpoint written on N processes with ZeRO-3 (without ``zero3_save_16bit_model``) or FSDP2's
``SHARDED_STATE_DICT`` holds per-rank pieces only. DeepSpeed's ``zero_to_fp32`` and torch's DCP readers
rebuild the full state on one process without a process group; this module is their thin wrapper.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import tomllib
import torch

from ..errors import NeuroTrainError, first_line
from .run_folder import CONFIG_NAME

logger = logging.getLogger(__name__)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "diffusion_pytorch_model.safetensors")
SKIPPED = (*WEIGHT_FILES, "neurotrain_complete.json", "trainer_state.json")  # a checkpoint's own records
FSDP_FOLDER = "pytorch_model_fsdp_0"  # Accelerate's save_fsdp_model, SHARDED_STATE_DICT
CONSOLIDATED = "consolidated"
# what a shard set holds besides its global_step*/ folders (removed once consolidated in place)
SHARD_ENTRIES = ("latest", "zero_to_fp32.py", "zero_to_torch.py", FSDP_FOLDER, "optimizer_0")
PROCESSOR_FILES = (
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "chat_template.jinja",
)


def shard_set(folder: str | Path) -> str | None:
    """``"zero3"`` or ``"fsdp"`` when ``folder`` holds per-rank shards and no full weights, else None."""
    folder = Path(folder)
    if any((folder / name).is_file() for name in WEIGHT_FILES):
        return None
    if (folder / FSDP_FOLDER / ".metadata").is_file():
        return "fsdp"
    if (folder / "latest").is_file() and any(folder.glob("global_step*/*_model_states.pt")):
        return "zero3"
    return None


def sharded_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    """The full fp32 state dict of a shard set, rebuilt on this one process; one line when it cannot be."""
    from torch.distributed.checkpoint.api import CheckpointException

    folder = Path(folder)
    kind = shard_set(folder)
    if kind is None:
        whole = any((folder / name).is_file() for name in WEIGHT_FILES)
        why = "its weights are whole already" if whole else f"no {FSDP_FOLDER}/ and no ZeRO global_step*/"
        raise NeuroTrainError(f"{folder}: no shard set to consolidate ({why})")
    try:
        if kind == "zero3":
            with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed prints its progress: stdout stays ours
                from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

                return get_fp32_state_dict_from_zero_checkpoint(str(folder))
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

        with tempfile.TemporaryDirectory(prefix="neurotrain-dcp-") as tmp:
            whole_file = Path(tmp) / "whole.pt"
            dcp_to_torch_save(str(folder / FSDP_FOLDER), str(whole_file))
            state = torch.load(whole_file, map_location="cpu", weights_only=True)
        return state.get("model", state)  # Accelerate saves {"model": state_dict}
    except ImportError as exc:
        raise NeuroTrainError(f"{folder}: ZeRO-3 shards need deepspeed to consolidate ({exc})") from None
    except (OSError, ValueError, RuntimeError, KeyError, CheckpointException) as exc:
        raise NeuroTrainError(
            f"{folder}: its {kind} shards could not be read ({first_line(exc)}); every rank's files must be here"
        ) from None


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensors that share storage (tied weights) copied apart: safetensors refuses shared storage."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for key, tensor in state.items():
        spot = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        out[key] = tensor.clone().contiguous() if spot in seen else tensor.contiguous()
        seen.add(spot)
    return out


def _copy_beside(folder: Path, staging: Path) -> None:
    """The folder's config files (not its weights or a checkpoint's own records), the processor files of
    its run's model/ (a checkpoint holds none), and the task's name when the config lacks it (checkpoint
    configs get it only with the final model)."""
    for file in folder.iterdir():
        if (
            file.is_file()
            and file.suffix in (".json", ".txt", ".model", ".jinja")
            and file.name not in SKIPPED
        ):
            shutil.copy2(file, staging / file.name)
    from ..tasks.base import TASK_KEY

    config, run = staging / "config.json", folder.parent
    # a final model folder (or its staging copy): its run adds nothing
    final = folder.name == "model" or folder.name.startswith(".")
    if not config.is_file() and not final and (run / "model" / "config.json").is_file():
        shutil.copy2(run / "model" / "config.json", config)  # a checkpoint saved without one
    if not config.is_file():
        raise NeuroTrainError(f"{folder}: no config.json here or in {run / 'model'} to build the model from")
    if final:
        return
    for name in PROCESSOR_FILES:
        if (run / "model" / name).is_file() and not (staging / name).exists():
            shutil.copy2(run / "model" / name, staging / name)
    values = json.loads(config.read_text(encoding="utf-8"))
    if not values.get(TASK_KEY) and (run / CONFIG_NAME).is_file():
        values[TASK_KEY] = tomllib.loads((run / CONFIG_NAME).read_text(encoding="utf-8"))["basic"]["task"]
        config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def consolidate(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write ``out`` (default ``<folder>/consolidated``): the config and processor files beside the shards,
    and ``model.safetensors`` with the full weights; checked by loading it through the task as one process
    would (a key the model lacks or misses is one line)."""
    from safetensors.torch import save_file

    from ..predictor import task_of
    from ..tasks import get_task

    folder = Path(folder)
    out = Path(out) if out is not None else folder / CONSOLIDATED
    state = sharded_state_dict(folder)
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _copy_beside(folder, staging)
    save_file(_unshared(state), str(staging / "model.safetensors"), metadata={"format": "pt"})
    _check_loads(staging, get_task(task_of(staging)).load(), state)
    shutil.rmtree(out, ignore_errors=True)
    staging.replace(out)
    return out


def _check_loads(folder: Path, task: Any, state: dict[str, torch.Tensor]) -> None:
    """The folder loads through the task with every tensor of the shards, nothing missing or left over
    (plainly: inside a ZeRO-3 run this is the main process alone, other ranks take no part in a load)."""
    from ..adapters import single_process_loading

    try:
        with single_process_loading():
            model = task.load_model(folder)
    except (OSError, ValueError, RuntimeError) as exc:
        raise NeuroTrainError(f"{folder}: the consolidated model does not load ({first_line(exc)})") from None
    loaded = model.state_dict()
    missing = sorted(set(loaded) - set(state))
    extra = sorted(set(state) - set(loaded))
    if missing or extra:
        raise NeuroTrainError(
            f"{folder}: the shards do not match the model (missing {missing[:3]}, unexpected {extra[:3]})"
        )


def consolidate_in_place(folder: str | Path, strict: bool = False) -> bool:
    """A final model folder that holds a shard set gets its full weights and loses the shards (True when
    it did). Where this process cannot read every rank's shard (a run folder per node), the folder is left
    as it is with a warning (``strict``: the error), for ``neurotrain consolidate`` once they are together."""
    folder = Path(folder)
    if shard_set(folder) is None:
        return False
    try:
        out = consolidate(folder)
    except (NeuroTrainError, OSError) as exc:
        if strict:
            raise
        logger.warning("%s holds per-rank shards that could not be consolidated here (%s)", folder, exc)
        return False
    for file in out.iterdir():
        file.replace(folder / file.name)
    out.rmdir()
    for entry in [*folder.glob("global_step*"), *(folder / name for name in SHARD_ENTRIES)]:
        if entry.is_dir():
            shutil.rmtree(entry)
        elif entry.exists():
            entry.unlink()
    return True


def save_full_state(trainer: Any, folder: str | Path) -> bool:
    """FSDP with sharded state dicts: gather the full state (a collective, every rank) and let the main
    process write it with ``save_pretrained``; Trainer.save_model writes no weights then. True when done."""
    if not trainer.is_fsdp_enabled or "FULL_STATE_DICT" in str(
        trainer.accelerator.state.fsdp_plugin.state_dict_type
    ):
        return False
    state = trainer.accelerator.get_state_dict(trainer.model)
    if trainer.args.should_save:
        model = trainer.accelerator.unwrap_model(trainer.model)
        model.save_pretrained(str(folder), state_dict=state, is_main_process=True)
    return True


def save_config_beside(trainer: Any, folder: str | Path) -> None:
    """FSDP's sharded checkpoints hold no config.json (Trainer.save_model writes nothing then): the main
    process writes it, so ``neurotrain consolidate`` can build the model from the checkpoint alone."""
    if trainer.is_fsdp_enabled and trainer.args.should_save and not (Path(folder) / "config.json").is_file():
        trainer.accelerator.unwrap_model(trainer.model).config.save_pretrained(str(folder))
