"""Decisions: one row per sale, naming the rule that stopped it or the request it made.

A decision is final unless its reason is revisable (a sale not yet finalized is decided
again when it is read again); that is what makes re-reading a window harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from surveysync.ledger.db import LedgerDb, chunks
from surveysync.ledger.driver_sql import placeholder, placeholders, quoted, run_many, time_writer
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


_ANALYSE_FROM = 5_000  # decision rows written by this process before PostgreSQL's first
SYNC_TABLES = ("decisions", "requests", "cooldowns")  # what a sync fills, a row per sale or ask


class Decisions:
    def __init__(self, db: LedgerDb, store: str) -> None:
        self._db = db
        self._store = store
        self._written = 0  # decision rows this process wrote
        self._analyse_at = _ANALYSE_FROM

    def final(self, refs: Sequence[SaleRef]) -> set[SaleRef]:
        """Which of these sales already have a decision that a re-read must not change."""
        wanted = set(refs)
        found: set[SaleRef] = set()
        self._keep_statistics()
        with self._db.reading() as conn:
            for part in chunks(sorted({tid for tid, _ in wanted})):
                sql = (
                    "SELECT transaction_id, customer_ref FROM decisions WHERE store = "
                    f"{placeholder(conn)} AND transaction_id IN ({placeholders(conn, len(part))})"
                    f" AND (reason IS NULL OR reason NOT IN ({quoted(REVISABLE_REASONS)}))"
                )
                rows = conn.exec_driver_sql(sql, (self._store, *part))
                found.update(ref for tid, cref in rows if (ref := (str(tid), str(cref))) in wanted)
        return found

    def _keep_statistics(self) -> None:
        """On PostgreSQL, ANALYZE the tables a sync fills each time this process has doubled
        the decisions it wrote. A long first run fills them faster than autovacuum's next
        look, and a plan made while they were small is kept: psycopg prepares a statement run
        five times, and PostgreSQL keeps its generic plan until the tables' statistics change.
        Seen on a 100k-sale run: ``final`` scanning the store's every decision through another
        index (7 times SQLite's time), and the cooldown lookup scanning all of ``cooldowns``
        and ``requests`` for each chunk of 500 (up to 7 times). SQLite plans by its indexes."""
        if self._written < self._analyse_at or self._db.engine.dialect.name != "postgresql":
            return
        self._analyse_at = 2 * self._written
        with self._db.transaction() as conn:
            conn.exec_driver_sql(f"ANALYZE {', '.join(SYNC_TABLES)}")

    def record(self, run_id: str, rows: Sequence[DecisionRow], now: datetime) -> None:
        if rows:
            with self._db.transaction() as conn:
                self.write(conn, run_id, rows, now)

    def write(
        self, conn: Connection, run_id: str, rows: Sequence[DecisionRow], now: datetime
    ) -> None:
        """Within the caller's transaction (a claim writes its decisions with its requests).
        A decision already there is replaced only while its reason is revisable."""
        if not rows:
            return
        stored = time_writer(conn)
        decided_at, store = stored(now), self._store
        values = [
            (
                store,
                row.transaction_id,
                run_id,
                decided_at,
                stored(row.sale_at),
                row.customer_id,
                row.customer_id or "",
                row.person_key,
                row.location_id,
                None if row.reason is None else str(row.reason),
                row.request_id,
                row.detail,
            )
            for row in rows
        ]
        run_many(conn, _upsert_sql(conn), values)
        self._written += len(values)


_COLUMNS = (
    "store",
    "transaction_id",
    "run_id",
    "decided_at",
    "sale_at",
    "customer_id",
    "customer_ref",
    "person_key",
    "location_id",
    "reason",
    "request_id",
    "detail",
)
_KEY = ("store", "transaction_id", "customer_ref")


def _upsert_sql(conn: Connection) -> str:
    changes = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in _KEY)
    return (
        f"INSERT INTO decisions ({', '.join(_COLUMNS)}) "
        f"VALUES ({placeholders(conn, len(_COLUMNS))}) "
        f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {changes} "
        f"WHERE decisions.reason IN ({quoted(REVISABLE_REASONS)})"
    )
