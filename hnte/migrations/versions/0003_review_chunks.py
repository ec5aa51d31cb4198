"""review plans and chunks: a batch review's windows shared out to several workers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_plan",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("batch_code", sa.String(length=16), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("coordinator", sa.String(length=128), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("touched_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("closed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["batch_code"], ["batch.code"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "review_chunk",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.String(length=36), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("low", sa.BigInteger(), nullable=False),
        sa.Column("high", sa.BigInteger(), nullable=False),
        sa.Column("done_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["plan_id"], ["review_plan.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("plan_id", "step", "low", name="uq_review_chunk_window"),
    )
    op.create_index(
        "ix_review_chunk_open", "review_chunk", ["plan_id", "done_at", "step", "low"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_review_chunk_open", table_name="review_chunk")
    op.drop_table("review_chunk")
    op.drop_table("review_plan")
