"""Each trial of a study as a run: its own folder ``<study folder>/trial-N`` (config.toml, history) and row
in the runs index, linked to the study by name and trial number."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger(__name__)
TRIAL_STATUS = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "crashed"}


def trial_name(trial) -> str:
    return f"trial-{trial.number}"


def trial_number(name: str | None) -> int | None:
    return int(name.rsplit("-", 1)[1]) if name and name.startswith("trial-") else None


class TrialRecorder(TrainerCallback):
    """Main process: at a trial's start writes its config.toml and opens its index row; feeds it each
    evaluation; ``finish`` closes it with the trial's state once optuna has one."""

    def __init__(self, study_dir: Path, study: str, trial_config, database_url: str | None) -> None:
        self.study_dir, self.study = study_dir, study
        self.trial_config = trial_config  # trial params -> config dict of that trial
        self.url = database_url
        self.recorder = None
        self.number: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from ..config.io import dumps_config
        from ..runs.recorder import RunRecorder

        self.number = trial_number(state.trial_name)
        folder = self.study_dir / (state.trial_name or "trial")
        folder.mkdir(parents=True, exist_ok=True)
        config = self.trial_config(state.trial_params or {}, self.number)
        text = dumps_config(config, "toml")
        (folder / "config.toml").write_text(text, encoding="utf-8")
        self.recorder = None
        if self.url:
            import tomllib

            from ..runs.database import open_database

            try:
                self.recorder = RunRecorder(
                    open_database(self.url),
                    folder,
                    config["basic"]["task"],
                    tomllib.loads(text),
                    text,
                    study=self.study,
                    trial=self.number,
                )
                self.recorder.start(args.world_size, str(args.device))
            except Exception as exc:  # the study goes on without its index rows
                logger.warning("trial %s: not indexed (%s)", self.number, exc)
                self.recorder = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.recorder is not None and state.is_world_process_zero and metrics:
            from ..runs.recorder import metric_values

            evaluation = {k: v for k, v in metrics.items() if k.startswith("eval_")}
            self.recorder.log_metrics("valid", state.global_step, metric_values(evaluation, "eval_"))

    def finish(self, status: str, error: str | None = None) -> None:
        """Close the trial's row (its artefacts too) with the status the search loop worked out."""
        if self.recorder is not None:
            self.recorder.finish(status, report={}, error=error)
            self.recorder = None
