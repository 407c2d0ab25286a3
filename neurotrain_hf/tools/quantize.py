"""``neurotrain quantize RUN_OR_REPO --method M --out DIR``: a quantized model folder that reloads with
``from_pretrained``, and a report measured side by side in one run (size, latency, test metrics before/after).

torchao methods quantize the loaded model in place (``quantize_``) and save through transformers'
``TorchAoConfig`` serialisation: transformers' own load-time torchao conversion asks every model for its input
embeddings, which image models (CNNs, U-Nets) do not have. bitsandbytes and quanto go through
``from_pretrained(quantization_config=...)``. Only ``nn.Linear`` weights are quantized: torchao has no
quantized convolution, so a CNN keeps its convolutions in float32 (the report counts what was quantized).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, NeuroTrainError, first_line
from ..registry import Registry


@dataclass
class QuantMethod:
    """How a method makes its model: ``inplace`` (a torchao config applied to the loaded model) or ``load``
    (a transformers quantization config given to ``from_pretrained``)."""

    kind: str
    build: Callable[[], Any]
    description: str


QUANT_METHODS: Registry[QuantMethod] = Registry("quantization method")
register_quant_method = QUANT_METHODS.register


def _torchao(name: str) -> Any:
    try:
        import torchao.quantization as tq
    except ImportError as exc:
        raise NeuroTrainError(f"--method {name} needs torchao ({exc}); `pip install torchao`") from None
    return tq


@register_quant_method("int8-dynamic")
def _int8_dynamic() -> QuantMethod:
    return QuantMethod(
        "inplace",
        lambda: _torchao("int8-dynamic").Int8DynamicActivationInt8WeightConfig(),
        "torchao int8 weights and dynamically quantized int8 activations",
    )


@register_quant_method("int8-weight")
def _int8_weight() -> QuantMethod:
    return QuantMethod(
        "inplace",
        lambda: _torchao("int8-weight").Int8WeightOnlyConfig(),
        "torchao int8 weights (per channel)",
    )


@register_quant_method("int4-weight")
def _int4_weight() -> QuantMethod:
    def build() -> Any:
        tq = _torchao("int4-weight")
        from torchao.quantization.granularity import PerGroup

        return tq.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP))

    return QuantMethod(
        "inplace", build, f"torchao int4 weights in groups of {INT4_GROUP} (stored unpacked in int8)"
    )


INT4_GROUP = 32


def _bnb(bits: int) -> Any:
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise NeuroTrainError(
            f"--method bnb-{bits}bit needs bitsandbytes ({exc}); `pip install bitsandbytes`"
        ) from None
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )


@register_quant_method("bnb-8bit")
def _bnb_8bit() -> QuantMethod:
    return QuantMethod("load", lambda: _bnb(8), "bitsandbytes LLM.int8() weights")


@register_quant_method("bnb-4bit")
def _bnb_4bit() -> QuantMethod:
    return QuantMethod("load", lambda: _bnb(4), "bitsandbytes NF4 weights")


@register_quant_method("quanto-int8")
def _quanto_int8() -> QuantMethod:
    def build() -> Any:
        try:
            import optimum.quanto  # noqa: F401
            from transformers import QuantoConfig
        except ImportError as exc:
            raise NeuroTrainError(
                f"--method quanto-int8 needs optimum-quanto ({exc}); `pip install optimum-quanto` "
                "(in maintenance mode: prefer int8-weight)"
            ) from None
        return QuantoConfig(weights="int8")

    return QuantMethod("load", build, "optimum-quanto int8 weights (maintenance mode upstream)")


def list_quant_methods() -> list[str]:
    return QUANT_METHODS.list()


def _linear_filter(group: int | None) -> Callable[[torch.nn.Module, str], bool]:
    def accept(module: torch.nn.Module, fqn: str) -> bool:
        if not isinstance(module, torch.nn.Linear):
            return False
        return group is None or module.in_features % group == 0

    return accept


def quantized_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(elements in quantized weights, elements in all weights): a quantized weight is a tensor subclass
    (torchao) or stored in an integer / packed dtype (bitsandbytes, quanto)."""
    quantized = total = 0
    for param in model.parameters():
        data = param.data if isinstance(param, torch.nn.Parameter) else param
        numel = int(getattr(data, "shape", torch.Size()).numel())
        total += numel
        if type(data) is not torch.Tensor or not data.dtype.is_floating_point:
            quantized += numel
    return quantized, total


def folder_bytes(folder: Path) -> int:
    """Bytes of the weight files in a model folder."""
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def _copy_side_files(src: Path, dst: Path) -> None:
    """Everything beside the weights (processor, tokenizer, card): the quantized folder is served like the
    original one."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        if path.is_file() and path.suffix not in (".safetensors", ".bin") and path.name != "config.json":
            shutil.copy2(path, dst / path.name)


def quantize_model(task: Any, folder: Path, method: str) -> Any:
    """The model of ``folder`` quantized by ``method`` (a ``PreTrainedModel`` that ``save_pretrained`` writes
    in its quantized form)."""
    spec = QUANT_METHODS.get(method)()
    qconfig = spec.build()
    if spec.kind == "load":
        import transformers

        if not task.auto_model:
            raise NeuroTrainError(
                f"the {task.name} task's models do not load through a transformers Auto class"
            )
        try:
            return getattr(transformers, task.auto_model).from_pretrained(
                str(folder), quantization_config=qconfig
            )
        except (RuntimeError, ValueError, ImportError) as exc:
            raise NeuroTrainError(
                f"--method {method}: cannot quantize this model ({first_line(exc)})"
            ) from None
    from torchao.quantization import quantize_
    from transformers import TorchAoConfig
    from transformers.quantizers import AutoHfQuantizer

    model = task.load_model(folder)
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "save_pretrained"):
        raise NeuroTrainError(
            f"{folder}: the {task.name} task's model is not a transformers model to quantize"
        )
    group = INT4_GROUP if method == "int4-weight" else None
    if not any(_linear_filter(group)(m, n) for n, m in model.named_modules()):
        raise NeuroTrainError(
            f"--method {method}: the model has no linear layer to quantize"
            + (f" with in_features divisible by {group}" if group else "")
            + " (torchao has no quantized convolution)"
        )
    quantize_(model.eval(), qconfig, filter_fn=_linear_filter(group))
    ao = TorchAoConfig(qconfig)
    model.config.quantization_config = ao
    model.hf_quantizer = AutoHfQuantizer.from_config(ao, pre_quantized=False)
    return model


def _unlist_top_level_tensors(folder: Path) -> None:
    """torchao 0.18 reads every name in a file's ``tensor_names`` as ``module.attribute``: a top-level
    parameter (CLIP's ``logit_scale``) breaks ``from_pretrained``. Such a tensor is never quantized (only
    linear weights are), so it is left out of the list and loads as a plain tensor."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            metadata = dict(f.metadata() or {})
            names = json.loads(metadata.get("tensor_names", "[]"))
            if all("." in n for n in names):
                continue
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
        metadata["tensor_names"] = json.dumps([n for n in names if "." in n])
        save_file(tensors, str(path), metadata=metadata)


def _latency(
    models: dict[str, torch.nn.Module], run_batch: Callable[[torch.nn.Module], Any], rounds: int
) -> dict:
    """Median seconds per batch of each model, measured in alternation (one warm-up each)."""
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            run_batch(model)
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                run_batch(model)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _run_config(path: str | Path) -> Any:
    """The run's resolved config (``config.toml`` beside ``model/``), or None for a bare model folder."""
    from ..config import load_config

    toml = Path(path) / "config.toml"
    return load_config(str(toml), []) if toml.is_file() else None


def _forward(task: Any, model: torch.nn.Module, inputs: dict[str, Any]) -> Any:
    return task.inference(model.config)(model, inputs)


def quantize(
    source: str | Path, method: str, out_dir: str | Path, split: str = "test", rounds: int = 5
) -> dict[str, Any]:
    """Quantize a run's (or model folder's, or Hub repo's) model into ``out_dir`` and measure it against the
    float model: parameters quantized, weight bytes, latency per batch and the task's metrics on ``split``
    (when the source is a run folder with its config)."""
    from ..predictor import model_folder, task_of
    from ..tasks import get_task

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: not empty (choose a new folder)")
    QUANT_METHODS.get(method)  # an unknown method is one line before anything loads
    folder = model_folder(source)
    task = get_task(task_of(folder)).load()
    quantized = quantize_model(task, folder, method)
    _copy_side_files(folder, out)
    quantized.save_pretrained(str(out))
    _unlist_top_level_tensors(out)
    reloaded = task.load_model(out)  # what users get: the saved folder, not the object in memory
    original = task.load_model(folder).eval()
    q_count, total = quantized_parameters(reloaded)
    report: dict[str, Any] = {
        "source": str(source),
        "method": method,
        "description": QUANT_METHODS.get(method)().description,
        "out": str(out),
        "parameters_quantized": q_count,
        "parameters_total": total,
        "bytes_before": folder_bytes(folder),
        "bytes_after": folder_bytes(out),
    }
    report["size_ratio"] = report["bytes_after"] / max(report["bytes_before"], 1)
    config = _run_config(source) if Path(source).is_dir() else None
    if config is not None:
        report.update(_measure_on_split(task, config, original, reloaded.eval(), split, rounds))
    else:
        inputs = task.probe_inputs(original)
        latency = _latency(
            {"fp32": original, "quantized": reloaded}, lambda m: _forward(task, m, inputs), rounds
        )
        report.update(latency_fp32_s=latency["fp32"], latency_quantized_s=latency["quantized"], metrics=None)
    report["latency_ratio"] = report["latency_quantized_s"] / max(report["latency_fp32_s"], 1e-12)
    (out / "quantization_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def _measure_on_split(task: Any, config: Any, original: Any, quantized: Any, split: str, rounds: int) -> dict:
    """Latency on the split's first batch and the Tester's metrics, float then quantized, through one trainer
    (built around the float model: transformers refuses to build a Trainer around a purely quantized one)."""
    from ..tester import Tester

    data = task.prepare_data(config)
    if split not in data.splits or len(data.splits[split]) == 0:
        raise NeuroTrainError(f"{config.run_dir}: the dataset has no {split!r} samples to measure on")
    trainer = task.build_trainer(config, original, data)
    batch = next(iter(trainer.get_test_dataloader(data.splits[split])))

    inference = task.inference(original.config)  # what evaluation runs on a batch (a forward, generation)

    def run_batch(model: Any) -> Any:
        return inference(model, batch)

    latency = _latency({"fp32": original, "quantized": quantized}, run_batch, rounds)
    metrics = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in (("fp32", original), ("quantized", quantized)):
            trainer.model = trainer.model_wrapped = model
            result = Tester(config, trainer=trainer, data=data, task=task).run(
                split, out_dir=Path(tmp) / name
            )
            metrics[name] = {k: v for k, v in result.items() if k != "split"}
    key = config.training.metric_for_best_model
    key = key if key in metrics["fp32"] else next((k for k in metrics["fp32"] if k != "loss"), "loss")
    return {
        "latency_fp32_s": latency["fp32"],
        "latency_quantized_s": latency["quantized"],
        "batch_size": int(next(v for v in batch.values() if torch.is_tensor(v)).shape[0]),
        "split": split,
        "metric": key,
        "metric_fp32": metrics["fp32"].get(key),
        "metric_quantized": metrics["quantized"].get(key),
        "metrics": metrics,
    }


def summary_line(report: dict[str, Any]) -> str:
    """One line: what was quantized, size, latency and metric change."""
    line = (
        f"{report['method']}: {report['parameters_quantized']:,} of {report['parameters_total']:,} parameters "
        f"quantized; weights {report['bytes_before'] / 1e6:.2f} -> {report['bytes_after'] / 1e6:.2f} MB "
        f"(x{report['size_ratio']:.2f}); latency per batch x{report['latency_ratio']:.2f} of float32's"
    )
    if report.get("metric_fp32") is not None:
        drop = report["metric_fp32"] - report["metric_quantized"]
        line += (
            f"; {report['split']} {report['metric']} {report['metric_fp32']:.4f} -> "
            f"{report['metric_quantized']:.4f} (drop {drop:+.4f})"
        )
    return f"{line}; saved to {report['out']}"
