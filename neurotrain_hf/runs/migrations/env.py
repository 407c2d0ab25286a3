"""alembic environment: migrations run on the connection ``RunsDatabase.migrate`` hands over (or, from the
alembic command line, on ``sqlalchemy.url``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

# not alembic's default name: optuna's studies share the database and keep their own alembic_version
VERSION_TABLE = "neurotrain_schema_version"

connection = context.config.attributes.get("connection")
if connection is None:
    with create_engine(context.config.get_main_option("sqlalchemy.url")).begin() as conn:
        context.configure(connection=conn, render_as_batch=True, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, render_as_batch=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
