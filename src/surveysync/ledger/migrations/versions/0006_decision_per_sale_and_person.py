"""A decision is about one sale *and* one person: the key becomes (store, transaction_id,
customer_ref), so that two POS rows sharing a transaction id for two customers are decided
each on its own; ``detail`` says more about a reason (the column of an ``unreadable_row``).

``customer_ref`` is the POS customer id, or '' for a sale without a customer: a unique key
cannot hold NULL (NULLs never collide, so re-reading a walk-in would add a row each time).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(
            sa.Column("customer_ref", sa.String(length=128), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("detail", sa.String(length=255), nullable=True))
    op.execute("UPDATE decisions SET customer_ref = COALESCE(customer_id, '')")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_constraint("uq_decisions_store_transaction_id", type_="unique")
        batch.create_unique_constraint(
            "uq_decisions_store_transaction_id_customer_ref",
            ["store", "transaction_id", "customer_ref"],
        )


def downgrade() -> None:
    # Two decisions of one transaction cannot share the old key: keep the request's, if any.
    op.execute(
        "DELETE FROM decisions WHERE id NOT IN (SELECT MIN(id) FROM decisions "
        "GROUP BY store, transaction_id)"
    )
    with op.batch_alter_table("decisions") as batch:
        batch.drop_constraint("uq_decisions_store_transaction_id_customer_ref", type_="unique")
        batch.create_unique_constraint(
            "uq_decisions_store_transaction_id", ["store", "transaction_id"]
        )
        batch.drop_column("detail")
        batch.drop_column("customer_ref")
