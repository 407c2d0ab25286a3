"""Open the runs index: resolve its URL, tune SQLite for concurrent writers, migrate the schema, retry.

SQLite (the default, ``RUNS_ROOT/neurotrain.db``) runs in WAL mode with a busy timeout, and every
transaction starts with ``BEGIN IMMEDIATE``: writers queue for the lock instead of failing with "database
is locked" when a read transaction tries to write. Transactions are short and retried with backoff.
A newer schema is reached through alembic (``migrations/``) under a lock, so many processes opening a
new or old database at once migrate it once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError

logger = logging.getLogger(__name__)

HEAD = "0002"  # the newest migration in migrations/versions
VERSION_TABLE = "neurotrain_schema_version"  # as in migrations/env.py (optuna keeps alembic_version)
DB_NAME = "neurotrain.db"
ENV_URL = "NEUROTRAIN_DATABASE"
OFF = ("none", "off", "false")
MIGRATIONS = Path(__file__).with_name("migrations")
T = TypeVar("T")


def resolve_url(setting: str | None, runs_root: str | Path, from_config: bool = True) -> str | None:
    """``[basic] database``, else $NEUROTRAIN_DATABASE, else SQLite in the runs root; None when turned off.

    A bare path is a SQLite file. A URL with a password is refused: the config is copied into run folders.
    """
    value = (setting or os.environ.get(ENV_URL) or "").strip()
    if value.lower() in OFF:
        return None
    if not value:
        return f"sqlite:///{Path(runs_root).resolve() / DB_NAME}"
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    if setting and from_config and re.search(r"://[^/@:]*:[^/@]*@", value):
        raise ConfigError(
            "[basic] database: the URL holds a password, and the config is copied into every run folder; "
            f"set it in ${ENV_URL} or the server's password file (~/.pgpass) instead"
        )
    return value


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)


def is_contention(exc: BaseException) -> bool:
    """A lock or connection error worth retrying (never a programming or constraint error)."""
    text = str(exc).lower()
    return any(
        word in text
        for word in (
            "database is locked",
            "database is busy",
            "deadlock",
            "could not serialize",
            "connection",
        )
    )


class RunsDatabase:
    """An engine on the index with a migrated schema; ``write``/``read`` run a function in one session."""

    def __init__(self, url: str, retries: int = 12) -> None:
        from sqlalchemy import create_engine, event

        self.url = url
        self.retries = retries
        self.retried = 0  # how many transactions had to be retried (contention figures)
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
        try:
            self.migrate()
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"runs database {safe_url(url)}: {str(exc).strip().splitlines()[0]}") from None

    # --- schema ---------------------------------------------------------------------------------
    def version(self) -> str | None:
        from sqlalchemy import inspect, text

        with self.engine.connect() as conn:
            if VERSION_TABLE not in inspect(conn).get_table_names():
                return None
            return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()

    def migrate(self, target: str = HEAD) -> None:
        """Bring the schema to ``target`` (once, under a lock); a schema newer than this code is refused."""
        if self.version() == target:
            return
        with self._migration_lock() as conn:
            current = self.version()
            if current == target:
                return
            from alembic import command
            from alembic.config import Config
            from alembic.script import ScriptDirectory

            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            known = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
            if current is not None and current not in known:
                raise ConfigError(
                    f"runs database {safe_url(self.url)}: schema {current} is newer than this neurotrain "
                    f"(knows up to {HEAD}); upgrade neurotrain-hf"
                )
            config.attributes["connection"] = conn
            command.upgrade(config, target)
            conn.commit()
            logger.info("runs database %s: schema %s -> %s", safe_url(self.url), current, target)

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[Any]:
        """A connection holding the migration lock: a file lock beside SQLite, an advisory lock on PostgreSQL."""
        from sqlalchemy import text

        if self.sqlite:
            import fcntl

            path = self.url.split(":///", 1)[1] or "memory"
            with open(f"{path}.migrate.lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    with self.engine.connect() as conn:
                        yield conn
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        else:
            with self.engine.connect() as conn:
                is_pg = conn.dialect.name == "postgresql"
                if is_pg:
                    conn.execute(text("SELECT pg_advisory_lock(70721)"))
                    conn.commit()
                try:
                    yield conn
                finally:
                    if is_pg:
                        conn.rollback()
                        conn.execute(text("SELECT pg_advisory_unlock(70721)"))
                        conn.commit()

    # --- transactions ---------------------------------------------------------------------------
    def write(self, work: Callable[[Any], T]) -> T:
        """Run ``work(session)`` in one short transaction and commit; retried on lock contention."""
        return self._retry(work, commit=True)

    def read(self, work: Callable[[Any], T]) -> T:
        return self._retry(work, commit=False)

    def _retry(self, work: Callable[[Any], T], commit: bool) -> T:
        from sqlalchemy.exc import DBAPIError, OperationalError
        from sqlmodel import Session

        for attempt in range(self.retries + 1):
            try:
                with Session(self.engine, expire_on_commit=False) as session:
                    result = work(session)
                    if commit:
                        session.commit()
                    return result
            except (OperationalError, DBAPIError) as exc:
                if attempt == self.retries or not is_contention(exc):
                    raise
                self.retried += 1
                time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun below, not by pysqlite
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


_OPEN: dict[str, RunsDatabase] = {}


def open_database(url: str) -> RunsDatabase:
    """One ``RunsDatabase`` per URL and process (engines hold connection pools)."""
    if url not in _OPEN:
        _OPEN[url] = RunsDatabase(url)
    return _OPEN[url]
