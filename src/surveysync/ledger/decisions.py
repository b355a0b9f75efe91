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
from surveysync.model import SaleRef
from surveysync.rules import REVISABLE_REASONS, SkipReason


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """What is recorded about one sale and its person: a skip with its reason, or the
    request it made. Keyed by (store, transaction_id, customer id or '')."""

    transaction_id: str
    sale_at: datetime
    customer_id: str | None
    person_key: str | None
    location_id: str | None
    reason: SkipReason | None
    request_id: str | None = None
    detail: str | None = None  # more about the reason (an unreadable row's column)


class Decisions:
    def __init__(self, db: LedgerDb, store: str) -> None:
        self._db = db
        self._store = store

    def final(self, refs: Sequence[SaleRef]) -> set[SaleRef]:
        """Which of these sales already have a decision that a re-read must not change."""
        wanted = set(refs)
        found: set[SaleRef] = set()
        revisable = [str(r) for r in REVISABLE_REASONS]
        with self._db.reading() as conn:
            for part in chunks(sorted({tid for tid, _ in wanted})):
                query = select(decisions.c.transaction_id, decisions.c.customer_ref).where(
                    decisions.c.store == self._store,
                    decisions.c.transaction_id.in_(part),
                    decisions.c.reason.is_(None) | decisions.c.reason.not_in(revisable),
                )
                rows = ((str(tid), str(ref)) for tid, ref in conn.execute(query))
                found.update(ref for ref in rows if ref in wanted)
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
        key = ["store", "transaction_id", "customer_ref"]
        statement = upsert(conn, decisions, key, None, where=revisable)
        conn.execute(statement, [self._values(run_id, row, now) for row in rows])

    def _values(self, run_id: str, row: DecisionRow, now: datetime) -> dict[str, Any]:
        return {
            "store": self._store,
            "transaction_id": row.transaction_id,
            "run_id": run_id,
            "decided_at": now,
            "sale_at": row.sale_at,
            "customer_id": row.customer_id,
            "customer_ref": row.customer_id or "",
            "person_key": row.person_key,
            "location_id": row.location_id,
            "reason": str(row.reason) if row.reason else None,
            "request_id": row.request_id,
            "detail": row.detail,
        }
