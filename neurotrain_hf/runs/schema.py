"""The index's tables (SQLModel): runs, their flattened config (params), metrics and artefacts.

The schema is versioned by alembic (``migrations/``): a change here needs a new revision there.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

STATUSES = ("running", "finished", "failed", "halted", "crashed", "pruned")


class Run(SQLModel, table=True):
    """One training run (or tuning trial): where it is, what it ran, how it ended."""

    __tablename__ = "runs"

    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(index=True)
    name: str = Field(description="[basic] run_id")
    run_dir: str = Field(unique=True, description="absolute run folder")
    config_toml: str
    config_hash: str = Field(index=True, description="sha256 of config_toml")
    git_commit: str | None = None
    status: str = Field(index=True)
    error: str | None = None
    started_at: datetime
    ended_at: datetime | None = None
    heartbeat_at: datetime | None = None
    host: str = ""
    pid: int | None = None
    world_size: int = 1
    device: str = ""
    study: str | None = Field(default=None, index=True)
    trial: int | None = None


class Param(SQLModel, table=True):
    """A resolved config value, ``section.key`` -> text (and number when it is one), for queries."""

    __tablename__ = "params"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True)
    key: str
    value: str
    number: float | None = None


class Metric(SQLModel, table=True):
    """One value of one metric at one step of one split (train, valid, test)."""

    __tablename__ = "metrics"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True)
    split: str
    step: int
    name: str
    value: float


class Artefact(SQLModel, table=True):
    """A file the run wrote (model weights, plots, reports), with its digest."""

    __tablename__ = "artefacts"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True)
    path: str
    kind: str
    sha256: str
    size: int
