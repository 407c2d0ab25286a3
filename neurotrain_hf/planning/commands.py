"""``neurotrain plan CONFIG --gpus-per-node G --nodes N [--gpu-memory 80GB] [--parameters 7B]``:
memory per GPU of each parallel strategy for the config's model, the cheapest that fits, and its
Accelerate config (docs/distributed.md "Planning memory")."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .memory import GB, USABLE, Layout, deepspeed_estimate, get_strategy, list_strategies, precision_of

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([kmgt]?)(i?b?)?\s*$", re.IGNORECASE)
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_amount(text: str, what: str) -> float:
    """``80GB``, ``80``, ``7.5e9``, ``70B`` (billions, for parameters), ``141GiB``."""
    value = str(text).strip()
    if what == "--parameters" and value[-1:] in "bB" and not value[-2:-1].isalpha():
        value = value[:-1] + "g"  # 70B parameters: billions, not bytes
    match = _SIZE.match(value)
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"{what} {text!r}: expected a positive amount such as 80GB, 7.5e9 or 70B")
    number, prefix, unit = float(match.group(1)), match.group(2).lower(), (match.group(3) or "").lower()
    if unit.startswith("i"):  # GiB, MiB: powers of 1024
        base = 1024.0 ** ("kmgt".index(prefix) + 1) if prefix else 1.0
    elif what == "--gpu-memory" and not prefix:
        base = 1e9  # a bare number is GB
    else:
        base = _SCALE[prefix]
    return number * base


def add_plan_parser(sub) -> None:
    p = sub.add_parser("plan", help="memory per GPU of DDP / ZeRO-1/2/3 / offload / FSDP2; the cheapest fit")
    p.add_argument("config")
    p.add_argument("--gpus-per-node", type=int, default=1, help="GPUs (processes) on each node")
    p.add_argument("--nodes", type=int, default=1, help="nodes")
    p.add_argument("--gpu-memory", default="80GB", help="memory of one GPU (80GB, 141GB, 24GiB)")
    p.add_argument(
        "--parameters", help="plan for a model of this size instead (7.5e9, 70B): model states only"
    )
    p.add_argument("--activations", help="with --parameters: activation memory per GPU (e.g. 20GB)")
    p.add_argument(
        "--out", help="folder for accelerate.yaml and plan.json (default: <output_dir>/plans/<run_id>)"
    )
    p.add_argument("overrides", nargs=argparse.REMAINDER)
    p.set_defaults(handler=run_plan)


def model_shape(model: Any) -> tuple[int, int, int]:
    """(parameters, trainable parameters, parameters of the largest module's own tensors); shared once."""
    unique = {p.untyped_storage().data_ptr(): p for p in model.parameters()}
    total = sum(p.numel() for p in unique.values())
    trainable = sum(p.numel() for p in unique.values() if p.requires_grad)
    largest = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()), default=0)
    return total, trainable, largest


def plan_rows(
    layout: Layout, trainable: float, precision, activations: float, gpu_memory: float
) -> list[dict]:
    """One row per registered strategy: GB per GPU (weights, gradients, optimizer, activations, total),
    host GB per node, whether it fits in ``USABLE`` of the GPU, and DeepSpeed's estimate beside it."""
    rows = []
    share = trainable / layout.parameters if layout.parameters else 1.0
    for name in list_strategies():
        strategy = get_strategy(name)
        full = strategy.estimate(layout, precision)
        weights = full.weights  # every parameter has working weights; only trainable ones the rest
        gradients, optimizer = full.gradients * share, full.optimizer * share
        total = weights + gradients + optimizer + activations
        reference = deepspeed_estimate(name, layout)
        rows.append(
            {
                "strategy": name,
                "title": strategy.title,
                "weights_gb": weights / GB,
                "gradients_gb": gradients / GB,
                "optimizer_gb": optimizer / GB,
                "activations_gb": activations / GB,
                "total_gb": total / GB,
                "cpu_per_node_gb": full.cpu_per_node * share / GB if full.cpu_per_node else 0.0,
                "fits": total <= USABLE * gpu_memory,
                "deepspeed_gpu_gb": reference[0] / GB if reference else None,
            }
        )
    return rows


def accelerate_config(name: str, layout: Layout, mixed_precision: str) -> dict[str, Any]:
    """The Accelerate config file for a strategy on ``layout`` (node 0's address left for the user)."""
    config = {
        "compute_environment": "LOCAL_MACHINE",
        "num_processes": layout.gpus,
        "num_machines": layout.nodes,
        "machine_rank": 0,
        "mixed_precision": mixed_precision,
        "use_cpu": False,
        "debug": False,
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
        **get_strategy(name).accelerate,
    }
    if layout.nodes > 1:
        config.update({"main_process_ip": "NODE0_ADDRESS", "main_process_port": 29500})
    return config


def table(rows: list[dict], gpu_memory: float) -> str:
    header = f"{'strategy':<22}{'weights':>9}{'grads':>9}{'optim':>9}{'activ.':>9}{'total':>9}"
    header += f"{'host/node':>11}{'DeepSpeed*':>11}  fits {USABLE:.0%} of {gpu_memory / GB:.0f} GB"
    lines = [header + "  (GB per GPU)"]
    for r in rows:
        reference = f"{r['deepspeed_gpu_gb']:.1f}" if r["deepspeed_gpu_gb"] is not None else "-"
        lines.append(
            f"{r['title']:<22}{r['weights_gb']:>9.2f}{r['gradients_gb']:>9.2f}{r['optimizer_gb']:>9.2f}"
            f"{r['activations_gb']:>9.2f}{r['total_gb']:>9.2f}{r['cpu_per_node_gb']:>11.1f}{reference:>11}"
            f"  {'yes' if r['fits'] else 'no'}"
        )
    lines.append("* DeepSpeed's estimate_zero2/zero3_model_states_mem_needs (mixed-precision Adam, 18 bytes)")
    return "\n".join(lines)


def run_plan(args: argparse.Namespace) -> int:
    import yaml

    from ..config import load_config
    from ..tools.commands import options_after_config

    names = {"gpus_per_node": int, "nodes": int, "gpu_memory": str, "parameters": str, "activations": str}
    options_after_config(args, {**names, "out": str})
    if args.gpus_per_node < 1 or args.nodes < 1:
        raise ConfigError("--gpus-per-node and --nodes must be at least 1")
    gpu_memory = parse_amount(args.gpu_memory, "--gpu-memory")
    config = load_config(args.config, args.overrides)
    training = config.training
    mixed = bool(training.bf16 or training.fp16)
    optim = str(getattr(training.optim, "value", training.optim))
    precision = precision_of(optim, mixed)
    total, trainable, largest, activations, measured = measure_model(config, mixed)
    if args.parameters:  # the config's model scaled: its trainable share and largest-layer share kept
        wanted = parse_amount(args.parameters, "--parameters")
        trainable, largest = trainable * wanted / total, largest * wanted / total
        total = wanted
        activations = parse_amount(args.activations, "--activations") if args.activations else 0.0
    layout = Layout(float(total), float(largest), args.gpus_per_node, args.nodes)
    rows = plan_rows(layout, float(trainable), precision, activations, gpu_memory)
    out = Path(args.out) if args.out else Path(config.basic.output_dir) / "plans" / config.basic.run_id
    out.mkdir(parents=True, exist_ok=True)
    chosen = next((r["strategy"] for r in rows if r["fits"]), None)
    print(
        f"{config.source}: {total / 1e6:,.1f}M parameters ({trainable / 1e6:,.1f}M trainable, largest layer "
        f"{largest / 1e6:,.2f}M), {precision.total:g} bytes per trainable parameter "
        f"({'mixed precision ' if mixed else 'fp32 '}{optim}), {args.nodes} node(s) x "
        f"{args.gpus_per_node} GPU(s), activations "
        + (measured if not args.parameters else ("given" if args.activations else "not counted"))
    )
    print(table(rows, gpu_memory))
    report = {
        "config": str(config.source),
        "parameters": total,
        "trainable": trainable,
        "largest_layer": largest,
    }
    report.update(
        {"gpus_per_node": args.gpus_per_node, "nodes": args.nodes, "gpu_memory_gb": gpu_memory / GB}
    )
    report.update({"bytes_per_parameter": precision.total, "rows": rows, "chosen": chosen})
    (out / "plan.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    if chosen is None:
        print(
            f"no strategy fits in {gpu_memory / GB:.0f} GB per GPU: more GPUs, a smaller batch or "
            "activation checkpointing; plan written to " + str(out / "plan.json")
        )
        return 1
    mixed_precision = "bf16" if training.bf16 else "fp16" if training.fp16 else "no"
    path = out / "accelerate.yaml"
    header = f"# neurotrain plan: {get_strategy(chosen).title} for {config.source}\n"
    if args.nodes > 1:
        header += "# set main_process_ip to node 0's address; run with --machine_rank R on node R\n"
    path.write_text(
        header + yaml.safe_dump(accelerate_config(chosen, layout, mixed_precision), sort_keys=False)
    )
    print(f"cheapest that fits: {get_strategy(chosen).title}; accelerate config: {path}")
    return 0


def measure_model(config, mixed: bool) -> tuple[int, int, int, float, str]:
    """The config's model built (seeded, no training) and its activations measured on one train batch."""
    from transformers.trainer_pt_utils import find_batch_size

    from ..runner import build
    from .activations import measure

    _, _, trainer = build(config)
    total, trainable, largest = model_shape(trainer.model)
    batch = next(iter(trainer.get_train_dataloader()))
    size = find_batch_size(batch) or 1
    sizes = (2, 4) if size >= 4 else (1, 2) if size >= 2 else (1, 1)
    if sizes[0] == sizes[1]:
        return total, trainable, largest, 0.0, "not measured (batch of 1)"
    act = measure(trainer, batch, sizes)
    per_device = config.training.per_device_train_batch_size
    note = f"measured {act.per_sample / 1e6:.2f} MB per sample x batch {per_device}"
    return total, trainable, largest, act.at(per_device, mixed), note
