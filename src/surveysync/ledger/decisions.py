"""Decisions: one row per sale, naming the rule that stopped it or the request it made.

A decision is final unless its reason is revisable (a sale not yet finalized is decided
again when it is read again); that is what makes re-reading a window harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, literal_column, or_, select

from surveysync.ledger.db import LedgerDb, chunks, upsert
from surveysync.ledger.schema import decisions
from surveysync.rules import REVISABLE_REASONS, SkipReason


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """What is recorded about one sale: a skip with its reason, or the request it made."""

    transaction_id: str
    sale_at: datetime
    customer_id: str | None
    person_key: str | None
    location_id: str | None
    reason: SkipReason | None
    request_id: str | None = None


class Decisions:
    def __init__(self, db: LedgerDb, store: str) -> None:
        self._db = db
        self._store = store

    def final(self, transaction_ids: Sequence[str]) -> set[str]:
        """Which of these sales already have a decision that a re-read must not change."""
        found: set[str] = set()
        revisable = [str(r) for r in REVISABLE_REASONS]
        with self._db.reading() as conn:
            for part in chunks(transaction_ids):
                query = select(decisions.c.transaction_id).where(
                    decisions.c.store == self._store,
                    decisions.c.transaction_id.in_(part),
                    decisions.c.reason.is_(None) | decisions.c.reason.not_in(revisable),
                )
                found.update(conn.scalars(query))
        return found

    def record(self, run_id: str, rows: Sequence[DecisionRow], now: datetime) -> None:
        if rows:
            with self._db.transaction() as conn:
                self.write(conn, run_id, rows, now)

    def write(
        self, conn: Connection, run_id: str, rows: Sequence[DecisionRow], now: datetime
    ) -> None:
        """Within the caller's transaction (a claim writes its decisions with its requests)."""
        if not rows:
            return
        # Spelled out as ORs of literals: an expanding IN cannot run under executemany.
        revisable = or_(
            *(decisions.c.reason == literal_column(f"'{r}'") for r in sorted(REVISABLE_REASONS))
        )
        statement = upsert(conn, decisions, ["store", "transaction_id"], None, where=revisable)
        conn.execute(statement, [self._values(run_id, row, now) for row in rows])

    def _values(self, run_id: str, row: DecisionRow, now: datetime) -> dict[str, Any]:
        return {
            "store": self._store,
            "transaction_id": row.transaction_id,
            "run_id": run_id,
            "decided_at": now,
            "sale_at": row.sale_at,
            "customer_id": row.customer_id,
            "person_key": row.person_key,
            "location_id": row.location_id,
            "reason": str(row.reason) if row.reason else None,
            "request_id": row.request_id,
        }
