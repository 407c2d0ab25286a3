"""The runner's side of the index: open it for a config, start the run's row, end it with a status."""

from __future__ import annotations

import logging
from typing import Any

import tomllib

from ..errors import TrainingHaltedError, first_line

logger = logging.getLogger(__name__)


def run_status(exc: BaseException) -> str:
    """How a run that raised ended: a guard's deliberate stop (non-finite loss) is halted, anything else failed."""
    return "halted" if isinstance(exc, TrainingHaltedError) else "failed"


class LiveRecord:
    """Holds the run's recorder once the main process has started it; every method is a no-op otherwise."""

    def __init__(self, study: str | None = None, trial: int | None = None) -> None:
        self.recorder = None
        self.study, self.trial = study, trial

    def start(self, config, trainer) -> None:
        """Main process: open the configured database and insert the run (a failure is one warning)."""
        from ..config.io import dumps_config
        from .database import open_database, resolve_url, safe_url
        from .recorder import RecorderCallback, RunRecorder, mark_crashed

        url = resolve_url(config.basic.database, config.basic.output_dir)
        if url is None:
            return
        try:
            db = open_database(url)
            mark_crashed(db)  # runs whose process died since the index was last opened
        except Exception as exc:
            logger.warning("runs database %s: %s; the run is not indexed", safe_url(url), first_line(exc))
            return
        text = dumps_config(config.to_dict(), "toml")
        self.recorder = RunRecorder(
            db,
            config.run_dir,
            config.basic.task,
            tomllib.loads(text),
            text,
            study=self.study,
            trial=self.trial,
        )
        self.recorder.start(trainer.accelerator.num_processes, device_name(trainer.args.device))
        trainer.add_callback(RecorderCallback(self.recorder))

    def finish(self, status: str, report: dict[str, Any] | None = None, error: str | None = None) -> None:
        if self.recorder is not None:
            self.recorder.finish(status, report=report, error=error)
            self.recorder = None

    def failed(self, exc: BaseException) -> None:
        self.finish(run_status(exc), error=first_line(exc) if str(exc).strip() else type(exc).__name__)


def device_name(device) -> str:
    import torch

    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return str(getattr(device, "type", device))
