"""The tools' ``neurotrain`` subcommands: ``quantize``, ``export onnx``, ``analyze runs|dataset|lora|attention``,
``to-parquet`` and ``cleanup``. Each prints its report's one-line summary last; heavy imports stay inside."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError


def options_after_config(args: argparse.Namespace, names: dict[str, type]) -> None:
    """Options typed after CONFIG land in its ``--section.key VALUE`` overrides (argparse's REMAINDER): move
    the command's own (``--out DIR``) back onto ``args``."""
    rest, i = [], 0
    while i < len(args.overrides):
        flag = args.overrides[i].split("=", 1)
        key = flag[0].lstrip("-").replace("-", "_")
        if flag[0].startswith("--") and key in names:
            value = (
                flag[1]
                if len(flag) == 2
                else (args.overrides[i + 1] if i + 1 < len(args.overrides) else None)
            )
            if value is None:
                raise ConfigError(f"{flag[0]}: needs a value")
            try:
                setattr(args, key, names[key](value))
            except ValueError:
                raise ConfigError(f"{flag[0]} {value!r}: not a {names[key].__name__}") from None
            i += 1 if len(flag) == 2 else 2
            continue
        rest.append(args.overrides[i])
        i += 1
    args.overrides = rest


def _out(args: argparse.Namespace, default: str) -> Path:
    return Path(args.out) if args.out else Path(default)


def _cmd_quantize(args: argparse.Namespace) -> int:
    from .quantize import quantize, summary_line

    print(summary_line(quantize(args.source, args.method, args.out, split=args.split, rounds=args.rounds)))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .onnx_export import export_onnx, summary_line

    report = export_onnx(
        args.source,
        args.out,
        opset=args.opset,
        dynamic_batch=args.dynamic_batch,
        atol=args.atol,
        samples=args.samples,
    )
    print(summary_line(report))
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    if args.what == "runs":
        from .run_comparison import compare_runs, summary_line

        print(summary_line(compare_runs(args.runs, _out(args, "analysis/runs"), metric=args.metric)))
    elif args.what == "dataset":
        from ..config import load_config
        from .dataset_report import analyze_dataset, summary_line

        options_after_config(args, {"out": str, "max_images": int})
        config = load_config(args.config, args.overrides)
        print(
            summary_line(analyze_dataset(config, _out(args, "analysis/dataset"), max_images=args.max_images))
        )
    elif args.what == "lora":
        from .lora_report import analyze_lora, summary_line

        print(summary_line(analyze_lora(args.run, _out(args, str(Path(args.run) / "analysis")))))
    else:
        from .attention import analyze_attention, summary_line

        out = _out(args, str(Path(args.run) / "analysis"))
        print(summary_line(analyze_attention(args.run, args.image, out, target=args.target)))
    return 0


def _cmd_to_parquet(args: argparse.Namespace) -> int:
    from ..config import load_config
    from .parquet import summary_line, to_parquet

    options_after_config(args, {"out": str, "shard_mb": float, "push": str})
    if not args.out:
        raise ConfigError("to-parquet: --out DIR is required")
    config = load_config(args.config, args.overrides)
    print(summary_line(to_parquet(config, args.out, shard_mb=args.shard_mb, push=args.push)))
    return 0


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from .cleanup import cleanup, report_lines, summary_line

    result = cleanup(args.runs_dir, keep=args.keep, older_than=args.older_than, apply=args.apply)
    for line in report_lines(result):
        print(line)
    print(summary_line(result))
    return 0


def add_tool_parsers(sub: argparse._SubParsersAction) -> dict[str, object]:
    """Add the tools' subcommands to ``neurotrain``'s parser; returns command name -> handler."""
    from .quantize import list_quant_methods

    p = sub.add_parser(
        "quantize", help="quantize a run's model (torchao, bitsandbytes, quanto) and measure it"
    )
    p.add_argument("source", help="run folder, model folder or Hub repo id")
    p.add_argument("--method", required=True, choices=list_quant_methods())
    p.add_argument("--out", required=True, help="new folder for the quantized model and its report")
    p.add_argument("--split", default="test", help="split the metrics are measured on (run folders)")
    p.add_argument("--rounds", type=int, default=5, help="timed batches per model (alternated)")

    p = sub.add_parser("export", help="export a run's model (ONNX) with a parity check that fails")
    p.add_argument("format", choices=["onnx"])
    p.add_argument("source", help="run folder, model folder or Hub repo id")
    p.add_argument("--out", required=True, help="new folder for the graphs, processor and report")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--dynamic-batch", action="store_true", help="a dynamic batch axis (checked at two sizes)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest absolute output difference accepted")
    p.add_argument("--samples", type=int, default=8, help="test-split samples the parity check runs on")

    p = sub.add_parser("analyze", help="analyzers: runs, dataset, lora, attention")
    what = p.add_subparsers(dest="what", required=True)
    q = what.add_parser("runs", help="curves, metrics table and a paired bootstrap of two runs")
    q.add_argument("runs", nargs="+")
    q.add_argument("--metric", help="per-sample metric to compare (default: metric_for_best_model)")
    q.add_argument("--out", help="output folder (default analysis/runs)")
    q = what.add_parser(
        "dataset", help="counts, sizes, intensities, masks, boxes, texts, duplicates across splits"
    )
    q.add_argument("config")
    q.add_argument("overrides", nargs=argparse.REMAINDER, help="--section.key VALUE overrides")
    q.add_argument("--out", help="output folder (default analysis/dataset)")
    q.add_argument("--max-images", type=int, help="decode at most this many images per split")
    q = what.add_parser("lora", help="per-layer LoRA update norms and effective ranks")
    q.add_argument("run", help="run folder (its adapter/) or adapter folder")
    q.add_argument("--out", help="output folder (default RUN/analysis)")
    q = what.add_parser("attention", help="attention rollout (ViT/CLIP) or Grad-CAM (CNN/U-Net) overlay")
    q.add_argument("run")
    q.add_argument("image")
    q.add_argument("--target", type=int, help="class to explain (default: the predicted one)")
    q.add_argument("--out", help="output folder (default RUN/analysis)")

    p = sub.add_parser("to-parquet", help="a configured dataset as sharded parquet with images embedded")
    p.add_argument("config")
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="--section.key VALUE overrides")
    p.add_argument("--out", help="new folder for the parquet shards (required)")
    p.add_argument("--shard-mb", type=float, default=500.0)
    p.add_argument("--push", metavar="REPO_ID", help="also push the folder to a Hub dataset repo")

    p = sub.add_parser("cleanup", help="delete superseded checkpoints (dry run unless --apply)")
    p.add_argument("runs_dir")
    p.add_argument("--keep", default="best,last", help="checkpoints kept besides best and last (names)")
    p.add_argument("--older-than", help="only runs older than this (e.g. 7d, 12h)")
    p.add_argument("--apply", action="store_true", help="delete (default: list what would go)")
    return {
        "quantize": _cmd_quantize,
        "export": _cmd_export,
        "analyze": _cmd_analyze,
        "to-parquet": _cmd_to_parquet,
        "cleanup": _cmd_cleanup,
    }
