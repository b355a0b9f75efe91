"""Ledger reads for the report. Everything is summed in the database (GROUP BY), so what
comes back is one row per group (or per comment shown), never one per survey.

Which surveys and answers count (see the README's "Reports"):

- a survey belongs to the period, month or week in which it was sent: ``requests.settled_at``
  of a ``sent`` request, in the store's time zone; so the response rate is answered / sent
  for the same surveys;
- an answer counts when ``responses.status`` is ``confirmed`` or ``clicked``, or is
  ``provisional`` with ``settle_due_at <= now`` (the survey page's sweep may not have run
  yet), and it has a 0–10 score; ``provisional`` within its window and ``scanner`` passes
  are counted apart and never in the NPS.

Two statements per report, each led by an index so SQLite cannot pick a slow plan:

- sent: ``requests`` in the period, grouped, read from ``ix_requests_report_sent`` alone;
- answers: ``responses`` first seen since the period began (``ix_responses_report``),
  LEFT JOINed to their request (``ix_requests_report_lookup``). A LEFT JOIN is never
  reordered by SQLite, so this reads the answers and looks up their surveys, instead of
  looking up an answer for every survey sent; answers whose survey is outside the period
  come back as one group of their own, which is dropped.

Months and weeks are a CASE over the bucket boundaries (UTC instants computed in the store's
zone by ``period``), written as a balanced tree so a row takes log2(buckets) comparisons.
It reads the same on SQLite and PostgreSQL and is exact across daylight saving time.

This module must never write: it opens its own connection, which can only read (SQLite
``PRAGMA query_only``, PostgreSQL ``SET TRANSACTION READ ONLY``), and never migrates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    case,
    event,
    exists,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from surveysync.config import Settings
from surveysync.ledger import migrate
from surveysync.ledger.db import LedgerDb
from surveysync.ledger.schema import requests, responses
from surveysync.model import COUNTED, RequestStatus, ResponseStatus
from surveysync.report.errors import LedgerNotReady
from surveysync.report.figures import Answers, Cell, Key
from surveysync.report.nps import Tally
from surveysync.report.period import Dim, Period

# An answer is seen after its survey was sent; this much earlier still finds one whose page
# and daemon clocks disagree (they may run on different machines).
CLOCK_SLACK = timedelta(days=1)
# Per-connection read settings for SQLite, nothing stored: memory-mapped reads and a larger
# page cache halve the time of the answers' lookups on a million surveys (benchmarks/).
_SQLITE_READ_PRAGMAS = ("PRAGMA mmap_size = 268435456", "PRAGMA cache_size = -65536")


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose surveys, sent when, judged at what moment."""

    store: str
    period: Period
    now: datetime


@dataclass(frozen=True, slots=True)
class Comment:
    answered_at: datetime
    score: int
    text: str
    location_id: str | None
    location_name: str | None
    employee_name: str | None


def open_for_reading(settings: Settings) -> LedgerDb:
    """The ledger, opened so that it can only be read. Raises LedgerNotReady when there is
    none yet or it is at another schema revision than this version's."""
    url = settings.ledger.url.get_secret_value()
    _refuse_missing_sqlite_file(url)
    db = LedgerDb.open(url)
    _read_only(db.engine)
    try:
        with db.reading() as conn:
            _refuse_other_revision(conn)
    except BaseException:
        db.close()
        raise
    return db


def _refuse_missing_sqlite_file(url: str) -> None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # LedgerDb.open says so in its own words
    database = parsed.database
    on_disk = parsed.get_backend_name() == "sqlite" and database and database != ":memory:"
    if on_disk and not Path(str(database)).is_file():
        raise LedgerNotReady(
            f"no ledger at {database}: nothing to report until `surveysync sync` "
            "or the daemon has run"
        )


def _refuse_other_revision(conn: Connection) -> None:
    current, head = migrate.current_revision(conn), migrate.head_revision()
    if current != head:
        raise LedgerNotReady(
            f"the ledger is at schema revision {current or 'none'} and this surveysync reads "
            f"{head}; `surveysync check` (or the daemon's next start) migrates it"
        )


def _read_only(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _query_only(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in (*_SQLITE_READ_PRAGMAS, "PRAGMA query_only = ON"):
                cursor.execute(pragma)
            cursor.close()

    else:

        @event.listens_for(engine, "begin")
        def _read_only_transaction(conn: Connection) -> None:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")


# --- the counting rules, as SQL ---------------------------------------------------------------


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(responses.c.status == ResponseStatus.PROVISIONAL, responses.c.settle_due_at <= now)


def _scored() -> ColumnElement[bool]:
    return responses.c.score.between(0, 10)


def _counted(now: datetime) -> ColumnElement[bool]:
    return and_(or_(responses.c.status.in_(sorted(COUNTED)), _due(now)), _scored())


def _count_if(condition: ColumnElement[bool]) -> Any:
    return func.sum(case((condition, 1), else_=0))


def _answer_sums(now: datetime, scores: bool) -> list[Any]:
    counted, score = _counted(now), responses.c.score
    sums = [
        _count_if(and_(counted, score >= 9)),
        _count_if(and_(counted, score.between(7, 8))),
        _count_if(and_(counted, score <= 6)),
        _count_if(and_(responses.c.status == ResponseStatus.CONFIRMED, _scored())),
        _count_if(and_(responses.c.status == ResponseStatus.CLICKED, _scored())),
        _count_if(and_(_due(now), _scored())),
        _count_if(
            and_(
                responses.c.status == ResponseStatus.PROVISIONAL,
                or_(responses.c.settle_due_at.is_(None), responses.c.settle_due_at > now),
            )
        ),
        _count_if(responses.c.status == ResponseStatus.SCANNER),
    ]
    if scores:
        sums += [_count_if(and_(counted, score == k)) for k in range(11)]
    return sums


def _sent_in(scope: Scope) -> ColumnElement[bool]:
    return and_(
        requests.c.store == scope.store,
        requests.c.status == RequestStatus.SENT,
        requests.c.settled_at >= scope.period.start,
        requests.c.settled_at < scope.period.end,
    )


def _bucket(starts: Sequence[datetime]) -> ColumnElement[Any]:
    """The index of the bucket a send time falls in, ``starts[i] <= t < starts[i + 1]``."""

    def pick(low: int, high: int) -> ColumnElement[Any]:
        if low == high:
            return literal_column(str(low))
        middle = (low + high + 1) // 2
        return case(
            (requests.c.settled_at < starts[middle], pick(low, middle - 1)),
            else_=pick(middle, high),
        )

    return pick(0, len(starts) - 1)


def _keys(scope: Scope, dims: Sequence[Dim]) -> list[ColumnElement[Any]]:
    columns: dict[Dim, ColumnElement[Any]] = {
        Dim.LOCATION: requests.c.location_id,
        Dim.EMPLOYEE: requests.c.employee_name,
    }
    for dim in dims:
        if dim.is_time:
            columns[dim] = _bucket([b.start for b in scope.period.buckets(dim)])
    return [columns[dim] for dim in dims]


# --- the reads ------------------------------------------------------------------------------


def cells(
    conn: Connection, scope: Scope, dims: Sequence[Dim], *, scores: bool = False
) -> tuple[list[Cell], dict[str, str]]:
    """Sums per group of ``dims`` (sent, answers by category and kind, and with ``scores``
    the counted answers per score), and the locations' names by id."""
    sent, names = _sent(conn, scope, dims)
    answered = _answered(conn, scope, dims, scores)
    keys = sent.keys() | answered.keys()
    merged = [Cell(key, sent=sent.get(key, 0)) + answered.get(key, Cell(key)) for key in keys]
    return merged, names


def _sent(
    conn: Connection, scope: Scope, dims: Sequence[Dim]
) -> tuple[dict[Key, int], dict[str, str]]:
    keys = _keys(scope, dims)
    name = func.max(requests.c.location_name)
    query = select(*keys, func.count(), name).where(_sent_in(scope))
    if keys:
        query = query.group_by(*keys)
    counts: dict[Key, int] = {}
    names: dict[str, str] = {}
    at = dims.index(Dim.LOCATION) if Dim.LOCATION in dims else None
    for row in conn.execute(query):
        key, count, location_name = tuple(row[: len(dims)]), row[len(dims)], row[-1]
        counts[key] = count
        if at is not None and key[at] is not None and location_name:
            names[str(key[at])] = location_name
    return counts, names


def _answered(conn: Connection, scope: Scope, dims: Sequence[Dim], scores: bool) -> dict[Key, Cell]:
    keys = _keys(scope, dims)
    outside = requests.c.id.is_(None)
    joined = responses.outerjoin(
        requests, and_(requests.c.id == responses.c.request_id, _sent_in(scope))
    )
    query = (
        select(outside, *keys, *_answer_sums(scope.now, scores))
        .select_from(joined)
        .where(
            responses.c.store == scope.store,
            responses.c.first_seen_at >= scope.period.start - CLOCK_SLACK,
        )
        .group_by(outside, *keys)
    )
    found: dict[Key, Cell] = {}
    for row in conn.execute(query):
        if row[0]:
            continue  # answers to surveys sent outside the period
        key, sums = tuple(row[1 : 1 + len(dims)]), [int(v or 0) for v in row[1 + len(dims) :]]
        found[key] = _cell(key, sums)
    return found


def _cell(key: Key, sums: list[int]) -> Cell:
    promoters, passives, detractors, confirmed, clicked, settled, provisional, scanner = sums[:8]
    return Cell(
        key,
        tally=Tally(promoters, passives, detractors),
        answers=Answers(confirmed, clicked, settled, provisional, scanner),
        scores=tuple(sums[8:]) or (0,) * 11,
    )


def latest_comments(conn: Connection, scope: Scope, limit: int) -> list[Comment]:
    """The newest counted answers with a comment, to surveys of the period."""
    in_period = exists().where(requests.c.id == responses.c.request_id, _sent_in(scope))
    query = (
        select(
            responses.c.request_id,
            responses.c.answered_at,
            responses.c.score,
            responses.c.comment,
        )
        .where(
            responses.c.store == scope.store,
            responses.c.answered_at >= scope.period.start - CLOCK_SLACK,
            responses.c.comment.is_not(None),
            responses.c.comment != "",
            _counted(scope.now),
            in_period,
        )
        .order_by(responses.c.answered_at.desc(), responses.c.request_id)
        .limit(limit)
    )
    found = conn.execute(query).all()
    where = _whereabouts(conn, [row.request_id for row in found])
    return [
        Comment(row.answered_at, row.score, row.comment, *where.get(row.request_id, (None,) * 3))
        for row in found
    ]


def _whereabouts(
    conn: Connection, request_ids: list[str]
) -> dict[str, tuple[str | None, str | None, str | None]]:
    if not request_ids:
        return {}
    query = select(
        requests.c.id, requests.c.location_id, requests.c.location_name, requests.c.employee_name
    ).where(requests.c.id.in_(request_ids))
    return {
        row.id: (row.location_id, row.location_name, row.employee_name)
        for row in conn.execute(query)
    }
