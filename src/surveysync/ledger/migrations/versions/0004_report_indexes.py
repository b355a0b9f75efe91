"""Indexes for `surveysync report`: a period's sent surveys counted by location and employee,
and its answers with their surveys, read from indexes alone (no table rows), so a report
over a million surveys stays within seconds on SQLite.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GROUPS = ["location_id", "location_name", "employee_name"]


def upgrade() -> None:
    op.create_index(
        "ix_requests_report_sent", "requests", ["store", "status", "settled_at", *_GROUPS]
    )
    op.create_index(
        "ix_requests_report_lookup",
        "requests",
        ["id", "store", "status", "settled_at", *_GROUPS],
    )
    op.create_index(
        "ix_responses_report",
        "responses",
        ["store", "first_seen_at", "request_id", "status", "score", "settle_due_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_responses_report", table_name="responses")
    op.drop_index("ix_requests_report_lookup", table_name="requests")
    op.drop_index("ix_requests_report_sent", table_name="requests")
