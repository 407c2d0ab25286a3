"""``neurotrain to-parquet CFG --out DIR``: the configured dataset, in any layout its task reads, as sharded
parquet with images embedded, in the Hub's layout (``DIR/data/<split>-0000i-of-0000N.parquet`` + README.md).

The rows are what the dataset's builder returns (before the task's checks and splits), so reading ``DIR``
back with ``[dataset] name = "parquet"`` and ``root = DIR`` gives every task the same rows, splits, label
names and stats; ``load_dataset(DIR)`` / ``load_dataset("parquet", data_dir=DIR)`` read it too, and
``--push`` uploads the folder to a Hub dataset repo (readable with ``hub_id``).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from ..data.parquet import CARD_KEY, DATA_DIR, decoded_features, source_fields
from ..errors import DataError, first_line
from ..trainer.checkpointing import replace_dir_atomic

MB = 1_000_000
IMAGE_BATCH, TABLE_BATCH = 100, 1000  # rows read, embedded and written (as one row group) at a time


def _has_images(features: datasets.Features) -> bool:
    from datasets.features.features import require_decoding

    return any(require_decoding(f, ignore_decode_attribute=True) for f in features.values())


def estimate_bytes(split: datasets.Dataset) -> int:
    """The split's size once its files are embedded: its Arrow bytes plus the files its image values point
    to (measured on up to 1,000 rows), as ``datasets``' own ``max_shard_size`` counts it."""
    from datasets.table import table_visitor

    n = len(split)
    if n == 0:
        return 0
    arrow = split.data.nbytes * n // max(len(split.data), 1)  # a selection holds part of its table
    sample = split.with_format("arrow")[: min(n, 1000)]
    files = 0

    def visit(array: pa.Array, feature: Any) -> None:
        nonlocal files
        if isinstance(feature, datasets.Image):
            for value in array.to_pylist():
                path = (
                    Path(value["path"])
                    if value and value.get("bytes") is None and value.get("path")
                    else None
                )
                files += path.stat().st_size if path is not None and path.is_file() else 0

    table_visitor(sample, visit)
    return arrow + files * n // len(sample)


def write_split(split: datasets.Dataset, name: str, folder: Path, shard_bytes: int) -> list[Path]:
    """One split as ``ceil(size / shard_bytes)`` parquet shards of consecutive rows (``estimate_bytes``),
    files embedded, row groups of 100 image rows; returns ``<name>-0000i-of-0000N.parquet`` paths."""
    from datasets.arrow_writer import get_parquet_column_options
    from datasets.table import embed_table_storage

    features = decoded_features(split.features)
    schema = features.arrow_schema
    options = get_parquet_column_options(features, schema)  # as `datasets` writes: media stored plain
    options["write_statistics"] = options["use_dictionary"]  # no min/max copies of image bytes
    options["use_content_defined_chunking"] = datasets.config.DEFAULT_CDC_OPTIONS  # Hub (Xet) dedupe
    batch = IMAGE_BATCH if _has_images(features) else TABLE_BATCH
    count = max(1, min(len(split), math.ceil(estimate_bytes(split) / shard_bytes)))
    paths = [folder / f"{name}-{i:05d}-of-{count:05d}.parquet" for i in range(count)]
    for i, path in enumerate(paths):
        shard = split.shard(count, i, contiguous=True) if count > 1 else split
        with pq.ParquetWriter(str(path), schema, write_page_index=True, **options) as writer:
            for table in shard.with_format("arrow").iter(batch_size=batch):
                writer.write_table(embed_table_storage(table.cast(schema)))
            if len(shard) == 0:  # an empty split keeps its schema
                writer.write_table(schema.empty_table())
    return paths


def _card(dsd: datasets.DatasetDict, meta: dict[str, Any], config: Any, sizes: dict[str, int]) -> str:
    """README.md: the Hub's ``configs`` (split -> files) and ``dataset_info``, plus the neurotrain key."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    data = DatasetCardData()
    first = next(iter(dsd.values()))
    if all(s.features == first.features for s in dsd.values()):  # one schema: the Hub's dataset_info
        info = DatasetInfo(features=decoded_features(first.features), splits=datasets.SplitDict())
        for name, split in dsd.items():
            info.splits.add(datasets.SplitInfo(name=name, num_bytes=sizes[name], num_examples=len(split)))
        DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    files = [{"split": name, "path": f"{DATA_DIR}/{name}-*"} for name in dsd]
    MetadataConfigs({"default": {"data_files": files}}).to_dataset_card_data(data)
    setattr(data, CARD_KEY, meta)
    counts = ", ".join(f"{name} {len(split)}" for name, split in dsd.items())
    body = (
        f"# {config.dataset.name} ({config.basic.task})\n\n"
        f"Written by `neurotrain to-parquet` from the `{config.dataset.name}` dataset ({counts} rows). "
        f'Load it with `datasets.load_dataset(...)`, or train on it with `[dataset] name = "parquet"` and '
        f"`root` (this folder) or `hub_id` (this repo).\n"
    )
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def _check_out(out: Path) -> None:
    """``out`` is new, empty, or an earlier export (replaced); anything else is refused in one line."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"--out {str(out)!r}: a file, not a folder")
    readme = out / "README.md"
    earlier = readme.is_file() and f"\n{CARD_KEY}:" in readme.read_text(encoding="utf-8", errors="replace")
    if any(out.iterdir()) and not earlier:
        raise DataError(f"--out {str(out)!r}: folder not empty (and not an earlier to-parquet output)")


def to_parquet(config: Any, out_dir: str | Path, shard_mb: float = 500, push: str | None = None) -> dict:
    """Write the configured dataset as parquet shards under ``out_dir`` (replacing an earlier export);
    with ``push``, upload the folder to that Hub dataset repo. Returns what was written."""
    from ..data.registry import DATASETS
    from ..tasks import get_task

    if not shard_mb or shard_mb <= 0 or not math.isfinite(shard_mb):
        raise DataError(f"--shard-mb {shard_mb}: must be a positive number of megabytes")
    out = Path(out_dir)
    _check_out(out)
    name = config.dataset.name
    get_task(config.basic.task).load_sources()
    source = DATASETS.get(name)(config.dataset)
    dsd = source.splits
    if not dsd:
        raise DataError(f"[dataset] {name}: the source has no splits to write")
    fields = source_fields(source, name)
    meta = {
        "task": config.basic.task,
        "dataset": name,
        "source_class": f"{type(source).__module__}.{type(source).__qualname__}",
        "source_fields": fields,
        "splits": {k: {"rows": len(v), "features": json.dumps(v.features.to_dict())} for k, v in dsd.items()},
    }
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / DATA_DIR).mkdir(parents=True)
    try:
        shards = {}
        for split, rows in dsd.items():
            try:
                shards[split] = write_split(rows, split, staging / DATA_DIR, int(shard_mb * MB))
            except OSError as exc:  # a file the rows point to went missing or is unreadable
                raise DataError(
                    f"[dataset] {name}: {split}: cannot embed a file ({first_line(exc)})"
                ) from None
        sizes = {k: sum(p.stat().st_size for p in v) for k, v in shards.items()}
        for split, paths in shards.items():
            meta["splits"][split]["shards"] = len(paths)
        (staging / "README.md").write_text(_card(dsd, meta, config, sizes), encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        replace_dir_atomic(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = {
        "out_dir": str(out),
        "task": config.basic.task,
        "dataset": name,
        "splits": {
            k: {"rows": len(dsd[k]), "shards": len(v), "bytes": sizes[k], "files": [p.name for p in v]}
            for k, v in shards.items()
        },
        "bytes": sum(sizes.values()),
        "pushed": None,
    }
    if push:
        result["pushed"] = {"repo_id": push, "commit_url": push_folder(out, push, name)}
    return result


def push_folder(folder: str | Path, repo_id: str, name: str = "dataset") -> str:
    """Upload an export to a Hub dataset repo (created when missing; its old shards replaced); the URL."""
    from huggingface_hub import HfApi

    from ..hub import _hub_error

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=str(folder),
            commit_message=f"neurotrain to-parquet {name}",
            delete_patterns=[f"{DATA_DIR}/*.parquet"],
        )
    except Exception as exc:  # noqa: BLE001 - every client failure becomes one line
        raise _hub_error(exc, f"push {folder} -> {repo_id}") from None
    return str(getattr(commit, "commit_url", commit))


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def summary_line(result: dict) -> str:
    """One line: splits and rows, shards, size, where (and the repo it was pushed to)."""
    splits = result["splits"]
    rows = ", ".join(f"{k} {v['rows']}" for k, v in splits.items())
    shards = sum(v["shards"] for v in splits.values())
    line = (
        f"wrote {result['dataset']} ({rows} rows) as {shards} parquet shard{'s' * (shards != 1)}, "
        f"{_size(result['bytes'])}, to {result['out_dir']}"
    )
    if result.get("pushed"):
        line += f"; pushed to {result['pushed']['repo_id']}"
    return line
