"""The ledger's plumbing: one engine, short transactions, migrations on open, and the SQL
helpers every record-keeper (runs, decisions, claims, requests, suppressions, answers) shares.

Two kinds of transaction:

- ``transaction()`` writes. On SQLite it begins ``IMMEDIATE``: the write lock is taken up
  front, so two processes serialize their claims instead of failing half-way through one.
- ``reading()`` only reads. On SQLite it begins ``DEFERRED``, and with the WAL journal a
  reader never waits for a writer: the survey page keeps answering while the night's run
  writes.

A dry run opens the ledger ``pinned``: every transaction becomes a savepoint inside one
outer transaction that is rolled back on close, so it computes exactly what a real run
would and leaves nothing behind.

Every SQLAlchemy error leaves this package as ``LedgerError``; nothing here knows about
sales, people or providers.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, case, create_engine, event, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from surveysync.errors import first_line
from surveysync.ledger import migrate

IN_CHUNK = 500  # bound for IN (...) lists, well under every driver's parameter limit
_MIGRATION_LOCK_ID = 0x5375_7276_6579  # "Survey": any constant shared by every surveysync
_READ_OPTION = "surveysync_read_only"


class LedgerError(Exception):
    """The ledger database cannot be used (unreachable, too new, corrupt)."""


def new_id() -> str:
    """32 hex digits: the time in milliseconds (12), then 80 random bits (20). Rows keyed by
    it (requests, runs, alerts, reminders) are added at the end of their primary-key index,
    in time order: a random key (uuid4) puts each new row on a page of its own once the index
    outgrows the page cache, and a night's writes then grow with the size of the ledger."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


class LedgerDb:
    """The engine and its transactions; ``pinned`` for a dry run (see the module docstring)."""

    def __init__(self, engine: Engine, *, pinned: bool = False) -> None:
        self.engine = engine
        # SQLite has one writer at a time. Threads of one process (the survey page's request
        # handlers) queue for it here, handing over at once, instead of in SQLite's busy
        # handler, which polls in sleeps of up to 100 ms: with 50 clients on the page, p99
        # fell by half (benchmarks/bench_web.py, README there).
        self._write_turn = threading.RLock() if engine.dialect.name == "sqlite" else None
        self._pinned: Connection | None = engine.connect() if pinned else None
        if self._pinned is not None:
            self._pinned.begin()

    @classmethod
    def open(cls, url: str, *, pinned: bool = False, existing: bool = False) -> LedgerDb:
        """The ledger database at ``url``; ``existing``: it must have been made already."""
        db = cls(create_ledger_engine(url, existing=existing), pinned=pinned)
        if existing and not db._has_tables():
            db.close()
            raise LedgerError(_no_ledger(make_url(url).render_as_string(hide_password=True)))
        return db

    def _has_tables(self) -> bool:
        try:
            with self.engine.connect() as conn:
                return inspect(conn).has_table("runs")
        except SQLAlchemyError as exc:
            raise LedgerError(f"the ledger database failed: {first_line(exc)}") from exc
        finally:
            self.engine.dispose()  # whoever opened it may still set up its connections

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        if self._pinned is not None:
            self._pinned.rollback()
            self._pinned.close()
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A short write transaction, committed on leaving the block."""
        with self._write_turn or contextlib.nullcontext(), self._transaction() as conn:
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        try:
            if self._pinned is not None:
                with self._pinned.begin_nested():
                    yield self._pinned
            else:
                with self.engine.begin() as conn:
                    yield conn
        except SQLAlchemyError as exc:
            raise LedgerError(f"the ledger database failed: {first_line(exc)}") from exc

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only transaction that never waits behind a writer."""
        if self._pinned is not None:  # a dry run reads what it wrote itself
            with self.transaction() as conn:
                yield conn
            return
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{_READ_OPTION: True})
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise LedgerError(f"the ledger database failed: {first_line(exc)}") from exc

    def migrate(self) -> None:
        """Bring the database to the newest schema (every open does; one read when done)."""
        if self._pinned is None:
            with self.reading() as conn:
                if migrate.is_current(conn):
                    return
        with self.transaction() as conn:
            if conn.dialect.name == "postgresql":
                # Daemons of several stores may start at once on a new ledger: one migrates,
                # the others wait for it, then find nothing left to do. (SQLite's BEGIN
                # IMMEDIATE already serializes them.)
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_ID)))
            migrate.upgrade(conn)


def create_ledger_engine(url: str, *, existing: bool = False) -> Engine:
    """The engine for ``url``; a SQLite file's folder is made, unless ``existing`` asks for
    a ledger that must be there already (a command that only reads never makes one)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise LedgerError("ledger.url is not a database URL") from exc
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except (NoSuchModuleError, ImportError) as exc:
            raise LedgerError(_missing_driver(parsed.get_backend_name(), exc)) from exc
    if parsed.database and parsed.database != ":memory:":
        if existing and not Path(parsed.database).is_file():
            raise LedgerError(_no_ledger(str(Path(parsed.database).absolute())))
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    _sqlite_transactions(engine)
    return engine


def _no_ledger(where: str) -> str:
    return (
        f"no ledger at {where}: surveysync has not run with this configuration yet, or "
        "ledger.url names another place (a relative path is relative to the config file's "
        "folder); `surveysync sync` or the daemon (`surveysync run`) makes it"
    )


def _missing_driver(backend: str, exc: BaseException) -> str:
    if backend == "postgresql":
        return (
            "ledger.url names PostgreSQL, but its driver is not installed: "
            "pip install 'surveysync[postgresql]'"
        )
    return f"ledger.url: the database driver for {backend} is not installed ({exc})"


def _sqlite_transactions(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; take it over.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA busy_timeout = 30000")
        # 8 MB of page cache (default 2 MB): the decision indexes of a long catch-up stay
        # in memory; measured 1.15x faster on a 100k-sale run (benchmarks/bench_sync.py).
        # 16 MB was 3 % faster again at 400k, for 10 MB more at the peak of a night (the
        # issue's cap is 150 MB).
        cursor.execute("PRAGMA cache_size = -8000")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        reads_only = conn.get_execution_options().get(_READ_OPTION, False)
        conn.exec_driver_sql("BEGIN DEFERRED" if reads_only else "BEGIN IMMEDIATE")


# --- SQL both dialects understand ----------------------------------------------------------


def dialect_insert(conn: Connection) -> Any:
    # Imported here: the connection's dialect is loaded already, the other one need not be.
    name = conn.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    raise LedgerError(f"the ledger runs on SQLite or PostgreSQL, not {name}")


def upsert(
    conn: Connection,
    table: Any,
    index: list[str],
    row: dict[str, Any] | None,
    *,
    update: bool = True,
    where: Any = None,
) -> Any:
    """INSERT … ON CONFLICT (index) DO UPDATE every other column (or DO NOTHING)."""
    statement = dialect_insert(conn)(table)
    if row is not None:
        statement = statement.values(**row)
    if not update:
        return statement.on_conflict_do_nothing(index_elements=index)
    excluded = statement.excluded
    changes = {
        c.name: excluded[c.name] for c in table.columns if c.name not in index and not c.primary_key
    }
    return statement.on_conflict_do_update(index_elements=index, set_=changes, where=where)


def later(new: Any, old: Any) -> Any:
    """SQL for the later of two nullable times (portable: no GREATEST in SQLite)."""
    return case((old.is_(None), new), (new > old, new), else_=old)
