"""Self-contained model folders: safetensors weights + the resolved config + preprocessing info.

``save_model_dir`` writes ``model.safetensors``, ``neurotrain.toml`` and ``preprocessing.json`` into a
staging folder and renames it into place; ``load_model_dir`` rebuilds the model from them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config.experiment import ExperimentConfig, build_config
from .config.io import read_config_file, write_config_file
from .errors import NeuroTrainError
from .trainer.checkpointing import replace_dir_atomic

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "neurotrain.toml"
PREPROCESSING_NAME = "preprocessing.json"


def state_dict_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors; tied (shared) tensors are cloned so safetensors accepts them."""
    seen: dict[int, str] = {}
    out = {}
    for key, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        out[key] = t.clone() if ptr in seen else t
        if ptr != -1:
            seen[ptr] = key
    return out


def save_model_dir(model: torch.nn.Module, path: str | Path, config: ExperimentConfig, info: Any) -> Path:
    """Write a complete model folder atomically."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(state_dict_for_saving(model), str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
    write_config_file(config.to_dict(), staging / CONFIG_NAME)
    (staging / PREPROCESSING_NAME).write_text(json.dumps(asdict(info), indent=2), encoding="utf-8")
    replace_dir_atomic(staging, path)
    return path


def load_weights(model: torch.nn.Module, folder: str | Path) -> torch.nn.Module:
    """Load ``model.safetensors`` from a model or checkpoint folder (strict)."""
    file = Path(folder) / WEIGHTS_NAME
    if not file.is_file():
        raise NeuroTrainError(f"{folder}: no {WEIGHTS_NAME} (not a model or checkpoint folder)")
    state = load_file(str(file))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise NeuroTrainError(
            f"{file}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model


def load_model_dir(path: str | Path) -> tuple[torch.nn.Module, ExperimentConfig, Any]:
    """Rebuild (model, config, DatasetInfo) from a model folder written by ``save_model_dir``."""
    from .data.api import DatasetInfo
    from .models import get_model

    path = Path(path)
    cfg_file, pre_file = path / CONFIG_NAME, path / PREPROCESSING_NAME
    for f in (cfg_file, pre_file):
        if not f.is_file():
            raise NeuroTrainError(f"{path}: missing {f.name} (not a neurotrain model folder)")
    config = build_config(read_config_file(cfg_file), source=str(cfg_file))
    info = DatasetInfo(**json.loads(pre_file.read_text(encoding="utf-8")))
    model = get_model(config.model.name, config.model, num_labels=info.num_labels, in_channels=info.channels)
    load_weights(model, path)
    return model.eval(), config, info
