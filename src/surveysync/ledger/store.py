"""The ledger: surveysync's own database and the only place its state lives.

Writes are short transactions that each move state one step on proof: decisions in
chunks; a claim (cooldown compare-and-set + pending request + decision) in one
transaction; ``sending`` committed before a provider is called; settlement after; a
day marked covered only when all of it is decided and settled.

A dry run opens the ledger ``pinned``: every transaction becomes a savepoint inside one
outer transaction that is rolled back on close, so it computes exactly what a real run
would and leaves nothing behind.

Error tree::

    LedgerError            the ledger database cannot be used (unreachable, too new, corrupt)
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from surveysync.errors import first_line
from surveysync.ledger import migrate
from surveysync.ledger.keys import PersonKeys
from surveysync.ledger.schema import (
    cooldowns,
    coverage,
    decisions,
    install,
    requests,
    runs,
    suppressions,
)
from surveysync.model import RequestStatus
from surveysync.rules import REVISABLE_REASONS, SkipReason

# A request's status: one vocabulary for the ledger, the providers and the reports.
PENDING, SENDING, SENT, FAILED, REJECTED, IN_DOUBT = (
    RequestStatus.PENDING,
    RequestStatus.SENDING,
    RequestStatus.SENT,
    RequestStatus.FAILED,
    RequestStatus.REJECTED,
    RequestStatus.IN_DOUBT,
)
SUPPRESSION_KINDS = ("email", "customer", "transaction")
_SECRET_NAME = "person_key_secret"
_MIGRATION_LOCK_ID = 0x5375_7276_6579  # "Survey": any constant shared by every surveysync
_IN_CHUNK = 500  # bound for IN (...) lists, well under every driver's parameter limit


class LedgerError(Exception):
    """The ledger database cannot be used."""


@dataclass(frozen=True, slots=True)
class CooldownRow:
    """The request that started a person key's cooldown."""

    last_request_at: datetime
    request_id: str
    run_id: str | None  # None only if the request row is gone


@dataclass(frozen=True, slots=True)
class SkipRow:
    transaction_id: str
    sale_at: datetime
    customer_id: str | None
    person_key: str | None
    location_id: str | None
    reason: SkipReason


@dataclass(frozen=True, slots=True)
class Candidate:
    """A sale that passed every rule, with the cooldown rows its rules were decided on."""

    request_id: str
    transaction_id: str
    sale_at: datetime
    customer_id: str | None
    location_id: str | None
    person_key: str
    keys: tuple[str, ...]
    seen: dict[str, str | None]  # cooldown key -> request_id read when deciding
    email: str
    email_masked: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Settlement:
    request_id: str
    status: RequestStatus  # sent | failed | rejected | pending (nothing left the building)
    provider_message_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Claimable:
    """A request waiting to be sent: what render and the provider need."""

    request_id: str
    email: str
    payload: dict[str, Any]
    batch_key: str | None = None  # set while in flight: the provider call it went out in
    sending_at: datetime | None = None  # when that call was made


def new_id() -> str:
    return uuid.uuid4().hex


class Ledger:
    def __init__(
        self, engine: Engine, store: str, hash_secret: str | None, *, pinned: bool = False
    ) -> None:
        self.engine = engine
        self.store = store
        self._pinned: Connection | None = engine.connect() if pinned else None
        if self._pinned is not None:
            self._pinned.begin()
        self._migrate()
        self.keys = PersonKeys(self._person_secret(hash_secret), store)

    @classmethod
    def open(
        cls, url: str, store: str, hash_secret: str | None = None, *, dry_run: bool = False
    ) -> Ledger:
        return cls(create_ledger_engine(url), store, hash_secret, pinned=dry_run)

    def close(self) -> None:
        if self._pinned is not None:
            self._pinned.rollback()
            self._pinned.close()
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        try:
            if self._pinned is not None:
                with self._pinned.begin_nested():
                    yield self._pinned
            else:
                with self.engine.begin() as conn:
                    yield conn
        except SQLAlchemyError as exc:
            raise LedgerError(f"the ledger database failed: {first_line(exc)}") from exc

    # --- set-up -------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.transaction() as conn:
            if conn.dialect.name == "postgresql":
                # Daemons of several stores may start at once on a new ledger: one migrates,
                # the others wait for it, then find nothing left to do. (SQLite's BEGIN
                # IMMEDIATE already serializes them.)
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_ID)))
            migrate.upgrade(conn)

    def _person_secret(self, configured: str | None) -> bytes:
        if configured:
            return configured.encode("utf-8")
        with self.transaction() as conn:
            stored = conn.scalar(select(install.c.value).where(install.c.name == _SECRET_NAME))
            if stored is None:
                stored = secrets.token_hex(32)
                conn.execute(
                    _upsert(
                        conn,
                        install,
                        ["name"],
                        {"name": _SECRET_NAME, "value": stored},
                        update=False,
                    )
                )
                stored = conn.scalar(select(install.c.value).where(install.c.name == _SECRET_NAME))
        return str(stored).encode("utf-8")

    # --- runs and coverage ----------------------------------------------------------------

    def start_run(self, kind: str, now: datetime, *, dry_run: bool) -> str:
        run_id = new_id()
        with self.transaction() as conn:
            conn.execute(
                insert(runs).values(
                    id=run_id,
                    store=self.store,
                    kind=kind,
                    status="running",
                    dry_run=dry_run,
                    started_at=now,
                    pid=os.getpid(),
                    host=socket.gethostname()[:255],
                )
            )
        return run_id

    def set_run_window(self, run_id: str, start: datetime, end: datetime) -> None:
        with self.transaction() as conn:
            conn.execute(
                update(runs).where(runs.c.id == run_id).values(window_start=start, window_end=end)
            )

    def finish_run(
        self,
        run_id: str,
        now: datetime,
        status: str,
        counts: dict[str, int],
        error: str | None = None,
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status=status,
                    finished_at=now,
                    counts=json.dumps(counts, sort_keys=True),
                    error=error,
                )
            )

    def covered_end(self) -> datetime | None:
        """The latest moment any run (backfill included) has decided and settled up to."""
        with self.transaction() as conn:
            end: datetime | None = conn.scalar(
                select(func.max(coverage.c.covered_until)).where(coverage.c.store == self.store)
            )
        return end

    def sync_bookmark(self) -> datetime | None:
        """Where the next sync picks up: the cutoff of the latest successful sync run.

        A successful sync started at (or, with its look-back, before) the bookmark it found,
        so everything up to its cutoff is covered. A failed run moves nothing, even for the
        days it finished (the next run reads them again; their decisions stand), and a
        backfill moves nothing, so that one reaching the present after a gap cannot make the
        next sync jump over that gap.
        """
        query = select(func.max(runs.c.window_end)).where(
            runs.c.store == self.store,
            runs.c.kind != "backfill",
            runs.c.status == "succeeded",
            runs.c.dry_run.is_(False),
        )
        with self.transaction() as conn:
            end: datetime | None = conn.scalar(query)
        return end

    def mark_covered(self, day: date, until: datetime, run_id: str) -> None:
        """Record that ``day`` is decided and settled up to ``until``; never moves backwards."""
        row = {"store": self.store, "day": day, "covered_until": until, "run_id": run_id}
        with self.transaction() as conn:
            statement = _dialect_insert(conn)(coverage).values(**row)
            new = statement.excluded
            statement = statement.on_conflict_do_update(
                index_elements=["store", "day"],
                set_={
                    "covered_until": _later(new.covered_until, coverage.c.covered_until),
                    "run_id": new.run_id,
                },
            )
            conn.execute(statement)

    # --- what is already known -----------------------------------------------------------

    def final_decisions(self, transaction_ids: Sequence[str]) -> set[str]:
        """Which of these sales already have a decision that a re-read must not change."""
        found: set[str] = set()
        revisable = [str(r) for r in REVISABLE_REASONS]
        with self.transaction() as conn:
            for part in _chunks(transaction_ids):
                query = select(decisions.c.transaction_id).where(
                    decisions.c.store == self.store,
                    decisions.c.transaction_id.in_(part),
                    decisions.c.reason.is_(None) | decisions.c.reason.not_in(revisable),
                )
                found.update(conn.scalars(query))
        return found

    def known_about(
        self, person_keys: Iterable[str], transaction_keys: Iterable[str]
    ) -> tuple[dict[str, CooldownRow], set[str]]:
        """For one chunk of sales, in one read: who holds each person key's cooldown, and
        which of these person and transaction keys are suppressed."""
        people = sorted(set(person_keys))
        with self.transaction() as conn:
            cooldowns = self._cooldown_rows(conn, people)
            suppressed = self._suppressed(conn, [*people, *sorted(set(transaction_keys))])
        return cooldowns, suppressed

    def _cooldown_rows(self, conn: Connection, keys: Sequence[str]) -> dict[str, CooldownRow]:
        found: dict[str, CooldownRow] = {}
        for part in _chunks(keys):
            query = (
                select(
                    cooldowns.c.person_key,
                    cooldowns.c.last_request_at,
                    cooldowns.c.request_id,
                    requests.c.run_id,
                )
                .outerjoin(requests, requests.c.id == cooldowns.c.request_id)
                .where(cooldowns.c.person_key.in_(part))
            )
            found.update({row[0]: CooldownRow(*row[1:]) for row in conn.execute(query)})
        return found

    def _suppressed(self, conn: Connection, keys: Sequence[str]) -> set[str]:
        # Keys are unique across kinds by their prefix (e:, c:, t:), so one query serves all.
        found: set[str] = set()
        for part in _chunks(keys):
            query = select(suppressions.c.key).where(
                suppressions.c.kind.in_(SUPPRESSION_KINDS), suppressions.c.key.in_(part)
            )
            found.update(conn.scalars(query))
        return found

    # --- decisions and claims ------------------------------------------------------------

    def record_skips(self, run_id: str, rows: Sequence[SkipRow], now: datetime) -> None:
        if not rows:
            return
        with self.transaction() as conn:
            self._write_decisions(
                conn,
                run_id,
                now,
                [
                    _decision_row(
                        self.store,
                        run_id,
                        now,
                        r.transaction_id,
                        r.sale_at,
                        r.customer_id,
                        r.person_key,
                        r.location_id,
                        r.reason,
                        None,
                    )
                    for r in rows
                ],
            )

    def claim(
        self, run_id: str, candidates: Sequence[Candidate], now: datetime
    ) -> tuple[list[Candidate], list[Candidate]]:
        """Claim the cooldown of each candidate and write its pending request, atomically.

        A candidate wins only if every one of its cooldown rows still holds what its rules
        were decided on (compare-and-set); losers are recorded as ``cooldown``. Two
        processes sharing a ledger can therefore never both claim one person.
        """
        if not candidates:
            return [], []
        with self.transaction() as conn:
            won, lost = self._compare_and_set(conn, candidates, now)
            self._write_requests(conn, run_id, won, now)
            self._write_decisions(
                conn,
                run_id,
                now,
                [
                    *(
                        _decision_row(
                            self.store,
                            run_id,
                            now,
                            c.transaction_id,
                            c.sale_at,
                            c.customer_id,
                            c.person_key,
                            c.location_id,
                            None,
                            c.request_id,
                        )
                        for c in won
                    ),
                    *(
                        _decision_row(
                            self.store,
                            run_id,
                            now,
                            c.transaction_id,
                            c.sale_at,
                            c.customer_id,
                            c.person_key,
                            c.location_id,
                            SkipReason.COOLDOWN,
                            None,
                        )
                        for c in lost
                    ),
                ],
            )
        return won, lost

    def _compare_and_set(
        self, conn: Connection, candidates: Sequence[Candidate], now: datetime
    ) -> tuple[list[Candidate], list[Candidate]]:
        params: list[dict[str, Any]] = [
            {
                "person_key": key,
                "last_request_at": now,
                "request_id": c.request_id,
                "seen": c.seen.get(key),
            }
            for c in candidates
            for key in c.keys
        ]
        # Rows are locked in key order, the same in every process: two processes claiming
        # overlapping people can wait for each other but never deadlock.
        params.sort(key=lambda row: str(row["person_key"]))
        conn.execute(_claim_statement(conn), params)
        holders = self._holders(conn, [p["person_key"] for p in params])
        won: list[Candidate] = []
        lost: list[Candidate] = []
        for c in candidates:
            (won if all(holders.get(k) == c.request_id for k in c.keys) else lost).append(c)
        self._give_back(
            conn,
            [(k, c.request_id) for c in lost for k in c.keys if holders.get(k) == c.request_id],
        )
        return won, lost

    def _holders(self, conn: Connection, keys: Sequence[str]) -> dict[str, str]:
        held: dict[str, str] = {}
        for part in _chunks(keys):
            query = select(cooldowns.c.person_key, cooldowns.c.request_id).where(
                cooldowns.c.person_key.in_(part)
            )
            held.update({row[0]: row[1] for row in conn.execute(query)})
        return held

    def _give_back(self, conn: Connection, held: Sequence[tuple[str, str]]) -> None:
        """Undo claims: restore what each cooldown row held before, or drop a new row."""
        if not held:
            return
        params = [{"k": key, "rid": request_id} for key, request_id in sorted(held)]
        mine = and_(
            cooldowns.c.person_key == bindparam("k"), cooldowns.c.request_id == bindparam("rid")
        )
        conn.execute(delete(cooldowns).where(mine, cooldowns.c.prev_request_id.is_(None)), params)
        conn.execute(
            update(cooldowns)
            .where(mine)
            .values(
                last_request_at=cooldowns.c.prev_request_at,
                request_id=cooldowns.c.prev_request_id,
                prev_request_at=None,
                prev_request_id=None,
            ),
            params,
        )

    def _write_requests(
        self, conn: Connection, run_id: str, won: Sequence[Candidate], now: datetime
    ) -> None:
        if not won:
            return
        conn.execute(
            insert(requests),
            [
                {
                    "id": c.request_id,
                    "store": self.store,
                    "transaction_id": c.transaction_id,
                    "run_id": run_id,
                    "person_key": c.person_key,
                    "customer_id": c.customer_id,
                    "status": PENDING,
                    "email": c.email,
                    "email_masked": c.email_masked,
                    "payload": json.dumps(c.payload, ensure_ascii=False),
                    "created_at": now,
                }
                for c in won
            ],
        )

    def _write_decisions(
        self, conn: Connection, run_id: str, now: datetime, rows: list[dict[str, Any]]
    ) -> None:
        if not rows:
            return
        # Spelled out as ORs of literals: an expanding IN cannot run under executemany.
        revisable = or_(
            *(decisions.c.reason == literal_column(f"'{r}'") for r in sorted(REVISABLE_REASONS))
        )
        statement = _upsert(conn, decisions, ["store", "transaction_id"], None, where=revisable)
        conn.execute(statement, rows)

    # --- delivery ------------------------------------------------------------------------

    def unsent(self, status: str, limit: int) -> list[Claimable]:
        """Requests of this store in ``status`` (pending, or sending after a crash)."""
        query = (
            select(
                requests.c.id,
                requests.c.email,
                requests.c.payload,
                requests.c.batch_key,
                requests.c.sending_at,
            )
            .where(requests.c.store == self.store, requests.c.status == status)
            .order_by(requests.c.created_at, requests.c.id)
            .limit(limit)
        )
        with self.transaction() as conn:
            return [
                Claimable(
                    row.id,
                    row.email,
                    json.loads(row.payload or "{}"),
                    row.batch_key,
                    row.sending_at,
                )
                for row in conn.execute(query)
            ]

    def mark_sending(
        self, request_ids: Sequence[str], now: datetime, provider: str, batch_key: str
    ) -> None:
        """Committed before the provider is called: after a crash we know what was in flight,
        and in which call, so that the call can be repeated whole under its key."""
        with self.transaction() as conn:
            conn.execute(
                update(requests)
                .where(requests.c.id == bindparam("rid"))
                .values(status=SENDING, sending_at=now, provider=provider, batch_key=batch_key),
                [{"rid": rid} for rid in request_ids],
            )

    def mark_in_doubt(self, request_ids: Sequence[str]) -> None:
        if not request_ids:
            return
        with self.transaction() as conn:
            conn.execute(
                update(requests)
                .where(requests.c.id == bindparam("rid"), requests.c.status == SENDING)
                .values(status=IN_DOUBT),
                [{"rid": rid} for rid in request_ids],
            )

    def settle(self, settlements: Sequence[Settlement], now: datetime) -> None:
        """Record outcomes; forget the address of every settled request; free failed claims."""
        if not settlements:
            return
        with self.transaction() as conn:
            for status in {s.status for s in settlements}:
                group = [s for s in settlements if s.status == status]
                conn.execute(
                    _settle_statement(status, now),
                    [
                        {
                            "rid": s.request_id,
                            "mid": s.provider_message_id,
                            "err": (s.error or None) and s.error[:2000],
                        }
                        for s in group
                    ],
                )
            released = [s.request_id for s in settlements if s.status in (FAILED, REJECTED)]
            self._release_claims(conn, released)

    def _release_claims(self, conn: Connection, request_ids: Sequence[str]) -> None:
        # A request that never reached the person does not start their cooldown.
        held: list[tuple[str, str]] = []
        for part in _chunks(request_ids):
            query = select(cooldowns.c.person_key, cooldowns.c.request_id).where(
                cooldowns.c.request_id.in_(part)
            )
            held.extend((row[0], row[1]) for row in conn.execute(query))
        self._give_back(conn, held)

    # --- suppressions --------------------------------------------------------------------

    def add_suppression(
        self, kind: str, key: str, display: str, source: str, reason: str | None, now: datetime
    ) -> bool:
        row = {
            "kind": kind,
            "key": key,
            "display": display,
            "source": source,
            "reason": reason,
            "created_at": now,
        }
        with self.transaction() as conn:
            result = conn.execute(_upsert(conn, suppressions, ["kind", "key"], row, update=False))
            return bool(result.rowcount)

    def add_suppressions(
        self, rows: Sequence[tuple[str, str, str | None]], source: str, now: datetime
    ) -> int:
        """Email suppressions (key, masked display, reason) in bulk; returns how many are new."""
        if not rows:
            return 0
        with self.transaction() as conn:
            known = self._suppressed(conn, [key for key, _, _ in rows])
            fresh = {key: (display, reason) for key, display, reason in rows if key not in known}
            if fresh:
                conn.execute(
                    insert(suppressions),
                    [
                        {
                            "kind": "email",
                            "key": key,
                            "display": display,
                            "source": source,
                            "reason": reason and reason[:200],
                            "created_at": now,
                        }
                        for key, (display, reason) in fresh.items()
                    ],
                )
            return len(fresh)

    def install_value(self, name: str) -> str | None:
        """A small named value the program keeps in the ledger (a provider's sync cursor)."""
        with self.transaction() as conn:
            value = conn.scalar(select(install.c.value).where(install.c.name == name))
        return None if value is None else str(value)

    def set_install_value(self, name: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute(_upsert(conn, install, ["name"], {"name": name, "value": value}))

    def remove_suppression(self, kind: str, key: str) -> bool:
        with self.transaction() as conn:
            result = conn.execute(
                delete(suppressions).where(suppressions.c.kind == kind, suppressions.c.key == key)
            )
            return bool(result.rowcount)


def create_ledger_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise LedgerError("ledger.url is not a database URL") from exc
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    _sqlite_transactions(engine)
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; take it over.
    # BEGIN IMMEDIATE takes the write lock up front, so two processes serialize their
    # claims instead of failing with "database is locked" half-way through one.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA busy_timeout = 30000")
        # 16 MB of page cache (default 2 MB): the decision indexes of a long catch-up stay
        # in memory; measured 1.15x faster on a 100k-sale run (benchmarks/bench_sync.py).
        cursor.execute("PRAGMA cache_size = -16000")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _dialect_insert(conn: Connection) -> Any:
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert
    if name == "postgresql":
        return postgresql.insert
    raise LedgerError(f"the ledger runs on SQLite or PostgreSQL, not {name}")


def _upsert(
    conn: Connection,
    table: Any,
    index: list[str],
    row: dict[str, Any] | None,
    *,
    update: bool = True,
    where: Any = None,
) -> Any:
    statement = _dialect_insert(conn)(table)
    if row is not None:
        statement = statement.values(**row)
    if not update:
        return statement.on_conflict_do_nothing(index_elements=index)
    excluded = statement.excluded
    changes = {
        c.name: excluded[c.name] for c in table.columns if c.name not in index and not c.primary_key
    }
    return statement.on_conflict_do_update(index_elements=index, set_=changes, where=where)


def _later(new: Any, old: Any) -> Any:
    """SQL for the later of two nullable times (portable: no GREATEST in SQLite)."""
    return case((old.is_(None), new), (new > old, new), else_=old)


def _claim_statement(conn: Connection) -> Any:
    statement = _dialect_insert(conn)(cooldowns).values(
        person_key=bindparam("person_key"),
        last_request_at=bindparam("last_request_at"),
        request_id=bindparam("request_id"),
    )
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["person_key"],
        set_={
            "prev_request_at": cooldowns.c.last_request_at,
            "prev_request_id": cooldowns.c.request_id,
            "last_request_at": excluded.last_request_at,
            "request_id": excluded.request_id,
        },
        # The compare-and-set: only if nobody claimed this person since we looked.
        where=cooldowns.c.request_id == bindparam("seen"),
    )


def _settle_statement(status: str, now: datetime) -> Any:
    values: dict[str, Any] = {"status": status, "error": bindparam("err")}
    if status == PENDING:  # nothing was sent: back in the queue, address kept
        return update(requests).where(requests.c.id == bindparam("rid")).values(**values)
    values |= {
        "settled_at": now,
        "provider_message_id": bindparam("mid"),
        "email": None,
        "payload": None,
    }
    return update(requests).where(requests.c.id == bindparam("rid")).values(**values)


def _decision_row(
    store: str,
    run_id: str,
    now: datetime,
    transaction_id: str,
    sale_at: datetime,
    customer_id: str | None,
    person_key: str | None,
    location_id: str | None,
    reason: SkipReason | None,
    request_id: str | None,
) -> dict[str, Any]:
    return {
        "store": store,
        "transaction_id": transaction_id,
        "run_id": run_id,
        "decided_at": now,
        "sale_at": sale_at,
        "customer_id": customer_id,
        "person_key": person_key,
        "location_id": location_id,
        "reason": str(reason) if reason else None,
        "request_id": request_id,
    }


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]
