"""Reminders: the review reminder and the optional reminder to people who did not answer.

One row per survey request and kind (unique), holding the address only while the reminder
may still go out.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reminders",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("batch_key", sa.String(length=64), nullable=True),
        sa.Column("batch_seq", sa.Integer(), nullable=True),
        sa.Column("sending_at", sa.DateTime(), nullable=True),
        sa.Column("settled_at", sa.DateTime(), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_reminders_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminders")),
        sa.UniqueConstraint("request_id", "kind", name=op.f("uq_reminders_request_id_kind")),
    )
    op.create_index(
        "ix_reminders_store_status_due_at", "reminders", ["store", "status", "due_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_reminders_store_status_due_at", table_name="reminders")
    op.drop_table("reminders")
