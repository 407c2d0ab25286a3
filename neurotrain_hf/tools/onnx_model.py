"""An exported ONNX graph behind the model interface the Predictor uses, so ``neurotrain predict
DIR/model.onnx FILE...`` runs onnxruntime through the task's own pre- and post-processing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from ..errors import NeuroTrainError
from .onnx_export import EXPORT_FILE, session


class OnnxModel(torch.nn.Module):
    """Keyword tensors in, an object with one attribute per graph output (``.logits``) out; ``config`` is the
    exported model's, so the task reads its labels and settings as from the PyTorch model."""

    def __init__(self, path: str | Path, config: Any) -> None:
        super().__init__()
        self.session = session(Path(path))
        self.config = config
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.register_buffer("_device", torch.zeros(0), persistent=False)
        self.anchor = torch.nn.Parameter(
            torch.zeros(0), requires_grad=False
        )  # the Predictor reads the device

    def forward(self, **inputs: Any) -> SimpleNamespace:
        missing = [n for n in self.input_names if inputs.get(n) is None]
        if missing:
            raise NeuroTrainError(f"the ONNX graph needs inputs {missing} the task did not give")
        feed = {n: inputs[n].detach().cpu().numpy() for n in self.input_names}
        outputs = self.session.run(self.output_names, feed)
        return SimpleNamespace(**{n: torch.from_numpy(v) for n, v in zip(self.output_names, outputs)})


def load_onnx_model(path: str | Path) -> OnnxModel:
    """The graph ``path`` of an export folder (beside its config.json); one line for a graph that is only
    part of its model (CLIP towers, a denoiser, a VLM's vision projector)."""
    from transformers import AutoConfig

    path = Path(path)
    if not path.is_file():
        raise NeuroTrainError(f"{path}: file not found")
    report = path.parent / EXPORT_FILE
    if report.is_file():
        graphs = json.loads(report.read_text(encoding="utf-8")).get("graphs", {})
        if list(graphs) != ["model"]:
            raise NeuroTrainError(
                f"{path}: this export's graphs ({', '.join(graphs)}) are parts of the model; `neurotrain predict` "
                "runs a whole-model export (model.onnx): serve these with onnxruntime"
            )
    if not (path.parent / "config.json").is_file():
        raise NeuroTrainError(
            f"{path}: no config.json beside the graph (export it with `neurotrain export onnx`)"
        )
    return OnnxModel(path, AutoConfig.from_pretrained(str(path.parent)))
