"""``[dataset] streaming = true``: the train split read as a stream of shards, split by process, resumed exactly.

The shards (``data/shards.py``) become one ``datasets.IterableDataset``: shard order and a buffer shuffled
with the data seed (``shuffle``), reshuffled each epoch (``set_epoch``), then split across processes with
``split_dataset_by_node``: whole shards when their count divides the world size and that drops at most 1%
of the rows, else every ``world_size``-th row (each process then reads every shard, so a process never
waits on a shard it lacks). Every process yields the same number of rows per epoch (the fewest any
process can get), so DDP never waits on a process that ran dry; the rows left over are counted, logged
and reported. Batches get the map-style split's own transform, with torch's RNG seeded from (seed,
epoch, rank, batch), so a resumed run draws the same augmentations.

Resume: the stream is deterministic in (seed, epoch, rank), so its position is (epoch, batches done),
saved in every checkpoint through ``StreamingStateCallback`` (``trainer_state.json``, written before the
checkpoint is marked complete). On resume the rows already trained on are skipped undecoded and replaced
by empty placeholder batches that the Trainer's own batch skip (``skip_first_batches``) drops, so neither
side skips twice. ``datasets``' own ``state_dict()`` is not used: it does not hold the shuffle buffer's
contents, which a resumed run would lose. Batches are read in the main process (no DataLoader workers).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
from dataclasses import dataclass
from itertools import islice
from typing import Any

import datasets
import numpy as np
import torch
from accelerate.data_loader import DataLoaderShard
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from ..errors import ConfigError, DataError, NeuroTrainError, TrainingHaltedError, first_line
from .loader import dataset_transform, passthrough_collate
from .shards import WDS_META, TrainShards, open_stream, train_shards

logger = logging.getLogger(__name__)
LOG_ENV = "NEUROTRAIN_STREAM_LOG"  # debug: a folder where each rank appends "epoch batch digest" per sample
STREAMABLE = ("parquet", "webdataset")  # dataset names whose sources load only the train split's head
MAX_SHARD_DROP = 0.01  # whole-shard split only when it leaves out at most this share of the rows


@dataclass
class RankPlan:
    """How the rows are split across processes: strategy, rows per process per epoch, rows left out."""

    strategy: str  # "shards", "examples" (or "none" on one process)
    samples: int
    dropped: int


def plan_split(rows: list[int], world_size: int) -> RankPlan:
    """Whole shards per process when they divide evenly enough, else every ``world_size``-th row."""
    total = sum(rows)
    if world_size == 1:
        return RankPlan("none", total, 0)
    if len(rows) % world_size == 0:
        least = sum(sorted(rows)[: len(rows) // world_size])  # the fewest rows a process can be dealt
        if total - world_size * least <= MAX_SHARD_DROP * total:
            return RankPlan("shards", least, total - world_size * least)
    per = total // world_size
    return RankPlan("examples", per, total - world_size * per)


def collate(values: list[Any]) -> Any:
    """Rows of one column -> what the map-style loader hands the transform (arrays, else a list)."""
    first = values[0]
    if isinstance(first, (bool, int, float, np.number, np.ndarray, list)):
        array = np.asarray(values)
        if array.dtype != object:
            return array
    return values


def row_digest(row: dict[str, Any]) -> str:
    """A short id of a row's content (the debug log's sample id)."""
    items = sorted((k, v) for k, v in row.items() if k not in WDS_META)
    return hashlib.blake2b(pickle.dumps(items, protocol=4), digest_size=8).hexdigest()


class StreamingTrainSet(torch.utils.data.IterableDataset):
    """One process's part of the train stream as transformed batches, ``samples`` rows per epoch."""

    def __init__(
        self,
        stream: datasets.IterableDataset,
        transform: Any,
        columns: list[str],
        batch_size: int,
        plan: RankPlan,
        shards: TrainShards,
        *,
        seed: int,
        rank: int,
        world_size: int,
        shuffle_buffer: int,
    ) -> None:
        self.stream, self.transform, self.columns = stream, transform, columns
        self.batch_size, self.plan, self.shards = batch_size, plan, shards
        self.seed, self.rank, self.world_size, self.shuffle_buffer = seed, rank, world_size, shuffle_buffer
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        """Rows per epoch, the same on every process (the Trainer's sample count)."""
        return self.plan.samples

    @property
    def num_batches(self) -> int:
        """Batches per epoch, the same on every process."""
        return math.ceil(self.plan.samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (shard order and buffer): epochs differ, reruns repeat."""
        self.epoch = int(epoch)
        self.stream.set_epoch(self.epoch)

    def resume_at(self, epoch: int, batches: int) -> None:
        """The next pass over ``epoch`` starts after ``batches`` batches (yielded as empty placeholders)."""
        self._resume = (int(epoch), int(batches))

    def position(self, global_step: int, accumulation: int) -> dict[str, Any]:
        """Where training stands after ``global_step`` optimizer steps, and what the stream depends on."""
        per_epoch = max(math.ceil(self.num_batches / accumulation), 1)  # the Trainer's update steps per epoch
        return {
            "epoch": global_step // per_epoch,
            "batches": (global_step % per_epoch) * accumulation,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "rows_per_process": self.plan.samples,
            "dropped_per_epoch": self.plan.dropped,
            "strategy": self.plan.strategy,
            "shards": self.shards.digest(),
            "seed": self.seed,
            "shuffle_buffer": self.shuffle_buffer,
        }

    def batch_seed(self, epoch: int, batch: int) -> int:
        """The augmentation seed of one batch: the same batch draws the same augmentation after a resume."""
        state = np.random.SeedSequence([self.seed, epoch, self.rank, self.world_size, batch]).generate_state(
            2, np.uint32
        )
        return int(state[0]) << 32 | int(state[1])

    def _rows(self, epoch: int):
        try:
            yield from self.stream
        except NeuroTrainError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow / tar errors on a corrupt shard
            raise DataError(
                f"[dataset] streaming: a train shard could not be read (epoch {epoch}, process {self.rank}): "
                f"{first_line(exc)}"
            ) from None

    def __iter__(self):
        epoch, start = self.epoch, 0
        if self._resume is not None and self._resume[0] == epoch:
            start = self._resume[1]
        self._resume = None
        rows, limit = self._rows(epoch), self.plan.samples
        taken = min(start * self.batch_size, limit)
        if taken and sum(1 for _ in islice(rows, taken)) < taken:
            raise DataError(f"[dataset] streaming: the train shards hold fewer rows than counted ({taken})")
        for _ in range(start):
            yield {}  # dropped by the Trainer's skip of the batches already trained on
        log = self._open_log()
        index = start
        try:
            while taken < limit:
                chunk = list(islice(rows, min(self.batch_size, limit - taken)))
                if not chunk:
                    raise DataError(
                        f"[dataset] streaming: process {self.rank} ran out of rows at {taken} of {limit} in "
                        f"epoch {epoch}: a shard holds fewer rows than its footer or headers say"
                    )
                taken += len(chunk)
                if log is not None:
                    log.write("".join(f"{epoch} {index} {row_digest(r)}\n" for r in chunk))
                    log.flush()
                yield self._batch(chunk, epoch, index)
                index += 1
        finally:
            if log is not None:
                log.close()

    def _open_log(self):
        folder = os.environ.get(LOG_ENV)
        if not folder:
            return None
        os.makedirs(folder, exist_ok=True)
        return open(os.path.join(folder, f"rank{self.rank}.log"), "a", encoding="utf-8")

    def _batch(self, chunk: list[dict[str, Any]], epoch: int, index: int) -> dict[str, Any]:
        batch = {name: collate([row[name] for row in chunk]) for name in self.columns}
        if self.transform is None:
            return batch
        generator = torch.default_generator
        state = generator.get_state()
        generator.manual_seed(self.batch_seed(epoch, index))
        try:
            return self.transform(batch)
        except NeuroTrainError:
            raise
        except Exception as exc:  # noqa: BLE001 - an undecodable sample is one line naming it
            bad = next((row for row in chunk if self._fails(row)), chunk[0])
            where = f"{bad['__url__']} key {bad['__key__']}" if "__url__" in bad else ""
            raise DataError(
                f"[dataset] streaming: a sample of batch {index} (epoch {epoch}, process {self.rank}"
                f"{', ' + where if where else ''}) cannot be prepared: {first_line(exc)}"
            ) from None
        finally:
            generator.set_state(state)

    def _fails(self, row: dict[str, Any]) -> bool:
        """Whether the transform fails on this row alone (finding the sample to name after a batch failed)."""
        try:
            self.transform({name: collate([row[name]]) for name in self.columns})
        except Exception:  # noqa: BLE001 - any failure names the row
            return True
        return False


def match_columns(
    stream: datasets.IterableDataset, proxy: datasets.Dataset, columns: list[str], cfg: Any
) -> datasets.IterableDataset:
    """The stream with the columns (names and types) the task's map-style train split has."""
    have = list(stream.column_names or [])
    for name in columns:
        if name in have:
            continue
        source = getattr(cfg, f"{name}_column", None)
        if not source or source not in have:
            raise DataError(
                f"[dataset] {cfg.name}: the streamed train shards have no column {name!r} (columns: "
                f"{', '.join(have)}); set [dataset] {name}_column"
            )
        stream = stream.rename_column(source, name)
    keep = columns + [c for c in WDS_META if c in have]
    stream = stream.select_columns(keep)
    features = stream.features
    for name in columns:
        wanted = proxy.features.get(name)
        if features is not None and wanted is not None and features.get(name) != wanted:
            stream = stream.cast_column(name, wanted)
    return stream


def stream_train_split(config: Any, data: Any) -> StreamingTrainSet:
    """Replace ``data.splits["train"]`` (the first rows the task prepared from) by this process's stream."""
    from accelerate import PartialState

    cfg, args = config.dataset, config.training
    if cfg.name not in STREAMABLE:
        raise DataError(
            f"[dataset] streaming: dataset {cfg.name!r} is read whole; streaming reads `parquet` (a folder "
            "from `neurotrain to-parquet`, or a Hub dataset's parquet files through hub_id) and `webdataset`"
        )
    if cfg.max_samples:
        raise ConfigError(
            f"[dataset] max_samples = {cfg.max_samples} does not shorten a streamed train split: remove it, "
            "or write fewer rows into the shards"
        )
    proxy = data.splits["train"]
    if not isinstance(proxy, datasets.Dataset):
        raise DataError(f"[dataset] {cfg.name}: streaming needs the task's train split as a datasets.Dataset")
    columns = list(proxy.format.get("columns") or proxy.column_names)
    shards = train_shards(cfg)
    state = PartialState()
    rank, world = state.process_index, state.num_processes
    plan = plan_split(shards.rows, world)
    if plan.samples == 0:
        raise DataError(
            f"[dataset] {cfg.name}: {shards.total} train rows cannot feed {world} processes with streaming"
        )
    seed = args.data_seed if args.data_seed is not None else args.seed
    stream = match_columns(open_stream(shards, cfg), proxy, columns, cfg)
    if cfg.shuffle_buffer:
        # one shard feeds the buffer at a time: datasets' multi-shard interleaving reads in threads and
        # sleeps 5 s whenever an epoch's iterator closes (apache/arrow#45214)
        stream = stream.shuffle(seed=seed, buffer_size=cfg.shuffle_buffer, max_buffer_input_shards=1)
    if world > 1:
        from datasets.distributed import split_dataset_by_node

        stream = split_dataset_by_node(stream, rank=rank, world_size=world, strategy=plan.strategy)
    train = StreamingTrainSet(
        stream,
        dataset_transform(proxy),
        columns,
        args.per_device_train_batch_size,
        plan,
        shards,
        seed=seed,
        rank=rank,
        world_size=world,
        shuffle_buffer=cfg.shuffle_buffer,
    )
    summary = {
        "rows": shards.total,
        "shards": len(shards.files),
        "strategy": plan.strategy,
        "rows_per_process": plan.samples,
        "dropped_per_epoch": plan.dropped,
    }
    if rank == 0:
        say = logger.warning if plan.dropped else logger.info
        say(
            "streaming %d train rows from %d %s shard(s) over %d process(es) (%s split): %d rows per process "
            "per epoch, %d left out each epoch (other rows each epoch)",
            shards.total,
            len(shards.files),
            shards.kind,
            world,
            plan.strategy,
            plan.samples,
            plan.dropped,
        )
    data.splits["train"] = train
    data.report.setdefault("dataset", {}).setdefault("samples", {})["train"] = shards.total
    data.report["streaming"] = summary
    return train


class StreamingLoader(DataLoaderShard):
    """``DataLoaderShard`` whose length is the stream's batches (the dataset's length is its rows)."""

    def __len__(self) -> int:
        return self.dataset.num_batches


def train_dataloader(dataset: StreamingTrainSet, args: Any) -> torch.utils.data.DataLoader:
    """The stream's loader: already split by process (Accelerate must not split it again), read in the
    main process; Accelerate's ``DataLoaderShard`` moves batches to the device."""
    if args.dataloader_num_workers:
        logger.warning(
            "streaming: [training] dataloader_num_workers = %d ignored, batches are read in the main process "
            "(exact resume counts batches in one place)",
            args.dataloader_num_workers,
        )
    return StreamingLoader(
        dataset, device=args.device, batch_size=None, collate_fn=passthrough_collate, num_workers=0
    )


RESUME_KEYS = ("world_size", "batch_size", "rows_per_process", "shards", "seed", "shuffle_buffer")


class StreamingStateCallback(TrainerCallback, ExportableState):
    """Saves the stream's position in each checkpoint (``trainer_state.json``) and restores it on resume."""

    def __init__(self) -> None:
        self.position: dict[str, Any] = {}

    def state(self) -> dict:
        """What ``trainer_state.json`` keeps of this callback: the stream's position."""
        return {"args": {}, "attributes": {"position": self.position}}

    @staticmethod
    def _dataset(train_dataloader: Any) -> StreamingTrainSet | None:
        dataset = getattr(train_dataloader, "dataset", None)
        return dataset if isinstance(dataset, StreamingTrainSet) else None

    def on_step_end(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = self._dataset(train_dataloader)
        if dataset is not None:
            self.position = dataset.position(state.global_step, args.gradient_accumulation_steps)

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = self._dataset(train_dataloader)
        if dataset is None or state.global_step == 0:
            return
        here = dataset.position(state.global_step, args.gradient_accumulation_steps)
        if args.ignore_data_skip:  # the epoch restarts from its first row: no position to match
            self.position = here
            return
        saved = (state.stateful_callbacks or {}).get(type(self).__name__) or {}
        saved = (saved[0] if isinstance(saved, list) and saved else saved) or {}
        then = saved.get("attributes", {}).get("position") or {}
        changed = [k for k in RESUME_KEYS if k in then and then[k] != here[k]]
        if changed:
            raise TrainingHaltedError(
                f"resume: the checkpoint streamed with {', '.join(f'{k}={then[k]}' for k in changed)}, this run "
                f"has {', '.join(f'{k}={here[k]}' for k in changed)}: an exact streaming resume needs the same "
                "shards, processes, batch, seed and shuffle buffer (or set [training] ignore_data_skip = true)"
            )
        if then and (then.get("epoch"), then.get("batches")) != (here["epoch"], here["batches"]):
            raise TrainingHaltedError(
                f"resume: the checkpoint's stream stopped at epoch {then.get('epoch')} batch {then.get('batches')}"
                f", its step {state.global_step} says epoch {here['epoch']} batch {here['batches']} (keep "
                "gradient_accumulation_steps as it was, or set [training] ignore_data_skip = true)"
            )
        self.position = here
        dataset.resume_at(here["epoch"], here["batches"])
