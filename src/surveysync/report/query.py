"""Ledger reads for the report. Everything is summed in the database, so what comes back is
one row per group (or per comment shown), never one per survey.

Which surveys and answers count (see the README's "Reports"):

- a survey belongs to the period, month or week in which it was sent: ``requests.settled_at``
  of a ``sent`` request, in the store's time zone; so the response rate is answered / sent
  for the same surveys;
- an answer counts when ``responses.status`` is ``confirmed`` or ``clicked``, or is
  ``provisional`` with ``settle_due_at <= now`` (the survey page's sweep may not have run
  yet), and it has a 0–10 score; ``provisional`` within its window and ``scanner`` passes
  are counted apart and never in the NPS.

Two reads per report, each led by an index (SQLite plans without statistics; these
shapes leave it one good plan):

- sent: on SQLite, each (location, employee) pair of the store, read in the order of
  ``ix_requests_report_groups``, then its surveys per month or week counted as index
  ranges (SQLite sorts every row it groups, which took seconds for a million surveys);
  on PostgreSQL, one GROUP BY, which it aggregates by hashing;
- answers: the store's ``responses`` (``ix_responses_report``, in request id order, so
  that looking up their surveys walks ``ix_requests_report_lookup`` in order too) LEFT
  JOINed to their survey if it was sent in the period. A LEFT JOIN is never reordered by
  SQLite, so this reads the answers and looks up their surveys, instead of looking up an
  answer for every survey sent; answers whose survey is outside the period come back as
  one group of their own, which is dropped.

Months and weeks begin at local midnight (``period`` computes them as UTC instants in the
store's zone, so they are exact across daylight saving time). Grouping rows by them is a
CASE over those instants, written as a balanced tree so a row takes log2(buckets)
comparisons; it reads the same on SQLite and PostgreSQL.

This module must never write: it opens its own connection, which can only read (SQLite
``PRAGMA query_only``, PostgreSQL ``SET TRANSACTION READ ONLY``), and never migrates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    and_,
    case,
    column,
    event,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    values,
)

from surveysync.config import Settings
from surveysync.ledger import migrate
from surveysync.ledger.db import LedgerDb
from surveysync.ledger.schema import UtcDateTime, requests, responses
from surveysync.model import COUNTED, RequestStatus, ResponseStatus
from surveysync.report.errors import LedgerNotReady
from surveysync.report.figures import Answers, Cell, Key
from surveysync.report.nps import tally_of
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
    db = LedgerDb.open(settings.ledger.url.get_secret_value(), existing=True)
    _read_only(db.engine)
    try:
        with db.reading() as conn:
            _refuse_other_revision(conn)
    except BaseException:
        db.close()
        raise
    return db


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


def _kinds(now: datetime) -> list[Any]:
    """Per group and score: confirmed, clicked, settled (provisional past its window),
    provisional (window open) and scanner answers."""
    status, due_at = responses.c.status, responses.c.settle_due_at
    return [
        _count_if(status == ResponseStatus.CONFIRMED),
        _count_if(status == ResponseStatus.CLICKED),
        _count_if(_due(now)),
        _count_if(and_(status == ResponseStatus.PROVISIONAL, or_(due_at.is_(None), due_at > now))),
        _count_if(status == ResponseStatus.SCANNER),
    ]


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


def cells(conn: Connection, scope: Scope, dims: Sequence[Dim]) -> tuple[list[Cell], dict[str, str]]:
    """Sums per group of ``dims`` (sent, answers by category, kind and score), and the
    locations' names by id."""
    sent, names = _sent(conn, scope, dims)
    answered = _answered(conn, scope, dims)
    keys = sent.keys() | answered.keys()
    merged = [Cell(key, sent=sent.get(key, 0)) + answered.get(key, Cell(key)) for key in keys]
    return merged, names


def _sent(
    conn: Connection, scope: Scope, dims: Sequence[Dim]
) -> tuple[dict[Key, int], dict[str, str]]:
    if conn.dialect.name == "sqlite":
        return _sent_by_ranges(conn, scope, dims)
    return _sent_grouped(conn, scope, dims)


def _sent_grouped(
    conn: Connection, scope: Scope, dims: Sequence[Dim]
) -> tuple[dict[Key, int], dict[str, str]]:
    """Sent surveys per group: one GROUP BY (PostgreSQL aggregates it by hashing)."""
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


def _sent_by_ranges(
    conn: Connection, scope: Scope, dims: Sequence[Dim]
) -> tuple[dict[Key, int], dict[str, str]]:
    """Sent surveys per group, for SQLite, which sorts every row it groups (no hash
    aggregate): a million surveys took seconds to sort. Instead, each (location, employee)
    pair is read once in index order, and its surveys per month or week are counted as
    ranges of ``ix_requests_report_groups``: index seeks, no sort. Then summed to ``dims``."""
    pairs = (
        select(
            requests.c.location_id,
            requests.c.employee_name,
            func.max(requests.c.location_name).label("location_name"),
        )
        .where(requests.c.store == scope.store, requests.c.status == RequestStatus.SENT)
        .group_by(requests.c.location_id, requests.c.employee_name)
        .subquery("pairs")
    )
    ranges = _ranges(scope, next((d for d in dims if d.is_time), None))
    same = requests.alias("same")
    count = (
        select(func.count())
        .where(
            same.c.store == scope.store,
            same.c.status == RequestStatus.SENT,
            same.c.location_id.is_not_distinct_from(pairs.c.location_id),
            same.c.employee_name.is_not_distinct_from(pairs.c.employee_name),
            same.c.settled_at >= ranges.c.since,
            same.c.settled_at < ranges.c.until,
        )
        .scalar_subquery()
    )
    query = select(
        pairs.c.location_id, pairs.c.employee_name, pairs.c.location_name, ranges.c.bucket, count
    ).select_from(pairs.join(ranges, true()))
    counts: dict[Key, int] = {}
    names: dict[str, str] = {}
    for location, employee, location_name, bucket, sent in conn.execute(query):
        if location is not None and location_name:
            names[str(location)] = location_name
        if sent:
            key = _project((location, employee, bucket), dims)
            counts[key] = counts.get(key, 0) + sent
    return counts, names


def _ranges(scope: Scope, dim: Dim | None) -> Any:
    """The period's months or weeks (or the whole period) as rows (bucket, since, until)."""
    starts = [b.start for b in scope.period.buckets(dim)] if dim else [scope.period.start]
    ends = [*starts[1:], scope.period.end]
    rows = list(zip(range(len(starts)), starts, ends, strict=True))
    columns = (
        column("bucket", Integer),
        column("since", UtcDateTime()),
        column("until", UtcDateTime()),
    )
    # A WITH clause: SQLite cannot name the columns of (VALUES ...) AS ranges (a, b, c).
    return values(*columns, name="ranges").data(rows).cte("ranges")


def _project(full: Key, dims: Sequence[Dim]) -> Key:
    """(location, employee, bucket) -> the key of ``dims``."""
    position = {Dim.LOCATION: 0, Dim.EMPLOYEE: 1}
    return tuple(full[position.get(dim, 2)] for dim in dims)


def _answered(conn: Connection, scope: Scope, dims: Sequence[Dim]) -> dict[Key, Cell]:
    keys = _keys(scope, dims)
    outside = requests.c.id.is_(None)
    score = responses.c.score
    joined = responses.outerjoin(
        requests, and_(requests.c.id == responses.c.request_id, _sent_in(scope))
    )
    query = (
        select(outside, *keys, score, *_kinds(scope.now))
        .select_from(joined)
        .where(
            responses.c.store == scope.store,
            responses.c.first_seen_at >= scope.period.start - CLOCK_SLACK,
        )
        .group_by(outside, *keys, score)
    )
    found: dict[Key, Cell] = {}
    for row in conn.execute(query):
        if row[0]:
            continue  # answers to surveys sent outside the period
        key = tuple(row[1 : 1 + len(dims)])
        cell = _cell(key, row[1 + len(dims)], [int(n or 0) for n in row[2 + len(dims) :]])
        found[key] = found[key] + cell if key in found else cell
    return found


def _cell(key: Key, score: int | None, kinds: list[int]) -> Cell:
    """The answers of one group with one score; without a 0-10 score none is counted."""
    confirmed, clicked, settled, provisional, scanner = kinds
    if score is None or not 0 <= score <= 10:
        return Cell(key, answers=Answers(provisional=provisional, scanner=scanner))
    counted = confirmed + clicked + settled
    per_score = [0] * 11
    per_score[score] = counted
    return Cell(
        key,
        tally=tally_of(per_score),
        answers=Answers(confirmed, clicked, settled, provisional, scanner),
        scores=tuple(per_score),
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
