"""The first index: runs, their metrics and artefacts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("task", sa.String, nullable=False, index=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("run_dir", sa.String, nullable=False, unique=True),
        sa.Column("config_toml", sa.String, nullable=False),
        sa.Column("config_hash", sa.String, nullable=False, index=True),
        sa.Column("git_commit", sa.String),
        sa.Column("status", sa.String, nullable=False, index=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("heartbeat_at", sa.DateTime),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("pid", sa.Integer),
        sa.Column("world_size", sa.Integer, nullable=False),
        sa.Column("device", sa.String, nullable=False),
    )
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
        sa.Column("split", sa.String, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
    )
    op.create_table(
        "artefacts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("sha256", sa.String, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("artefacts")
    op.drop_table("metrics")
    op.drop_table("runs")
