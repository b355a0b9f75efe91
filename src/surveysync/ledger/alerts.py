"""Alerts: the store manager's emails about detractors, one row per email in ``alerts``.

    kind       one per                         queued by
    detractor  final detractor answer          ``queue_detractors`` (web tick, nightly run)
    digest     store day with detractors       ``queue_digest`` (nightly run)

An alert moves like a survey request: ``pending -> sending -> sent | rejected | failed``;
``pending`` again, with its attempt counted, when the provider could not take it; ``in_doubt``
when a crash left it in flight and the provider honours no idempotency key.

Never twice:

- Queuing is an insert that does nothing on conflict with the unique (kind, request_id) or
  (store, kind, day): the web process and the nightly run may queue the same answer at the
  same moment, on SQLite or PostgreSQL, and one row results.
- ``claim`` is a compare-and-set from ``pending`` to ``sending`` (committed before the
  provider is called): of two processes, one wins, the other skips it.
- An alert left in ``sending`` longer than any provider call can last (``in_flight``) was
  abandoned by a crash; another process's call in progress is younger than that.

An answer is final when it is ``clicked`` or ``confirmed``, or ``provisional`` with its
settle window passed (``settle_due_at <= now``; the survey page's sweep may not have written
it yet). ``scanner`` never is. This module reads ``responses`` and ``requests``; it never
writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select, update

from surveysync.ledger.db import LedgerDb, dialect_insert, new_id
from surveysync.ledger.schema import alerts, requests, responses
from surveysync.model import RequestStatus, ResponseStatus

_ERROR_LIMIT = 2000


class AlertKind(StrEnum):
    DETRACTOR = "detractor"
    DIGEST = "digest"


@dataclass(frozen=True, slots=True)
class DueAlert:
    """An alert waiting to be sent, or found in flight."""

    alert_id: str
    kind: AlertKind
    request_id: str | None  # detractor
    day: date | None  # digest
    status: RequestStatus  # pending, or sending when found in flight
    attempts: int  # provider calls made for it so far
    # In flight: when its call was made. Pending: when it was last tried (None: never).
    sending_at: datetime | None

    @property
    def in_flight(self) -> bool:
        return self.status is RequestStatus.SENDING


@dataclass(frozen=True, slots=True)
class Detractor:
    """One answer and the sale it is about: what the manager's email says."""

    request_id: str
    score: int
    comment: str | None
    first_seen_at: datetime
    sale_at: datetime | None
    transaction_id: str
    customer_id: str | None
    first_name: str | None
    location_name: str | None
    employee_name: str | None


def final_answer(now: datetime) -> ColumnElement[bool]:
    """SQL: the answer counts as given (see the module docstring)."""
    return or_(
        responses.c.status.in_([ResponseStatus.CLICKED, ResponseStatus.CONFIRMED]),
        and_(
            responses.c.status == ResponseStatus.PROVISIONAL,
            responses.c.settle_due_at <= now,
        ),
    )


class Alerts:
    def __init__(self, db: LedgerDb, store: str) -> None:
        self._db = db
        self._store = store

    # --- queuing ---------------------------------------------------------------------------

    def queue_detractors(self, now: datetime, threshold: int, since: datetime) -> int:
        """One pending alert per final answer of ``threshold`` or lower first given since
        ``since`` that has none yet; returns how many were queued by this call."""
        known = and_(
            alerts.c.kind == AlertKind.DETRACTOR, alerts.c.request_id == responses.c.request_id
        )
        unalerted = (
            select(responses.c.request_id)
            .select_from(responses.outerjoin(alerts, known))
            .where(
                responses.c.store == self._store,
                responses.c.score <= threshold,
                responses.c.first_seen_at >= since,
                final_answer(now),
                alerts.c.id.is_(None),
            )
            .order_by(responses.c.first_seen_at)
        )
        with self._db.transaction() as conn:
            found = list(conn.execute(unalerted).scalars())
            return sum(self._insert(conn, now, request_id=rid) for rid in found)

    def queue_digest(self, day: date, now: datetime) -> bool:
        """The digest of ``day`` (a store day); False when it was queued before."""
        with self._db.transaction() as conn:
            return self._insert(conn, now, day=day)

    def last_digest_day(self) -> date | None:
        query = select(func.max(alerts.c.day)).where(
            alerts.c.store == self._store, alerts.c.kind == AlertKind.DIGEST
        )
        with self._db.reading() as conn:
            day: date | None = conn.execute(query).scalar()
        return day

    def _insert(
        self, conn: Connection, now: datetime, *, request_id: str | None = None, day: Any = None
    ) -> bool:
        row = {
            "id": new_id(),
            "store": self._store,
            "kind": AlertKind.DETRACTOR if request_id else AlertKind.DIGEST,
            "request_id": request_id,
            "day": day,
            "status": RequestStatus.PENDING,
            "attempts": 0,
            "created_at": now,
        }
        # Whoever inserts second (another process queuing the same answer or day) does
        # nothing: the unique constraints decide, not a read made before. RETURNING says
        # which insert took: psycopg reports no row count (-1) for an INSERT.
        statement = (
            dialect_insert(conn)(alerts)
            .values(**row)
            .on_conflict_do_nothing()
            .returning(alerts.c.id)
        )
        return conn.execute(statement).first() is not None

    # --- sending ---------------------------------------------------------------------------

    def pending(self) -> list[DueAlert]:
        return self._select(alerts.c.status == RequestStatus.PENDING)

    def in_flight(self, before: datetime) -> list[DueAlert]:
        """Alerts in ``sending`` since before ``before``: a crash left them there."""
        return self._select(
            and_(alerts.c.status == RequestStatus.SENDING, alerts.c.sending_at < before)
        )

    def claim(self, alert: DueAlert, now: datetime) -> bool:
        """Committed before the provider is called. A pending alert becomes ``sending`` at
        ``now``; one found in flight keeps its ``sending_at`` (its email is repeated as it
        was, under the same key). False when another process got there first."""
        statement = update(alerts).where(
            alerts.c.id == alert.alert_id,
            alerts.c.status == alert.status,
            alerts.c.attempts == alert.attempts,
        )
        if alert.in_flight:
            statement = statement.values(attempts=alert.attempts + 1)
        else:
            statement = statement.values(
                status=RequestStatus.SENDING, sending_at=now, attempts=alert.attempts + 1
            )
        with self._db.transaction() as conn:
            return bool(conn.execute(statement).rowcount)

    def settle(
        self,
        alert_id: str,
        status: RequestStatus,
        now: datetime,
        *,
        message_id: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Record what the provider said. ``pending``: nothing went out, it waits for the
        next try (``sending_at`` then says when this one was); ``in_doubt``: it may have, it
        is never sent again automatically. False when the alert was not in flight (any more)."""
        values: dict[str, Any] = {"status": status, "error": error and error[:_ERROR_LIMIT]}
        if status.settled:
            values |= {"settled_at": now, "provider_message_id": message_id}
        with self._db.transaction() as conn:
            settled = conn.execute(
                update(alerts)
                .where(alerts.c.id == alert_id, alerts.c.status == RequestStatus.SENDING)
                .values(**values)
            )
            return bool(settled.rowcount)

    def unsettled(self) -> dict[str, int]:
        """How many alerts of this store wait, are in flight or in doubt (for `status`)."""
        query = (
            select(alerts.c.status, func.count())
            .where(
                alerts.c.store == self._store,
                alerts.c.status.in_(
                    [RequestStatus.PENDING, RequestStatus.SENDING, RequestStatus.IN_DOUBT]
                ),
            )
            .group_by(alerts.c.status)
        )
        with self._db.reading() as conn:
            return {str(status): int(count) for status, count in conn.execute(query)}

    def _select(self, condition: ColumnElement[bool]) -> list[DueAlert]:
        query = (
            select(alerts)
            .where(alerts.c.store == self._store, condition)
            .order_by(alerts.c.created_at, alerts.c.id)
        )
        with self._db.reading() as conn:
            return [
                DueAlert(
                    row.id,
                    AlertKind(row.kind),
                    row.request_id,
                    row.day,
                    RequestStatus(row.status),
                    row.attempts,
                    row.sending_at,
                )
                for row in conn.execute(query)
            ]

    # --- what the emails say ---------------------------------------------------------------

    def detractor(self, request_id: str) -> Detractor | None:
        """The answer and sale behind a detractor alert, as they are now."""
        with self._db.reading() as conn:
            rows = _answers(conn, responses.c.request_id == request_id)
        return rows[0] if rows else None

    def detractors(
        self, start: datetime, end: datetime, threshold: int, now: datetime
    ) -> list[Detractor]:
        """The final answers of ``threshold`` or lower first given in [start, end)."""
        condition = and_(
            responses.c.store == self._store,
            responses.c.first_seen_at >= start,
            responses.c.first_seen_at < end,
            responses.c.score <= threshold,
            final_answer(now),
        )
        with self._db.reading() as conn:
            return _answers(conn, condition)


def _answers(conn: Connection, condition: ColumnElement[bool]) -> list[Detractor]:
    query = (
        select(
            responses.c.request_id,
            responses.c.score,
            responses.c.comment,
            responses.c.first_seen_at,
            requests.c.sale_at,
            requests.c.transaction_id,
            requests.c.customer_id,
            requests.c.first_name,
            requests.c.location_name,
            requests.c.employee_name,
        )
        .select_from(responses.join(requests, requests.c.id == responses.c.request_id))
        .where(condition, responses.c.score.is_not(None))
        .order_by(responses.c.first_seen_at, responses.c.request_id)
    )
    return [Detractor(**row._mapping) for row in conn.execute(query)]
