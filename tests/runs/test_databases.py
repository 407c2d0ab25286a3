"""The same index on SQLite and on a real PostgreSQL server (started on 127.0.0.1 by the test session):
an index written by the first schema (alembic revision 0001) is migrated when opened and keeps its rows,
and 8 writers at once (each opening the new database, an evaluation of 10 metrics every 5 ms, heartbeats
every 20 ms) lose no row and raise no lock error."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from ..pg_server import new_database

OLD_RUN = (
    "INSERT INTO runs (task, name, run_dir, config_toml, config_hash, status, started_at, host, world_size, device) "
    "VALUES ('segmentation', 'unet-2025', '/old/runs/segmentation/unet-2025', '[basic]', 'abc', 'finished', "
    "'2025-06-01 10:00:00', 'old-host', 2, 'cuda')"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.db'}"
    request.applymarker(pytest.mark.requires("postgresql"))
    name = f"index_{request.node.name.split('[')[0][-20:]}_{int(time.time() * 1000) % 10**9}".lower()
    return new_database(request.getfixturevalue("postgres_url"), name)


def _first_schema(url: str) -> None:
    """The database an index of the first release left: alembic's revision 0001 and one run in it."""
    from alembic import command
    from alembic.config import Config

    import neurotrain_hf.runs.database as database

    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text(OLD_RUN))
        conn.execute(
            text(
                "INSERT INTO metrics (run_id, split, step, name, value) VALUES (1, 'test', 90, 'dice', 0.83)"
            )
        )
    engine.dispose()


def test_an_index_of_the_first_schema_is_migrated_and_keeps_its_runs(url, tmp_path):
    from neurotrain_hf.cli import main
    from neurotrain_hf.runs.database import HEAD, RunsDatabase
    from neurotrain_hf.runs.recorder import RunRecorder

    _first_schema(url)
    engine = create_engine(url)
    assert "params" not in inspect(engine).get_table_names()
    db = RunsDatabase(url)
    assert db.version() == HEAD
    columns = {c["name"] for c in inspect(engine).get_columns("runs")}
    assert {"study", "trial", "error"} <= columns and "params" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        old = conn.execute(text("SELECT name, status, world_size, study FROM runs WHERE id = 1")).one()
        assert tuple(old) == ("unet-2025", "finished", 2, None)
    recorder = RunRecorder(
        db, tmp_path / "new", "segmentation", {"training": {"learning_rate": 0.01}}, "", study="s"
    )
    recorder.start()
    recorder.finish("finished", report={"global_step": 5, "test": {"dice": 0.85}})
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        assert (
            main(
                [
                    "runs",
                    "--database",
                    url,
                    "list",
                    "--where",
                    "test.dice > 0.8",
                    "--sort",
                    "test.dice",
                    "--json",
                ]
            )
            == 0
        )
    import json

    assert [json.loads(line)["name"] for line in out.getvalue().splitlines()] == ["unet-2025", "new"]
    engine.dispose()
    db.close()


def test_a_schema_newer_than_the_code_is_refused_in_one_line(url):
    from neurotrain_hf.errors import ConfigError
    from neurotrain_hf.runs.database import RunsDatabase

    RunsDatabase(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE neurotrain_schema_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(ConfigError) as info:
        RunsDatabase(url)
    assert "schema 0099 is newer than this neurotrain" in str(info.value) and "\n" not in str(info.value)


def test_eight_writers_at_once_lose_no_row(url, tmp_path):
    from ..helpers.index_writer import write

    start_at = time.time() + 1.5
    began = time.time()
    with multiprocessing.get_context("fork").Pool(8) as pool:  # this process has the package imported
        retried = pool.starmap(write, [(url, str(tmp_path), i, 50, start_at) for i in range(8)])
    seconds = time.time() - began
    engine = create_engine(url)
    with engine.connect() as conn:
        runs = conn.execute(
            text("SELECT count(*), count(DISTINCT run_dir) FROM runs WHERE status = 'finished'")
        ).one()
        valid = conn.execute(text("SELECT count(*) FROM metrics WHERE split = 'valid'")).scalar()
        per_run = conn.execute(text("SELECT count(*) FROM metrics GROUP BY run_id")).scalars().all()
        params = conn.execute(text("SELECT count(*) FROM params")).scalar()
    engine.dispose()
    assert tuple(runs) == (8, 8) and valid == 8 * 50 * 10 and sorted(per_run) == [50 * 10 + 1] * 8
    assert params == 8 * 3  # basic.task, basic.run_id, training.learning_rate
    print(
        f"{url.split(':')[0]}: 8 writers x 500 metric rows in {seconds:.1f} s, retried transactions {sum(retried)}"
    )


def _opened(url: str) -> str:
    from neurotrain_hf.runs.database import RunsDatabase

    return RunsDatabase(url).version()


def test_migration_is_taken_once_when_many_processes_open_a_new_index(url):
    from neurotrain_hf.runs.database import HEAD

    with multiprocessing.get_context("fork").Pool(6) as pool:
        assert pool.map(_opened, [url] * 6) == [HEAD] * 6
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM neurotrain_schema_version")).scalar() == 1
    engine.dispose()


def test_the_sqlite_index_is_in_wal_mode(tmp_path):
    import sqlite3

    from neurotrain_hf.runs.database import RunsDatabase

    RunsDatabase(f"sqlite:///{tmp_path / 'w.db'}").close()
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert Path(tmp_path / "w.db").is_file()
