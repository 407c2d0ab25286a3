"""Evaluation state kept on each rank for its own shard and reduced once per evaluation, and the
Tester's per-sample outputs, written through the task's hooks.

Nothing per sample is gathered across processes: each rank updates the metric accumulators, the loss
sum and the per-sample outputs with its own batches, the samples that a distributed sampler repeats to
even out the last batch are cut off, and one ``all_gather_object`` merges the states at the end.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch

from ..metrics.registry import StreamingMetrics
from .node_folders import sees_main_folder, send_to_main


def real_count(batch_size: int, accelerator) -> int:
    """How many samples of this rank's batch are real (not the padding that evens out the last batch).

    Accelerate's batch-sampler sharding fills the last round of batches with samples from the start of
    the dataset; gathered in rank order, only the first ``remainder`` of that round are real.
    """
    state = accelerator.gradient_state
    if accelerator.num_processes == 1 or not state.end_of_dataloader or state.remainder <= 0:
        return batch_size
    return max(0, min(batch_size, state.remainder - accelerator.process_index * batch_size))


def first_n(value: Any, n: int) -> Any:
    """The first ``n`` samples of a batch value (tensor, array, list, or dict of them)."""
    if value is None:
        return value
    if isinstance(value, dict):
        return {k: first_n(v, n) for k, v in value.items()}
    return value[:n]


class EvalState:
    """Loss sum, sample count, streaming metrics and per-sample rows of one evaluation on one rank."""

    def __init__(self, metrics: StreamingMetrics | None) -> None:
        self.metrics = metrics
        if metrics is not None:
            metrics.reset()
        self.loss_sum = 0.0
        self.loss_count = 0
        self.samples = 0

    def update(self, n: int, losses: torch.Tensor | None, predictions: Any, references: Any) -> None:
        """Add the first ``n`` samples of a batch."""
        self.samples += n
        if losses is not None and n:
            self.loss_sum += float(losses[:n].float().sum())
            self.loss_count += n
        if self.metrics is not None and n and references is not None:
            self.metrics.update(first_n(predictions, n), first_n(references, n))

    def merge(self, other: EvalState) -> None:
        self.loss_sum += other.loss_sum
        self.loss_count += other.loss_count
        self.samples += other.samples
        if self.metrics is not None and other.metrics is not None:
            self.metrics.merge(other.metrics)

    def reduce(self, accelerator) -> EvalState:
        """Merge every rank's state (one collective); every rank gets the same totals."""
        if accelerator.num_processes == 1:
            return self
        states: list[Any] = [None] * accelerator.num_processes
        torch.distributed.all_gather_object(states, self)
        merged = states[0]
        for other in states[1:]:
            merged.merge(other)
        return merged

    def results(self) -> dict[str, Any]:
        """``loss`` (mean over real samples), ``num_samples`` and the metrics."""
        out: dict[str, Any] = {"num_samples": self.samples}
        if self.loss_count:
            out["loss"] = self.loss_sum / self.loss_count
        if self.metrics is not None and self.samples:
            out.update(self.metrics.compute())
        return out


@dataclass
class SampleBatch:
    """One evaluated batch as the task's output hooks see it: this rank's real samples (padding cut)."""

    indices: list[int]  # positions in the split
    predictions: Any  # the task's metric inputs (``Inference.metric_inputs``)
    references: Any
    losses: Any  # per-sample losses (tensor) or None
    inputs: dict[str, Any]  # the batch as the model saw it


@dataclass
class TestOutputs:
    """What the Tester passes to a task's output hooks for one split."""

    __test__ = False  # not a pytest test class

    split: str
    folder: Path
    rows: datasets.Dataset | None  # the split's stored columns (ids, sizes, annotations), unformatted
    config: Any  # the ExperimentConfig
    info: Any  # ``TaskData.info``
    per_sample: bool = True  # write ``<split>_per_sample.csv``
    rank: int = 0
    world_size: int = 1

    def part(self, name: str) -> Path:
        """A per-rank file this rank writes and ``finish_outputs`` merges (hidden, in ``folder``)."""
        return self.folder / f".{self.split}_{name}.rank{self.rank}"

    def parts(self, name: str) -> list[Path]:
        """Every rank's part of ``name``, in rank order."""
        return [self.folder / f".{self.split}_{name}.rank{r}" for r in range(self.world_size)]


class SampleWriter:
    """A test run's per-sample outputs: each rank writes its CSV part (the task's ``sample_records``) and
    files (``write_samples``); rank 0 merges the CSV sorted by index and runs ``finish_outputs``.

    A rank on a node without the main process's folder (no shared filesystem) writes into a staging
    folder whose files travel to the main process through the process group when the test ends."""

    def __init__(self, task: Any, out: TestOutputs, accelerator) -> None:
        self.task, self.out, self.accelerator = task, out, accelerator
        out.rank, out.world_size = accelerator.process_index, accelerator.num_processes
        out.folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.staging = out.folder, None
        if not sees_main_folder(accelerator, out.folder):
            self.staging = out.folder / f".{out.split}_outputs.rank{out.rank}"
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir(parents=True)
            out.folder = self.staging
        for stale in out.folder.glob(f".{out.split}_*.rank{out.rank}"):  # parts of an interrupted run
            if stale.is_file():
                stale.unlink()
        self.path = self.folder / f"{out.split}_per_sample.csv" if out.per_sample else None
        self.part = out.part("per_sample.csv")
        self._file = open(self.part, "w", newline="", encoding="utf-8") if self.path else None  # noqa: SIM115
        self._writer: csv.DictWriter | None = None

    def write(self, batch: SampleBatch) -> None:
        if self._file is not None:
            rows = self.task.sample_records(batch, self.out)
            if rows:
                if self._writer is None:
                    self._writer = csv.DictWriter(self._file, fieldnames=list(rows[0]))
                    self._writer.writeheader()
                self._writer.writerows(rows)
        self.task.write_samples(batch, self.out)

    def close(self) -> Path | None:
        """Finish this rank's part; on rank 0 merge the parts (index order) and finish the task's outputs."""
        if self._file is not None:
            self._file.close()
        self.accelerator.wait_for_everyone()
        if self.accelerator.num_processes > 1:
            send_to_main(self.accelerator, self.staging, self.folder)
            self.out.folder = self.folder
        if self.accelerator.process_index == 0:
            if self.path is not None:
                merge_csv_parts(self.out.parts("per_sample.csv"), self.path)
            self.task.finish_outputs(self.out)
        self.accelerator.wait_for_everyone()  # no rank starts another test run before the merge is done
        return self.path


def merge_csv_parts(parts: list[Path], path: Path) -> None:
    """The ranks' CSV parts as one CSV (sorted by ``index`` when present), written atomically; parts removed."""
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    for part in parts:
        with open(part, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = header or reader.fieldnames
            rows.extend(reader)
        os.remove(part)
    if "index" in (header or []):
        rows.sort(key=lambda row: int(row["index"]))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header or ["index"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
