"""Queryable config values (params), tuning studies and trials, and the error line of a failed run.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("error", sa.String))
        batch.add_column(sa.Column("study", sa.String))
        batch.add_column(sa.Column("trial", sa.Integer))
        batch.create_index("ix_runs_study", ["study"])
    op.create_table(
        "params",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
        sa.Column("key", sa.String, nullable=False),
        sa.Column("value", sa.String, nullable=False),
        sa.Column("number", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("params")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_study")
        batch.drop_column("trial")
        batch.drop_column("study")
        batch.drop_column("error")
