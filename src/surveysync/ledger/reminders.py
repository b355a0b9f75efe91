"""Reminders on their way out, one row per survey request and kind in ``reminders``.

A reminder moves like a survey request:

    pending (address kept) -> sending (committed, with batch key and order)
                           -> sent | failed | rejected
                           -> in_doubt (a crash left it in flight and the provider honours
                              no idempotency key: never sent again)
    pending                -> cancelled (no longer possible; the reason in ``error``)

Where the address comes from: ``keep_addresses`` runs inside the transaction that settles a
survey request as sent (``Requests.settle``), copying the address into one pending row per
reminder kind the settings plan, just before the request forgets it. The address then lives
here only: it is cleared the moment the reminder is settled, held in doubt or cancelled.

Never twice:

- (request_id, kind) is unique: a survey settled twice, or by two processes, plans each kind
  once (the second insert does nothing).
- ``mark_sending`` is a compare-and-set from ``pending``, committed before the provider is
  called; ``cancel`` only cancels what is still ``pending``. Of a cancel and a send racing
  (the survey page and the nightly run), one wins.
- Only the nightly run, holding the store's instance lock, sends reminders; so a reminder
  found in ``sending`` when it starts was left by a crash (``in_flight``).

Reads what deciding needs (``read``: the survey's status, its answer, review clicks, the
person's suppressions, newer surveys to the same person) in a few queries per chunk; the
decision itself is ``surveysync.reminder_rules``. Never touches ``cooldowns``: a reminder is
contact for nobody's cooldown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, exists, func, select, update

from surveysync.ledger.db import LedgerDb, chunks, dialect_insert, new_id
from surveysync.ledger.keys import PersonKeys
from surveysync.ledger.schema import clicks, reminders, requests, responses
from surveysync.ledger.suppressions import suppressed_keys
from surveysync.model import UNSETTLED, RequestStatus, ResponseStatus
from surveysync.reminder_rules import CancelReason, ReminderFacts, ReminderKind, ReminderPlan

_ERROR_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class DueReminder:
    """A reminder waiting (or found in flight), with what deciding and rendering it need."""

    reminder_id: str
    kind: ReminderKind
    request_id: str  # the survey it follows up (its links name this request)
    email: str | None  # None once settled or cancelled
    status: RequestStatus
    batch_key: str | None  # in flight: the call it went out in
    sending_at: datetime | None  # in flight: when that call was made
    locale: str | None  # the survey's
    first_name: str | None
    location_name: str | None
    person_key: str  # for the log's person tag
    facts: ReminderFacts


@dataclass(frozen=True, slots=True)
class ReminderSettlement:
    reminder_id: str
    status: RequestStatus  # sent | failed | rejected | pending (nothing left the building)
    provider_message_id: str | None = None
    error: str | None = None


class Reminders:
    def __init__(self, db: LedgerDb, store: str, keys: PersonKeys) -> None:
        self._db = db
        self._store = store
        self._keys = keys

    # --- reading ---------------------------------------------------------------------------

    def pending_ids(self) -> list[str]:
        """Every pending reminder of this store, due first, due or not."""
        query = (
            select(reminders.c.id)
            .where(reminders.c.store == self._store, reminders.c.status == RequestStatus.PENDING)
            .order_by(reminders.c.due_at, reminders.c.id)
        )
        with self._db.reading() as conn:
            return list(conn.scalars(query))

    def in_flight(self) -> list[DueReminder]:
        """Reminders in ``sending``, in the calls and the order they were made."""
        query = (
            select(reminders.c.id)
            .where(reminders.c.store == self._store, reminders.c.status == RequestStatus.SENDING)
            .order_by(reminders.c.batch_key, reminders.c.batch_seq, reminders.c.id)
        )
        with self._db.reading() as conn:
            ids = list(conn.scalars(query))
        return self.read(ids)

    def read(self, reminder_ids: Sequence[str]) -> list[DueReminder]:
        """These reminders (of this store) with their facts as the ledger holds them now,
        in the order asked."""
        found: dict[str, DueReminder] = {}
        with self._db.reading() as conn:
            for part in chunks(list(reminder_ids)):
                found.update((r.reminder_id, r) for r in self._read(conn, part))
        return [found[rid] for rid in reminder_ids if rid in found]

    def unsettled(self) -> dict[str, int]:
        """How many reminders of this store wait, are in flight or in doubt."""
        query = (
            select(reminders.c.status, func.count())
            .where(reminders.c.store == self._store, reminders.c.status.in_(UNSETTLED))
            .group_by(reminders.c.status)
        )
        with self._db.reading() as conn:
            return {str(status): int(count) for status, count in conn.execute(query)}

    # --- moving on -------------------------------------------------------------------------

    def cancel(self, cancels: Sequence[tuple[str, CancelReason]], now: datetime) -> int:
        """Pending reminders that can no longer go out: cancelled, their address forgotten.
        Returns how many this call cancelled (one sent or cancelled meanwhile is left)."""
        if not cancels:
            return 0
        statement = (
            update(reminders)
            .where(reminders.c.id == bindparam("rid"), reminders.c.status == RequestStatus.PENDING)
            .values(
                status=RequestStatus.CANCELLED, email=None, settled_at=now, error=bindparam("why")
            )
        )
        with self._db.transaction() as conn:
            return _changed(conn, statement, [{"rid": r, "why": str(why)} for r, why in cancels])

    def mark_sending(
        self, reminder_ids: Sequence[str], now: datetime, provider: str, batch_key: str
    ) -> list[str]:
        """Committed before the provider is called: pending -> sending, with the call's key
        and each reminder's place in it. Returns the ids that moved, in the order given (one
        cancelled or taken meanwhile does not move, and must not be sent)."""
        seq = {rid: n for n, rid in enumerate(reminder_ids)}
        statement = (
            update(reminders)
            .where(reminders.c.id == bindparam("rid"), reminders.c.status == RequestStatus.PENDING)
            .values(
                status=RequestStatus.SENDING,
                sending_at=now,
                provider=provider,
                batch_key=batch_key,
                batch_seq=bindparam("seq"),
            )
            .returning(reminders.c.id)
        )
        moved: set[str] = set()
        with self._db.transaction() as conn:
            for rid, n in seq.items():  # one by one: RETURNING says which moved
                moved.update(conn.scalars(statement, {"rid": rid, "seq": n}))
        return [rid for rid in reminder_ids if rid in moved]

    def mark_in_doubt(self, reminder_ids: Sequence[str], error: str) -> int:
        """In flight, perhaps sent: never sent again, so the address is forgotten now."""
        statement = (
            update(reminders)
            .where(reminders.c.id == bindparam("rid"), reminders.c.status == RequestStatus.SENDING)
            .values(status=RequestStatus.IN_DOUBT, email=None, error=error[:_ERROR_LIMIT])
        )
        with self._db.transaction() as conn:
            return _changed(conn, statement, [{"rid": rid} for rid in reminder_ids])

    def settle(self, settlements: Sequence[ReminderSettlement], now: datetime) -> None:
        """What the provider said: sent, failed or rejected forget the address; pending (the
        provider could not take it) keeps it for the next night."""
        with self._db.transaction() as conn:
            for status in {s.status for s in settlements}:
                group = [s for s in settlements if s.status == status]
                conn.execute(_settle_statement(status, now), [_settle_params(s) for s in group])

    # --- the facts -------------------------------------------------------------------------

    def _read(self, conn: Connection, ids: Sequence[str]) -> list[DueReminder]:
        query = _FACTS.where(reminders.c.id.in_(ids), reminders.c.store == self._store)
        rows = conn.execute(query).all()
        surveys = [row.request_id for row in rows]
        clicked = set(conn.scalars(_REVIEW_CLICKS, {"rids": surveys})) if surveys else set()
        keys = {row.id: self._person_keys(row) for row in rows}
        suppressed = suppressed_keys(conn, sorted({k for ks in keys.values() for k in ks}))
        return [
            _due(row, row.request_id in clicked, any(k in suppressed for k in keys[row.id]))
            for row in rows
        ]

    def _person_keys(self, row: Any) -> list[str]:
        """Every key an unsubscribe of this person or this sale may be filed under."""
        found = [row.person_key, self._keys.transaction(row.transaction_id, row.store)]
        if row.customer_id:
            found.append(self._keys.customer(row.customer_id, row.store))
        return found


def keep_addresses(
    conn: Connection, request_ids: Sequence[str], sent_at: datetime, plan: ReminderPlan
) -> None:
    """Inside the transaction that settles these survey requests as sent, before they forget
    their address: one pending reminder per kind the plan has, holding it."""
    due = plan.due(sent_at)
    if not due:  # no reminders planned: nothing to hand over
        return
    rows: list[dict[str, Any]] = []
    for part in chunks(list(request_ids)):
        query = select(requests.c.id, requests.c.store, requests.c.email).where(
            requests.c.id.in_(part), requests.c.email.is_not(None)
        )
        for request_id, store, email in conn.execute(query):
            rows += [_pending_row(request_id, store, email, kind, at, sent_at) for kind, at in due]
    if rows:
        statement = dialect_insert(conn)(reminders).on_conflict_do_nothing(
            index_elements=["request_id", "kind"]
        )
        conn.execute(statement, rows)


def _pending_row(
    request_id: str, store: str, email: str, kind: ReminderKind, due_at: datetime, now: datetime
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "store": store,
        "request_id": request_id,
        "kind": kind,
        "status": RequestStatus.PENDING,
        "email": email,
        "due_at": due_at,
        "created_at": now,
    }


def _changed(conn: Connection, statement: Any, params: list[dict[str, Any]]) -> int:
    changed = 0
    for one in params:  # row counts of single statements: every driver reports those
        changed += conn.execute(statement, one).rowcount
    return changed


_later = requests.alias("later_survey")
# A newer survey went to the same person (any store sharing the ledger): one email about
# a visit at a time, and the older visit's reminder is dropped.
_SUPERSEDED = exists().where(
    _later.c.person_key == requests.c.person_key,
    _later.c.status == RequestStatus.SENT,
    _later.c.settled_at > requests.c.settled_at,
)
_FACTS = select(
    reminders.c.id,
    reminders.c.store,
    reminders.c.kind,
    reminders.c.request_id,
    reminders.c.email,
    reminders.c.status,
    reminders.c.due_at,
    reminders.c.batch_key,
    reminders.c.sending_at,
    requests.c.status.label("survey_status"),
    requests.c.person_key,
    requests.c.customer_id,
    requests.c.transaction_id,
    requests.c.locale,
    requests.c.first_name,
    requests.c.location_name,
    responses.c.status.label("answer"),
    responses.c.score,
    responses.c.settle_due_at,
    _SUPERSEDED.label("superseded"),
).select_from(
    reminders.join(requests, requests.c.id == reminders.c.request_id).outerjoin(
        responses, responses.c.request_id == reminders.c.request_id
    )
)
_REVIEW_CLICKS = (
    select(clicks.c.request_id)
    .where(clicks.c.kind == "review", clicks.c.request_id.in_(bindparam("rids", expanding=True)))
    .distinct()
)


def _due(row: Any, review_clicked: bool, suppressed: bool) -> DueReminder:
    kind = ReminderKind(row.kind)
    facts = ReminderFacts(
        kind=kind,
        due_at=row.due_at,
        survey_sent=row.survey_status == RequestStatus.SENT,
        answer=ResponseStatus(row.answer) if row.answer else None,
        score=row.score,
        settle_due_at=row.settle_due_at,
        review_clicked=review_clicked,
        suppressed=suppressed,
        superseded=bool(row.superseded),
    )
    return DueReminder(
        reminder_id=row.id,
        kind=kind,
        request_id=row.request_id,
        email=row.email,
        status=RequestStatus(row.status),
        batch_key=row.batch_key,
        sending_at=row.sending_at,
        locale=row.locale,
        first_name=row.first_name,
        location_name=row.location_name,
        person_key=row.person_key,
        facts=facts,
    )


def _settle_params(settlement: ReminderSettlement) -> dict[str, Any]:
    error = settlement.error or None
    return {
        "rid": settlement.reminder_id,
        "mid": settlement.provider_message_id,
        "err": error and error[:_ERROR_LIMIT],
    }


def _settle_statement(status: RequestStatus, now: datetime) -> Any:
    values: dict[str, Any] = {"status": status, "error": bindparam("err")}
    if status != RequestStatus.PENDING:  # done: the address goes
        values |= {"settled_at": now, "provider_message_id": bindparam("mid"), "email": None}
    return (
        update(reminders)
        .where(reminders.c.id == bindparam("rid"), reminders.c.status == RequestStatus.SENDING)
        .values(**values)
    )
