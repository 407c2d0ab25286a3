"""Evaluation state kept on each rank for its own shard and reduced once per evaluation.

Nothing per sample is gathered across processes: each rank updates the metric accumulators, the loss
sum and the per-sample CSV part with its own batches, the samples that a distributed sampler repeats to
even out the last batch are cut off, and one ``all_gather_object`` merges the states at the end.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import torch

from ..metrics.registry import StreamingMetrics


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


class SampleWriter:
    """Per-sample rows of a test run: each rank writes its part, rank 0 merges them sorted by index."""

    def __init__(self, path: str | Path, accelerator) -> None:
        self.path = Path(path)
        self.accelerator = accelerator
        self.rank = accelerator.process_index
        self.part = self.path.with_name(f".{self.path.stem}.rank{self.rank}.csv")
        self.part.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.part, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._writer: csv.DictWriter | None = None

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=list(rows[0]))
            self._writer.writeheader()
        self._writer.writerows(rows)

    def close(self) -> Path | None:
        """Finish this rank's part; on rank 0 merge all parts into the final CSV (index order)."""
        self._file.close()
        self.accelerator.wait_for_everyone()
        if self.rank != 0:
            return None
        parts = [
            self.path.with_name(f".{self.path.stem}.rank{r}.csv")
            for r in range(self.accelerator.num_processes)
        ]
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
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=header or ["index"])
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)
        return self.path
