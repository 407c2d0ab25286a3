"""``neurotrain export onnx RUN_OR_REPO --out DIR``: the task's graphs (``Task.onnx_graphs``) through
``torch.onnx.export``, the processor and config beside them, and a parity check that fails.

Parity runs onnxruntime and PyTorch on the same inputs (a batch of the run's test split, else the task's
probe batch): max / mean absolute difference of every output and the task's agreement (same labels, mask
pixels, retrieval ranks). Beyond ``atol`` or below full agreement the command exits 1 with the numbers
(optimum's exporter only warns: optimum #449, #978, #1755). Latency of both is measured in alternation.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, NeuroTrainError, first_line

EXPORT_FILE = "onnx_export.json"  # what the folder holds: graphs, their inputs and outputs, the task


class ExportError(NeuroTrainError):
    """The graph could not be written, or its outputs differ from PyTorch's beyond tolerance (exit 1: the
    export is wrong, unlike a bad argument, exit 2)."""

    exit_code = 1


def _require_onnx() -> Any:
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        raise NeuroTrainError(
            f"ONNX export needs onnx and onnxruntime ({exc}); `pip install onnx onnxruntime`"
        ) from None
    return onnxruntime


def _batch(task: Any, source: str | Path, model: Any, samples: int) -> tuple[dict[str, Any], str]:
    """``samples`` rows of the run's test split collated as the trainer does, else the task's probe batch."""
    from ..config import load_config

    toml = Path(source) / "config.toml"
    if Path(source).is_dir() and toml.is_file():
        config = load_config(str(toml), [])
        config.training.per_device_eval_batch_size = samples
        data = task.prepare_data(config)
        split = config.testing.split if config.testing.split in data.splits else "test"
        if split in data.splits and len(data.splits[split]):
            trainer = task.build_trainer(config, model, data)
            batch = next(iter(trainer.get_test_dataloader(data.splits[split])))
            return dict(batch), f"{split} split ({min(samples, len(data.splits[split]))} samples)"
    return task.probe_inputs(model), "the task's probe batch (no run config)"


def session(path: Path) -> Any:
    """An onnxruntime CPU session of one graph file."""
    ort = _require_onnx()
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a failed run is reported in one line by the caller
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _numpy(inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in inputs.items()}


def _torch_outputs(graph: Any, inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        out = graph.module(*inputs.values())  # by position, as the graph was exported
    out = out if isinstance(out, (tuple, list)) else (out,)
    return {name: t.detach().float().cpu().numpy() for name, t in zip(graph.outputs, out)}


def write_graph(graph: Any, path: Path, opset: int, dynamic_batch: bool) -> None:
    """``torch.onnx.export`` (TorchScript exporter: the dynamo one needs shapes torch.export accepts)."""
    axes = {name: {0: "batch"} for name in [*graph.inputs, *graph.outputs]} if dynamic_batch else None
    with warnings.catch_warnings():  # the tracer warns about Python branches on shapes
        warnings.simplefilter("ignore")
        _export(graph, path, opset, axes)


def _export(graph: Any, path: Path, opset: int, axes: dict | None) -> None:
    try:
        torch.onnx.export(
            graph.module.eval(),
            tuple(graph.inputs.values()),
            str(path),
            input_names=list(graph.inputs),
            output_names=list(graph.outputs),
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    except Exception as exc:  # noqa: BLE001 - the exporter raises anything; the user gets one line
        raise ExportError(f"graph {graph.name!r}: torch.onnx.export failed ({first_line(exc)})") from None


def compare(
    task: Any, graph: Any, file: Path, inputs: dict[str, torch.Tensor], atol: float
) -> dict[str, Any]:
    """Differences and agreement of one graph's onnxruntime outputs with PyTorch's on ``inputs``."""
    reference = _torch_outputs(graph, inputs)
    try:
        got = session(file).run(list(graph.outputs), _numpy(inputs))
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors are many types
        raise ExportError(
            f"graph {graph.name!r}: onnxruntime cannot run {file} ({first_line(exc)})"
        ) from None
    exported = dict(zip(graph.outputs, got))
    diffs = {}
    for name in graph.outputs:
        if exported[name].shape != reference[name].shape:
            raise ExportError(
                f"graph {graph.name!r} output {name!r}: shape {list(exported[name].shape)} from onnxruntime, "
                f"{list(reference[name].shape)} from PyTorch"
            )
        delta = np.abs(exported[name].astype(np.float64) - reference[name].astype(np.float64))
        diffs[name] = {
            "max_abs": float(delta.max(initial=0.0)),
            "mean_abs": float(delta.mean()) if delta.size else 0.0,
        }
    agreement = task.onnx_agreement(graph.name, reference, exported)
    ok = all(d["max_abs"] <= atol for d in diffs.values()) and all(v >= 1.0 for v in agreement.values())
    return {
        "outputs": diffs,
        "agreement": agreement,
        "ok": ok,
        "samples": int(next(iter(inputs.values())).shape[0]),
    }


def _latency(graph: Any, file: Path, inputs: dict[str, torch.Tensor], rounds: int) -> dict[str, float]:
    """Median seconds per batch of PyTorch and onnxruntime, alternated (one warm-up each)."""
    sess, feed = session(file), _numpy(inputs)
    runs = {
        "pytorch": lambda: _torch_outputs(graph, inputs),
        "onnxruntime": lambda: sess.run(None, feed),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {f"latency_{k}_s": statistics.median(v) for k, v in times.items()}


def export_onnx(
    source: str | Path,
    out_dir: str | Path,
    opset: int = 17,
    dynamic_batch: bool = False,
    atol: float = 1e-4,
    samples: int = 8,
    rounds: int = 5,
) -> dict[str, Any]:
    """Export a run's (model folder's, Hub repo's) model as the task's ONNX graphs into ``out_dir`` and check
    them; raises ``ExportError`` (exit 1) after writing the report when a graph is beyond ``atol``."""
    from ..predictor import model_folder, task_of
    from ..tasks import get_task

    _require_onnx()
    if atol <= 0:
        raise ConfigError(f"--atol {atol}: must be > 0")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: not empty (choose a new folder)")
    folder = model_folder(source)
    task = get_task(task_of(folder)).load()
    model = task.load_model(folder)
    if not isinstance(model, torch.nn.Module):
        raise NeuroTrainError(f"{folder}: the {task.name} task's model is not a torch module to export")
    model = model.float().eval()
    batch, origin = _batch(task, source, model, samples)
    graphs = task.onnx_graphs(model, batch)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"source": str(source), "task": task.name, "opset": opset, "atol": atol}
    report.update(inputs_from=origin, dynamic_batch=dynamic_batch, graphs={})
    for graph in graphs:
        file = out / f"{graph.name}.onnx"
        write_graph(graph, file, opset, dynamic_batch)
        entry = compare(task, graph, file, graph.inputs, atol)
        if dynamic_batch and entry["samples"] > 1:  # a second batch size through the dynamic axis
            half = {k: v[: max(1, v.shape[0] // 2)] for k, v in graph.inputs.items()}
            second = compare(task, graph, file, half, atol)
            entry["second_batch"] = second
            entry["ok"] = entry["ok"] and second["ok"]
        entry.update(_latency(graph, file, graph.inputs, rounds))
        entry.update(file=file.name, inputs=list(graph.inputs), output_names=list(graph.outputs))
        report["graphs"][graph.name] = entry
    _write_side_files(task, folder, out, report)
    failed = [name for name, g in report["graphs"].items() if not g["ok"]]
    if failed:
        raise ExportError(f"parity failed for {', '.join(failed)}: {_numbers(report, failed)}")
    return report


def _write_side_files(task: Any, folder: Path, out: Path, report: dict[str, Any]) -> None:
    """config.json, the processor (and other side files) beside the graphs, and the report."""
    for path in folder.iterdir():
        if path.is_file() and path.suffix not in (".safetensors", ".bin", ".onnx"):
            shutil.copy2(path, out / path.name)
    (out / EXPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")


def _numbers(report: dict[str, Any], names: list[str]) -> str:
    parts = []
    for name in names:
        graph = report["graphs"][name]
        worst = max(d["max_abs"] for d in graph["outputs"].values())
        agree = ", ".join(f"{k} {v:.4f}" for k, v in graph["agreement"].items())
        parts.append(
            f"{name} max abs diff {worst:.3g} (atol {report['atol']:g})" + (f", {agree}" if agree else "")
        )
    return "; ".join(parts)


def summary_line(report: dict[str, Any]) -> str:
    """One line: graphs, worst difference, agreement and latency ratio."""
    parts = []
    for graph in report["graphs"].values():
        worst = max(d["max_abs"] for d in graph["outputs"].values())
        agree = ", ".join(f"{k} {v:.0%}" for k, v in graph["agreement"].items())
        speed = graph["latency_pytorch_s"] / max(graph["latency_onnxruntime_s"], 1e-12)
        parts.append(
            f"{graph['file']} max abs diff {worst:.2g}"
            + (f", {agree}" if agree else "")
            + f", x{speed:.2f} vs PyTorch"
        )
    return f"exported {len(parts)} graph(s), parity ok on {report['inputs_from']}: {'; '.join(parts)}"
