"""The session's PostgreSQL server (tests/pg_server.py) answers SQLAlchemy on 127.0.0.1 only, and
``new_database`` gives a separate, empty database on it."""

from __future__ import annotations

import pytest

from .pg_server import new_database


@pytest.mark.requires("postgresql")
def test_server_round_trip_and_new_database(postgres_url):
    from sqlalchemy import create_engine, inspect, text

    assert postgres_url.startswith("postgresql+psycopg://neurotrain@127.0.0.1:")
    assert postgres_url.endswith("/neurotrain")
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE runs (id serial PRIMARY KEY, name text NOT NULL)"))
            conn.execute(text("INSERT INTO runs (name) VALUES (:name)"), {"name": "digits"})
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, name FROM runs")).all() == [(1, "digits")]
            assert conn.execute(text("SHOW listen_addresses")).scalar_one() == "127.0.0.1"
    finally:
        engine.dispose()

    other_url = new_database(postgres_url, "pg_server_other")
    assert other_url == postgres_url.rsplit("/", 1)[0] + "/pg_server_other"
    other = create_engine(other_url)
    try:
        assert inspect(other).get_table_names() == []
        with other.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar_one() == "pg_server_other"
    finally:
        other.dispose()
