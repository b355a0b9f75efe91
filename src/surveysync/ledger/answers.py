"""Answers: every visit a survey email's links receive (``clicks``), and the answer they
amount to (``responses``, one row per request).

The ``clicks`` rows are the record; a ``responses`` row is what ``surveysync.answer_rules``
derives from them, written in the same short transaction as the visit that changed it. Each
visit locks its request's row first, so that concurrent visits to one email (a scanner's
pass arrives all at once) are judged one after another, on PostgreSQL as on SQLite.

A request holds at most ``MAX_VISITS`` visits: past that, visits are answered but not kept,
so one link cannot fill the ledger. Never holds an address: a request is found by its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from surveysync.answer_rules import Answer, AnswerPolicy, Outcome, Visit, VisitKind, derive
from surveysync.ledger.db import LedgerDb, upsert
from surveysync.ledger.schema import clicks, requests, responses
from surveysync.model import RequestStatus, ResponseStatus

MAX_VISITS = 500  # per request, ever: far beyond a person's few clicks and a scanner's pass


@dataclass(frozen=True, slots=True)
class SurveyRequest:
    """What the survey page needs to know about a request: never the address."""

    request_id: str
    store: str
    status: str
    sent_at: datetime | None  # when the provider took it (sent requests only)
    locale: str | None
    location_name: str | None

    @classmethod
    def from_row(cls, row: Any) -> SurveyRequest:
        sent = row.settled_at if row.status == RequestStatus.SENT else None
        return cls(row.id, row.store, row.status, sent, row.locale, row.location_name)


@dataclass(frozen=True, slots=True)
class Recorded:
    """A visit as the ledger took it."""

    request: SurveyRequest
    answer: Answer | None  # the request's answer after the visit
    outcome: Outcome | None  # None: not kept (the request's visits are full)

    @property
    def confirmed(self) -> bool:
        """This visit was a sent form that the ledger now holds as the final answer."""
        return self.outcome is Outcome.CONFIRMED


@dataclass(frozen=True, slots=True)
class VisitRow:
    kind: str
    score: int | None
    at: datetime
    outcome: str | None
    automated: bool
    comment: str | None


_REQUEST_COLUMNS = (
    requests.c.id,
    requests.c.store,
    requests.c.status,
    requests.c.settled_at,
    requests.c.locale,
    requests.c.location_name,
)


class Answers:
    def __init__(self, db: LedgerDb, store: str) -> None:
        self._db = db
        self._store = store

    def survey_request(self, request_id: str) -> SurveyRequest | None:
        """The request behind a link, if this store made it."""
        query = select(*_REQUEST_COLUMNS).where(
            requests.c.id == request_id, requests.c.store == self._store
        )
        with self._db.reading() as conn:
            row = conn.execute(query).first()
        return SurveyRequest.from_row(row) if row else None

    def record(
        self, request_id: str, visit: Visit, policy: AnswerPolicy, client: str | None
    ) -> Recorded | None:
        """Keep a score or form visit and write the answer the visits now amount to, in one
        transaction. None when this store has no such request."""
        with self._db.transaction() as conn:
            request = _locked_request(conn, request_id, self._store)
            if request is None:
                return None
            kept = conn.execute(_VISITS, {"rid": request_id}).all()
            visits = [_visit(row) for row in kept]
            if len(kept) >= MAX_VISITS:
                full = derive(visits, request.sent_at, policy, visit.at)
                return Recorded(request, full.answer, None)
            derived = derive([*visits, visit], request.sent_at, policy, visit.at)
            _insert_visit(conn, request_id, self._store, visit, client, derived.outcomes[-1])
            _update_outcomes(conn, kept, derived.outcomes)
            if derived.answer is not None:
                row = _response_row(request_id, self._store, derived.answer)
                conn.execute(_response_upsert(conn), row)
        return Recorded(request, derived.answer, derived.outcomes[-1])

    def record_side(
        self, request_id: str, visit: Visit, outcome: Outcome, client: str | None
    ) -> bool:
        """Keep a review or unsubscribe visit; False when not kept (unknown or full)."""
        with self._db.transaction() as conn:
            if _locked_request(conn, request_id, self._store) is None:
                return False
            count = conn.scalar(
                select(func.count()).select_from(clicks).where(clicks.c.request_id == request_id)
            )
            if (count or 0) >= MAX_VISITS:
                return False
            _insert_visit(conn, request_id, self._store, visit, client, outcome)
        return True

    def response(self, request_id: str) -> Answer | None:
        with self._db.reading() as conn:
            return _answer_row(conn, request_id)

    def visits(self, request_id: str) -> list[VisitRow]:
        """Every visit of a request in time order, with what it did."""
        query = (
            select(
                clicks.c.kind,
                clicks.c.score,
                clicks.c.at,
                clicks.c.outcome,
                clicks.c.automated,
                clicks.c.comment,
            )
            .where(clicks.c.request_id == request_id)
            .order_by(clicks.c.at, clicks.c.id)
        )
        with self._db.reading() as conn:
            return [VisitRow(*row) for row in conn.execute(query)]

    def settle_due(self, now: datetime) -> list[str]:
        """Provisional answers of this store whose settle window has passed become
        ``clicked``, counted from the window's end. Returns their request ids. Cheap when
        there are none; the survey page calls it every minute and the nightly run once."""
        due = (responses.c.settle_due_at.is_not(None)) & (responses.c.settle_due_at <= now)
        statement = (
            update(responses)
            .where(
                responses.c.store == self._store,
                responses.c.status == ResponseStatus.PROVISIONAL,
                due,
            )
            .values(
                status=ResponseStatus.CLICKED,
                answered_at=responses.c.settle_due_at,
                updated_at=responses.c.settle_due_at,
                settle_due_at=None,
            )
            .returning(responses.c.request_id)
        )
        with self._db.transaction() as conn:
            return sorted(conn.scalars(statement))


def _locked_request(conn: Connection, request_id: str, store: str) -> SurveyRequest | None:
    row = conn.execute(_LOCKED_REQUEST, {"rid": request_id, "store": store}).first()
    return SurveyRequest.from_row(row) if row else None


# Built once: a visit runs these in one short transaction, and building SQLAlchemy
# statements per visit cost more than running them (benchmarks/bench_web.py).
# FOR UPDATE serializes the visits of one request on PostgreSQL; SQLite's write
# transactions are serialized already (BEGIN IMMEDIATE), and it ignores the clause.
_LOCKED_REQUEST = (
    select(*_REQUEST_COLUMNS)
    .where(requests.c.id == bindparam("rid"), requests.c.store == bindparam("store"))
    .with_for_update()
)
_VISITS = (
    select(
        clicks.c.id,
        clicks.c.kind,
        clicks.c.score,
        clicks.c.comment,
        clicks.c.at,
        clicks.c.automated,
        clicks.c.outcome,
    )
    .where(clicks.c.request_id == bindparam("rid"))
    .where(clicks.c.kind.in_((VisitKind.SCORE, VisitKind.FORM)))
    .order_by(clicks.c.at, clicks.c.id)
)
_INSERT_VISIT = insert(clicks)
_UPDATE_OUTCOME = (
    update(clicks).where(clicks.c.id == bindparam("cid")).values(outcome=bindparam("new_outcome"))
)
_RESPONSE_UPSERTS: dict[str, Any] = {}


def _response_upsert(conn: Connection) -> Any:
    """INSERT … ON CONFLICT (request_id) DO UPDATE of a responses row, once per dialect."""
    dialect = conn.dialect.name
    if dialect not in _RESPONSE_UPSERTS:
        _RESPONSE_UPSERTS[dialect] = upsert(conn, responses, ["request_id"], None)
    return _RESPONSE_UPSERTS[dialect]


def _visit(row: Any) -> Visit:
    return Visit(VisitKind(row.kind), row.at, row.score, row.comment, row.automated)


def _insert_visit(
    conn: Connection,
    request_id: str,
    store: str,
    visit: Visit,
    client: str | None,
    outcome: Outcome | None,
) -> None:
    row = {
        "request_id": request_id,
        "store": store,
        "kind": visit.kind,
        "score": visit.score,
        "comment": visit.comment,
        "at": visit.at,
        "client": client,
        "automated": visit.automated,
        "outcome": outcome,
    }
    conn.execute(_INSERT_VISIT, row)


def _update_outcomes(conn: Connection, kept: Sequence[Any], outcomes: list[Outcome]) -> None:
    """Earlier visits judged anew (the first click of a pass becomes the scanner's)."""
    changed = [
        {"cid": row.id, "new_outcome": outcome}
        for row, outcome in zip(kept, outcomes, strict=False)
        if row.outcome != outcome
    ]
    if changed:
        conn.execute(_UPDATE_OUTCOME, changed)


def _answer_row(conn: Connection, request_id: str) -> Answer | None:
    row = conn.execute(select(responses).where(responses.c.request_id == request_id)).first()
    if row is None:
        return None
    return Answer(
        ResponseStatus(row.status),
        row.score,
        row.comment,
        row.first_seen_at,
        row.updated_at,
        row.settle_due_at,
        row.answered_at,
    )


def _response_row(request_id: str, store: str, answer: Answer) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "store": store,
        "score": answer.score,
        "comment": answer.comment,
        "status": answer.status,
        "first_seen_at": answer.first_seen_at,
        "updated_at": answer.updated_at,
        "settle_due_at": answer.settle_due_at,
        "answered_at": answer.answered_at,
    }
