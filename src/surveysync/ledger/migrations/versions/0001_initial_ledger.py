"""Initial ledger: runs, coverage, decisions, requests, cooldowns, suppressions, install.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 13:36:41.727081
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _create_cooldowns()
    _create_install()
    _create_runs()
    _create_suppressions()
    _create_coverage()
    _create_decisions()
    _create_requests()


def _create_cooldowns() -> None:
    op.create_table(
        "cooldowns",
        sa.Column("person_key", sa.String(length=200), nullable=False),
        sa.Column("last_request_at", sa.DateTime(), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("prev_request_at", sa.DateTime(), nullable=True),
        sa.Column("prev_request_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("person_key", name=op.f("pk_cooldowns")),
    )


def _create_install() -> None:
    op.create_table(
        "install",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_install")),
    )


def _create_runs() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("window_start", sa.DateTime(), nullable=True),
        sa.Column("window_end", sa.DateTime(), nullable=True),
        sa.Column("counts", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_runs_store_started_at"), ["store", "started_at"], unique=False
        )


def _create_suppressions() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("display", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("kind", "key", name=op.f("uq_suppressions_kind_key")),
    )


def _create_coverage() -> None:
    op.create_table(
        "coverage",
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("covered_until", sa.DateTime(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_coverage_run_id_runs")),
        sa.PrimaryKeyConstraint("store", "day", name=op.f("pk_coverage")),
    )


def _create_decisions() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.Column("sale_at", sa.DateTime(), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=True),
        sa.Column("person_key", sa.String(length=80), nullable=True),
        sa.Column("location_id", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_decisions_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint(
            "store", "transaction_id", name=op.f("uq_decisions_store_transaction_id")
        ),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decisions_person_key"), ["person_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_decisions_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_decisions_store_customer_id"), ["store", "customer_id"], unique=False
        )


def _create_requests() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("person_key", sa.String(length=80), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("email_masked", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sending_at", sa.DateTime(), nullable=True),
        sa.Column("settled_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_requests_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requests")),
    )
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_requests_person_key"), ["person_key"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_requests_store_status"), ["store", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requests_store_status"))
        batch_op.drop_index(batch_op.f("ix_requests_person_key"))

    op.drop_table("requests")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_store_customer_id"))
        batch_op.drop_index(batch_op.f("ix_decisions_run_id"))
        batch_op.drop_index(batch_op.f("ix_decisions_person_key"))

    op.drop_table("decisions")
    op.drop_table("coverage")
    op.drop_table("suppressions")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_store_started_at"))

    op.drop_table("runs")
    op.drop_table("install")
    op.drop_table("cooldowns")
