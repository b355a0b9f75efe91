"""Requests remember the provider batch they went out in, so that a batch left in flight by
a crash is sent again as the same batch, under the same idempotency key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("batch_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("batch_key")
