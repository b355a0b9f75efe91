"""Suppressions: people never to ask (by email key or customer key) and transactions never to
ask about. Shared by every store on the ledger: one unsubscribe holds everywhere.

Keys carry their kind in their prefix (``e:``, ``c:``, ``t:``); only the masked address is
kept for display, never the address itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import structlog
from sqlalchemy import Connection, delete, insert, select

from surveysync.ledger.db import LedgerDb, chunks, upsert
from surveysync.ledger.driver_sql import placeholders, quoted
from surveysync.ledger.keys import PersonKeys, mask_email
from surveysync.ledger.schema import requests, suppressions
from surveysync.rules import normalize_email

log = structlog.get_logger("surveysync.ledger")

SUPPRESSION_KINDS = ("email", "customer", "transaction")


def suppressed_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """Which of these keys are suppressed, within the caller's transaction."""
    found: set[str] = set()
    for part in chunks(keys):
        sql = (
            f"SELECT key FROM suppressions WHERE kind IN ({quoted(SUPPRESSION_KINDS)}) "
            f"AND key IN ({placeholders(conn, len(part))})"
        )
        found.update(key for (key,) in conn.exec_driver_sql(sql, tuple(part)))
    return found


class Suppressions:
    def __init__(self, db: LedgerDb) -> None:
        self._db = db

    def add(
        self, kind: str, key: str, display: str, source: str, reason: str | None, now: datetime
    ) -> bool:
        """True when new; adding one that exists changes nothing."""
        row = {
            "kind": kind,
            "key": key,
            "display": display,
            "source": source,
            "reason": reason,
            "created_at": now,
        }
        with self._db.transaction() as conn:
            statement = upsert(conn, suppressions, ["kind", "key"], row, update=False)
            # RETURNING, not rowcount: psycopg reports -1 for every INSERT ... ON CONFLICT.
            added = conn.execute(statement.returning(suppressions.c.id)).first() is not None
        log.info(
            "suppression.added" if added else "suppression.exists",
            kind=kind,
            who=display,
            source=source,
            reason=reason,
        )
        return added

    def add_emails(
        self, rows: Sequence[tuple[str, str, str | None]], source: str, now: datetime
    ) -> int:
        """Email suppressions (key, masked display, reason) in bulk; returns how many are new."""
        if not rows:
            return 0
        with self._db.transaction() as conn:
            known = suppressed_keys(conn, [key for key, _, _ in rows])
            fresh = {key: (display, reason) for key, display, reason in rows if key not in known}
            if fresh:
                log.info("suppressions.added", count=len(fresh), source=source)
                conn.execute(
                    insert(suppressions),
                    [
                        _email_row(key, display, source, reason, now)
                        for key, (display, reason) in fresh.items()
                    ],
                )
            return len(fresh)

    def remove(self, kind: str, key: str) -> bool:
        with self._db.transaction() as conn:
            result = conn.execute(
                delete(suppressions)
                .where(suppressions.c.kind == kind, suppressions.c.key == key)
                .returning(suppressions.c.display)
            )
            removed = result.first()
        if removed is not None:
            log.info("suppression.removed", kind=kind, who=removed[0])
        return removed is not None

    def all(self, *, show_addresses: bool = False) -> list[dict[str, Any]]:
        """Every suppression, oldest first, shown masked; ``show_addresses`` shows instead the
        address the ledger still holds for an email suppression (only while one of that
        person's requests is unsettled: the ledger keeps none longer)."""
        with self._db.reading() as conn:
            rows = conn.execute(select(suppressions).order_by(suppressions.c.created_at))
            found = [dict(row) for row in rows.mappings()]
            if show_addresses:
                held = _held_addresses(conn, [r["key"] for r in found if r["kind"] == "email"])
                for row in found:
                    row["display"] = held.get(row["key"], row["display"])
        return found


def _held_addresses(conn: Connection, keys: Sequence[str]) -> dict[str, str]:
    held: dict[str, str] = {}
    for part in chunks(keys):
        query = select(requests.c.person_key, requests.c.email).where(
            requests.c.person_key.in_(part), requests.c.email.is_not(None)
        )
        held.update({key: address for key, address in conn.execute(query)})
    return held


def _email_row(
    key: str, display: str, source: str, reason: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "kind": "email",
        "key": key,
        "display": display,
        "source": source,
        "reason": reason and reason[:200],
        "created_at": now,
    }


class SuppressionTarget(NamedTuple):
    """Whom a suppression is about: its kind, its key and how it is shown (never an address)."""

    kind: str
    key: str
    display: str


def suppression_target(
    keys: PersonKeys,
    email: str | None = None,
    customer_id: str | None = None,
    transaction_id: str | None = None,
) -> SuppressionTarget:
    """The target for exactly one of an email (raises InvalidEmail), a customer id or a
    transaction id."""
    if email is not None:
        normalized = normalize_email(email)
        return SuppressionTarget("email", keys.email(normalized), mask_email(normalized))
    if customer_id is not None:
        return SuppressionTarget("customer", keys.customer(customer_id), f"customer {customer_id}")
    if transaction_id is None:
        raise ValueError("an email, a customer id or a transaction id is needed")
    display = f"transaction {transaction_id}"
    return SuppressionTarget("transaction", keys.transaction(transaction_id), display)
