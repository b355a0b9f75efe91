"""The answer side: responses, clicks and alerts; requests keep what reports need.

A request now keeps, after it is settled, the sale's time, location, employee, the locale it
was asked in and the customer's first name (never the address). Requests made before this
revision get what their decision row still knows (sale time and location id).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _request_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("sale_at", sa.DateTime(), nullable=True),
        sa.Column("location_id", sa.String(length=128), nullable=True),
        sa.Column("location_name", sa.Text(), nullable=True),
        sa.Column("employee_name", sa.Text(), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        for column in _request_columns():
            batch.add_column(column)
        batch.create_index("ix_requests_store_settled_at", ["store", "settled_at"])
    op.execute(
        "UPDATE requests SET "
        "sale_at = (SELECT d.sale_at FROM decisions d WHERE d.request_id = requests.id), "
        "location_id = (SELECT d.location_id FROM decisions d WHERE d.request_id = requests.id)"
    )
    _create_responses()
    _create_clicks()
    _create_alerts()


def _create_responses() -> None:
    op.create_table(
        "responses",
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("settle_due_at", sa.DateTime(), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_responses_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_responses")),
    )
    op.create_index("ix_responses_store_answered_at", "responses", ["store", "answered_at"])
    op.create_index("ix_responses_status_settle_due_at", "responses", ["status", "settle_due_at"])


def _create_clicks() -> None:
    op.create_table(
        "clicks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("automated", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_clicks_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clicks")),
    )
    op.create_index("ix_clicks_request_id_at", "clicks", ["request_id", "at"])


def _create_alerts() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sending_at", sa.DateTime(), nullable=True),
        sa.Column("settled_at", sa.DateTime(), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_alerts_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("kind", "request_id", name=op.f("uq_alerts_kind_request_id")),
        sa.UniqueConstraint("store", "kind", "day", name=op.f("uq_alerts_store_kind_day")),
    )
    op.create_index("ix_alerts_store_status", "alerts", ["store", "status"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("clicks")
    op.drop_table("responses")
    with op.batch_alter_table("requests") as batch:
        batch.drop_index("ix_requests_store_settled_at")
        for column in _request_columns():
            batch.drop_column(column.name)
