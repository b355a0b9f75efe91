"""Indexes for `surveysync report`: a store's sent surveys counted per location, employee and
month as index ranges, and its answers with their surveys, read from indexes alone (no table
rows), so that a report over a million surveys takes seconds, not minutes, on SQLite.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_requests_report_groups",
        "requests",
        ["store", "status", "location_id", "employee_name", "settled_at", "location_name"],
    )
    op.create_index(
        "ix_requests_report_lookup",
        "requests",
        ["id", "store", "status", "settled_at", "location_id", "location_name", "employee_name"],
    )
    op.create_index(
        "ix_responses_report",
        "responses",
        ["store", "request_id", "first_seen_at", "status", "score", "settle_due_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_responses_report", table_name="responses")
    op.drop_index("ix_requests_report_lookup", table_name="requests")
    op.drop_index("ix_requests_report_groups", table_name="requests")
