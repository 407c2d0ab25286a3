"""The ``neurotrain`` command: train, check, convert, test, predict, list, env, metrics, lora, push, pull, dataset, space.

Heavy libraries are imported inside the subcommands that need them. Errors in user input print one
line (``error: <file>: <key>: <what>``) and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .errors import NeuroTrainError

LIST_KINDS = ("models", "datasets", "losses", "metrics", "tasks")


def _registry_names(kind: str, task: str | None = None) -> list[str]:
    """Registered names; with ``task``, the metrics and losses that task's config accepts."""
    if kind == "models":
        from .models import MODELS

        return MODELS.list() + [f"{p}/<name>" for p in MODELS.prefixes()]
    if kind == "datasets":
        from .data import list_datasets  # every task's sources

        return list_datasets()
    if kind == "losses":
        from .losses import list_losses
        from .tasks import TaskSpec, each_task, get_task

        classes = [get_task(task).config_class()] if task else each_task(TaskSpec.config_class).values()
        return list_losses(kinds=[k for cls in classes for k in cls.loss_kinds])
    if kind == "metrics":
        from .metrics import list_metrics

        return list_metrics(task)
    from .tasks import list_tasks

    return list_tasks()


def config_help(task: str | None = None) -> str:
    """Every section's options with their help texts, from HfArgumentParser (a task's own sections too)."""
    from .config.parser import NeuroArgumentParser
    from .config.sections import SECTIONS, TASK_SECTIONS
    from .tasks import get_task, list_tasks

    parts = ["Experiment options: set them in the file's [section] or override with --section.key VALUE.\n"]
    if task is None:
        parts.append(
            f"[dataset], [augmentation] and [training] are the task's ([basic] task: {', '.join(list_tasks())}); "
            "`neurotrain train --help TASK` lists them.\n"
        )
    spec = get_task(task) if task else None
    sections = {**SECTIONS, **({s: spec.section_class(s) for s in TASK_SECTIONS} if spec else {})}
    for name, cls in sections.items():
        text = NeuroArgumentParser(cls, prog=f"[{name}]", add_help=False).format_help()
        text = text.replace("--", f"--{name}.")
        parts.append(f"\n== [{name}] ({cls.__name__}) ==\n{text}")
    return "".join(parts)


def setup_logging() -> None:
    level = os.environ.get("NEUROTRAIN_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    import datasets
    import transformers

    transformers.logging.set_verbosity_warning()
    if not sys.stderr.isatty():  # progress bars only for people watching a terminal, not in logs
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def run_training(config_path: str, overrides: list[str], task: str | None = None) -> dict:
    """Load a config, run it, and print the run folder and headline metrics (main process)."""
    from .config import load_config, set_config
    from .errors import ConfigError
    from .runner import run

    config = load_config(config_path, overrides)
    if task is not None and config.basic.task != task:
        raise ConfigError(
            f"{config_path}: [basic] task is {config.basic.task!r}; this recipe trains {task!r}"
        )
    set_config(config)
    report = run(config)
    if int(os.environ.get("RANK", "0")) == 0:
        test = report.get("test", {})
        headline = {k: round(v, 4) for k, v in test.items() if isinstance(v, float)}
        if test.get("split", "test") != "test":  # no test split: the line names the split tested
            headline = {"split": test["split"], **headline}
        print(f"run folder: {report['run_dir']}")
        if "untested" in report:
            print(f"nothing tested: {report['untested']}")
        print(f"test metrics: {json.dumps(headline)}")
    return report


def recipe_main(task: str | None, argv: list[str] | None = None) -> int:
    """Entry point of ``recipes/train_<task>.py CONFIG [--section.key VALUE ...]`` and ``neurotrain train``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(
            f"usage: {f'train_{task}.py' if task else 'neurotrain train'} CONFIG [--section.key VALUE ...]\n"
        )
        try:
            print(config_help(task or (argv[1] if len(argv) > 1 else None)))
        except NeuroTrainError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        return 0
    setup_logging()
    from .runner import shutdown_distributed

    try:
        run_training(argv[0], argv[1:], task)
    except NeuroTrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        shutdown_distributed()
    return 0


def _cmd_check(args) -> int:
    from .config import load_config

    config = load_config(args.config, args.overrides)
    print(f"{args.config}: ok (task {config.basic.task}, run folder {config.run_dir})")
    return 0


def _cmd_convert(args) -> int:
    from .config import dumps_config, read_config_file, write_config_file
    from .config.experiment import build_config

    data = read_config_file(args.config)
    build_config(data, source=args.config)  # validate before converting
    if args.output:
        write_config_file(data, args.output)
    else:
        sys.stdout.write(dumps_config(data, args.to))
    return 0


def _cmd_test(args) -> int:
    from .config import load_config
    from .tester import Tester

    result = Tester(load_config(args.config, args.overrides)).run()
    print(json.dumps(result, indent=2))
    return 0


def _cmd_predict(args) -> int:
    from .predictor import Predictor

    predictor = Predictor.from_pretrained(args.model)
    options = {k: getattr(args, k) for k in ("num", "seed", "class", "mask", "prompt")}
    generating = not args.inputs or any(v is not None for v in options.values())
    if generating:  # a sampler's model: named requests instead of input files
        requests = predictor.task.requests(predictor.model.config, options)
        names, preds = [n for n, _ in requests], predictor.predict([r for _, r in requests])
    else:
        names, preds = args.inputs, predictor.predict_files(args.inputs, {"question": args.question})
    for path, pred in zip(names, preds):
        written = predictor.task.save_prediction(pred, path, args.out)
        extra = {"written": [str(p) for p in written]} if written else {}
        print(json.dumps({"input": path, **predictor.task.summary(pred), **extra}))
    for path in predictor.task.finish_prediction(preds, args.out):
        print(json.dumps({"written": str(path)}))
    return 0


def _cmd_preview_labels(args) -> int:
    from .config import load_config
    from .tasks import get_task

    config = load_config(args.config, args.overrides)
    print(get_task(config.basic.task).load().preview_labels(config, args.count))
    return 0


def _cmd_metrics(args) -> int:
    from .metrics import hub

    if args.action == "install":
        for folder in hub.install_modules():
            print(folder)
    elif args.action == "spaces":
        for folder in hub.write_spaces(Path(args.dest)):
            print(folder)
    elif args.action == "publish":
        for url in hub.publish_spaces(args.namespace, endpoint=args.endpoint):
            print(url)
    else:
        print("\n".join(f"{hub.NAMESPACE}/{name}" for name in sorted(hub.CARDS)))
    return 0


def _cmd_lora(args) -> int:
    from .adapters import merge_adapter

    diff = merge_adapter(args.adapter, args.out, base=args.base)
    print(f"merged model: {args.out}")
    print(f"largest difference between merged and unmerged outputs on a probe batch: {diff:.3g}")
    return 0


def _cmd_push(args) -> int:
    from .hub import push_run

    result = push_run(
        args.run_dir,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        include_checkpoints=args.include_checkpoints,
        include_optimizer=args.include_optimizer,
    )
    print(f"pushed {len(result['files'])} files: {result['commit_url']}")
    return 0


def _cmd_consolidate(args) -> int:
    from .trainer.consolidation import consolidate, consolidate_in_place

    if args.in_place:
        if not consolidate_in_place(args.checkpoint, strict=True):
            raise NeuroTrainError(f"{args.checkpoint}: no shard set to consolidate")
        print(f"consolidated model: {args.checkpoint} (shards removed)")
        return 0
    print(f"consolidated model: {consolidate(args.checkpoint, args.out)}")
    return 0


def _cmd_pull(args) -> int:
    from .hub import pull

    print(pull(args.repo_id, revision=args.revision))
    return 0


def _cmd_dataset(args) -> int:
    from .config import load_config
    from .hub import push_dataset

    splits = push_dataset(load_config(args.config), args.repo_id, private=args.private)
    print(
        f'pushed splits {", ".join(splits)} to {args.repo_id}; load with [dataset] hub_id = "{args.repo_id}"'
    )
    return 0


def _cmd_generate(args) -> int:
    from .predictor import Predictor

    predictor = Predictor.from_pretrained(args.model)
    summary = predictor.task.generate_dataset(predictor, args.masks, args.num, args.seed, args.out)
    print(json.dumps(summary))
    return 0


def _cmd_space(args) -> int:
    from .hub import publish_space

    print(publish_space(args.folder, args.repo_id, args.model, private=args.private))
    return 0


def _cmd_env(args) -> int:
    import importlib.metadata as md
    import platform

    print(f"python: {platform.python_version()} ({platform.platform()})")
    for pkg in (
        "neurotrain-hf",
        "torch",
        "torchvision",
        "transformers",
        "datasets",
        "evaluate",
        "accelerate",
        "huggingface_hub",
        "timm",
        "safetensors",
        "peft",
        "monai",
        "deepspeed",
        "gradio",
    ):
        try:
            print(f"{pkg}: {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"{pkg}: not installed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurotrain", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train from a config file", add_help=False)
    p.add_argument("config", nargs="?")
    p.add_argument("overrides", nargs=argparse.REMAINDER)
    p = sub.add_parser("check", help="validate a config without training")
    p.add_argument("config")
    p.add_argument("overrides", nargs=argparse.REMAINDER)
    p = sub.add_parser("convert", help="convert a config between toml, yaml and json")
    p.add_argument("config")
    p.add_argument("--to", choices=("toml", "yaml", "json"), required=True)
    p.add_argument("-o", "--output", help="write here instead of stdout (format from --to)")
    p = sub.add_parser("test", help="evaluate a trained run on its test split")
    p.add_argument("config", help="the run folder's config.toml (or the experiment file)")
    p.add_argument("overrides", nargs=argparse.REMAINDER)
    p = sub.add_parser("predict", help="predict inputs with a model or run folder (or a Hub repo id)")
    p.add_argument("model")
    p.add_argument(
        "inputs",
        nargs="*",
        help="what the model's task reads: image files; volumes: NIfTI files or case folders "
        "(generative models: none, see --num)",
    )
    p.add_argument("--out", help="write the task's prediction files here (masks, drawings, NIfTI volumes)")
    p.add_argument("--num", type=int, help="generative models: how many samples to generate")
    p.add_argument("--seed", type=int, help="generative models: sample i starts from the noise of seed + i")
    p.add_argument("--class", help="class-conditioned models: the class id or name to generate")
    p.add_argument("--mask", help="mask-conditioned models: the mask image to generate from")
    p.add_argument("--prompt", help="text-conditioned models: the prompt")
    p.add_argument("--question", help="vision-language models: the question asked about each input image")
    p = sub.add_parser(
        "preview-labels", help="print training samples with the supervised tokens marked (before training)"
    )
    p.add_argument("config")
    p.add_argument("--count", type=int, default=2, help="how many samples to show")
    p.add_argument("overrides", nargs=argparse.REMAINDER)
    p = sub.add_parser("list", help="list registered names")
    p.add_argument("kind", choices=LIST_KINDS)
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--task", default=None, help="metrics / losses: the names this task accepts")
    sub.add_parser("env", help="print versions for bug reports")
    p = sub.add_parser("push", help="push a run folder to a Hub model repo (model, card, record)")
    p.add_argument("run_dir")
    p.add_argument("repo_id")
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision", default=None, help="branch (created when missing)")
    p.add_argument("--include-checkpoints", action="store_true", help="also the checkpoints' weights")
    p.add_argument(
        "--include-optimizer", action="store_true", help="with checkpoints: optimizer/scheduler state"
    )
    p = sub.add_parser(
        "consolidate", help="ZeRO-3 / FSDP2 shards of a checkpoint -> one from_pretrained model folder"
    )
    p.add_argument("checkpoint", help="a checkpoint (or model) folder holding per-rank shards")
    p.add_argument("--out", default=None, help="output folder (default CHECKPOINT/consolidated)")
    p.add_argument(
        "--in-place",
        action="store_true",
        help="write the weights into the folder and remove its shards (model/)",
    )
    p = sub.add_parser("pull", help="snapshot a Hub model repo into the cache and print its folder")
    p.add_argument("repo_id")
    p.add_argument("--revision", default=None)
    p = sub.add_parser("dataset", help="datasets: push a configured dataset to the Hub")
    p.add_argument("action", choices=("push",))
    p.add_argument("config", help="an experiment file whose [dataset] names the data")
    p.add_argument("repo_id")
    p.add_argument("--private", action="store_true")
    p = sub.add_parser(
        "generate", help="generative models: write a labelled dataset (e.g. images drawn from masks)"
    )
    p.add_argument("model", help="a run or model folder (or a Hub repo id)")
    p.add_argument("--masks", required=True, help="folder of conditioning masks (used in turn)")
    p.add_argument("--num", type=int, required=True, help="how many image/mask pairs to write")
    p.add_argument("--seed", type=int, default=0, help="pair i starts from the noise of seed + i")
    p.add_argument(
        "--out", required=True, help="output folder: images/ and masks/ (segmentation_folder layout)"
    )
    p = sub.add_parser("space", help="Gradio demo Spaces: publish spaces/<name> serving a model repo")
    p.add_argument("action", choices=("publish",))
    p.add_argument("folder", help="e.g. spaces/segmentation-demo")
    p.add_argument("repo_id", help="the Space repo, namespace/name")
    p.add_argument("--model", required=True, help="the model repo id the demo serves")
    p.add_argument("--private", action="store_true")
    p = sub.add_parser("lora", help="LoRA adapters: merge one into its base model")
    p.add_argument("action", choices=("merge",))
    p.add_argument("adapter", help="a run folder (its adapter/) or an adapter folder")
    p.add_argument("--out", required=True, help="folder for the merged model (a normal model folder)")
    p.add_argument("--base", default=None, help="base model id or folder (default: the adapter's own)")
    p = sub.add_parser("metrics", help="evaluate modules: install offline, lay out or publish Spaces")
    p.add_argument("action", choices=("install", "spaces", "publish", "list"))
    p.add_argument("--namespace", default="neurotrain", help="Hub namespace for publish")
    p.add_argument("--endpoint", default=None, help="Hub endpoint (default: HF_ENDPOINT or the Hub)")
    p.add_argument("--dest", default="spaces/metrics", help="folder for `spaces`")
    from .planning.commands import add_plan_parser
    from .runs.commands import add_runs_parser
    from .tools.commands import add_tool_parsers
    from .tune.commands import add_tune_parser

    add_plan_parser(sub)
    add_runs_parser(sub)
    add_tune_parser(sub)
    parser.set_defaults(tool_handlers=add_tool_parsers(sub))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":  # CONFIG [--section.key VALUE ...], or --help [TASK]: the recipe's parser
        return recipe_main(None, argv[1:] or ["--help"])
    args = build_parser().parse_args(argv)
    if args.command == "list":
        import fnmatch

        try:
            names = [n for n in _registry_names(args.kind, args.task) if fnmatch.fnmatchcase(n, args.pattern)]
        except NeuroTrainError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        print("\n".join(names))
        return 0
    if args.command in (
        "test",
        "predict",
        "generate",
        "lora",
        "push",
        "consolidate",
        "pull",
        "dataset",
        "space",
        "quantize",
        "export",
        "tune",
    ):
        setup_logging()
    handlers = {
        **args.tool_handlers,
        "check": _cmd_check,
        "convert": _cmd_convert,
        "test": _cmd_test,
        "predict": _cmd_predict,
        "generate": _cmd_generate,
        "preview-labels": _cmd_preview_labels,
        "env": _cmd_env,
        "metrics": _cmd_metrics,
        "lora": _cmd_lora,
        "push": _cmd_push,
        "consolidate": _cmd_consolidate,
        "pull": _cmd_pull,
        "dataset": _cmd_dataset,
        "space": _cmd_space,
        "runs": lambda args: args.handler(args),
        "tune": lambda args: args.handler(args),
        "plan": lambda args: args.handler(args),
    }
    try:
        if args.command == "convert" and args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        return handlers[args.command](args)
    except NeuroTrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
