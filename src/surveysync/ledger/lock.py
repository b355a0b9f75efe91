"""One surveysync at a time per (ledger, store): the single-instance lock of ``run`` and ``sync``.

Two processes working for the same store on the same ledger would read the same bookmark and
race each other through the same nights; the claims keep them from emailing anyone twice, but
the runs, logs and ``status`` would be a tangle. So a command that moves a store's state takes
``InstanceLock(ledger_url, store, purpose)`` first. Stores sharing a PostgreSQL ledger lock
independently and run side by side.

How each ledger holds it:

- SQLite file: an OS lock (``filelock``: ``flock`` on POSIX, ``LockFileEx`` on Windows) on
  ``<db>.<store>.lock`` beside the database. Who holds it is written to a separate
  ``<db>.<store>.lock.info`` (JSON), because on Windows a locked file cannot be read by others.
  Either file left on disk means nothing by itself: only the OS lock counts.
- SQLite in memory (``sqlite://``, ``:memory:``, ``mode=memory``): no file to lock and no other
  process can see the database, so the lock is a set of held (url, store) in this process.
- PostgreSQL: a session-level ``pg_try_advisory_lock(_PG_LOCK_CLASS, <hash of store>)`` (the
  two-int form, which cannot collide with the one-bigint migration lock) on a dedicated
  autocommit connection kept open for the lock's lifetime. Its ``application_name`` says who
  holds it, and a refused process reads that from ``pg_locks`` joined with
  ``pg_stat_activity``. The lock is per database; it does not survive a connection pooler in
  transaction mode (point the ledger URL straight at the server).
- Anything else: ``LedgerError`` before touching the database.

What it must never do: block (a second instance is refused at once, naming the holder, and never
waits in a queue behind it); leave a lock behind after a crash (every form is owned by the
process or its connection, so kill -9 frees it: the OS drops a dead process's file locks, the
server a dead session's advisory locks); put the ledger URL, and so its password, in a message.

Error tree::

    LedgerError            (store.py) the ledger cannot be used
     └── LockHeld          another surveysync holds this (ledger, store); .holder says who
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from surveysync.errors import first_line
from surveysync.ledger.db import LedgerError

__all__ = ["Holder", "InstanceLock", "LockHeld"]

_PG_LOCK_CLASS = 0x5353_4C4B  # "SSLK": first key of every surveysync instance lock (int4)
_APP_PREFIX = "surveysync"
_APP_NAME_MAX = 63  # PostgreSQL keeps NAMEDATALEN - 1 bytes of application_name
_APP_TIME = "%Y%m%dT%H%M%SZ"
_SAFE_STORE = re.compile(r"[a-z0-9_-]{1,60}")

_HOLDER_QUERY = text(
    """
    SELECT a.application_name, host(a.client_addr) AS address, a.backend_start
    FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND CAST(l.classid AS bigint) = CAST(:class_key AS bigint)
      AND CAST(l.objid AS bigint) = CAST(:store_key AS bigint)
    """
)


_MINE_QUERY = text(
    """
    SELECT count(*) FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND pid = pg_backend_pid()
      AND CAST(classid AS bigint) = CAST(:class_key AS bigint)
      AND CAST(objid AS bigint) = CAST(:store_key AS bigint)
    """
)


@dataclass(frozen=True, slots=True)
class Holder:
    """The process holding (or taking) an instance lock, as an admin would look for it."""

    purpose: str
    pid: int
    host: str
    started_at: datetime
    address: str | None = None  # the holder's address as the PostgreSQL server sees it

    @classmethod
    def this_process(cls, purpose: str) -> Holder:
        now = datetime.now(UTC).replace(microsecond=0)
        return cls(purpose, os.getpid(), socket.gethostname() or "?", now)

    def describe(self) -> str:
        where = f"{self.host} ({self.address})" if self.address else self.host
        since = self.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"`{self.purpose}`, pid {self.pid} on host {where}, since {since}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "purpose": self.purpose,
                "pid": self.pid,
                "host": self.host,
                "started_at": self.started_at.isoformat(),
            }
        )

    @classmethod
    def from_json(cls, data: str) -> Holder | None:
        try:
            fields = json.loads(data)
            return cls(
                str(fields["purpose"]),
                int(fields["pid"]),
                str(fields["host"]),
                datetime.fromisoformat(fields["started_at"]),
            )
        except (ValueError, TypeError, KeyError):
            return None

    def application_name(self) -> str:
        """``surveysync run 4242 20261122T230005Z shop-server``: the host last, cut if long."""
        host = re.sub(r"[^!-~]", "?", self.host)  # printable ASCII, no spaces
        since = self.started_at.astimezone(UTC).strftime(_APP_TIME)
        name = f"{_APP_PREFIX} {self.purpose} {self.pid} {since} {host}"
        return name[:_APP_NAME_MAX]

    @classmethod
    def from_application_name(
        cls, name: str | None, address: str | None, backend_start: datetime | None
    ) -> Holder | None:
        parts = (name or "").split(" ", 4)
        if len(parts) < 4 or parts[0] != _APP_PREFIX or not parts[2].isdigit():
            return None
        try:
            since = datetime.strptime(parts[3], _APP_TIME).replace(tzinfo=UTC)
        except ValueError:
            if backend_start is None:
                return None
            since = backend_start
        host = parts[4] if len(parts) == 5 and parts[4] else "?"
        return cls(parts[1], int(parts[2]), host, since, address)


class LockHeld(LedgerError):
    """Another surveysync holds the instance lock of this (ledger, store)."""

    def __init__(self, store: str, holder: Holder | None) -> None:
        self.store = store
        self.holder = holder
        who = (
            f": {holder.describe()}"
            if holder
            else " (it has not said which: it may be starting or stopping)"
        )
        super().__init__(
            f"another surveysync is running for store '{store}' on this ledger{who}; "
            "stop it first (or wait for it to finish)"
        )


class _Backend(Protocol):
    def acquire(self, holder: Holder) -> None: ...

    def release(self) -> None: ...

    def still_held(self) -> bool: ...


class InstanceLock:
    """``with InstanceLock(url, store, "run"):`` holds the lock or raises ``LockHeld`` at once."""

    def __init__(self, ledger_url: str, store: str, purpose: str) -> None:
        self.store = store
        self.purpose = re.sub(r"\s+", "-", purpose.strip()) or "?"
        self._backend = _backend_for(ledger_url, store, self.purpose)
        self.holder: Holder | None = None  # this process, while it holds the lock

    def __enter__(self) -> InstanceLock:
        if self.holder is not None:
            raise RuntimeError("this InstanceLock is already held")
        holder = Holder.this_process(self.purpose)
        self._backend.acquire(holder)
        self.holder = holder
        return self

    def ensure_held(self) -> bool:
        """Make sure the lock is still ours before a long piece of work; True when it had
        been lost (the PostgreSQL session ended: a server restart, a network cut) and was
        taken again. Raises LockHeld when another process took it meanwhile."""
        if self.holder is None:
            raise RuntimeError("this InstanceLock is not held")
        if self._backend.still_held():
            return False
        self._backend.release()
        self._backend.acquire(self.holder)
        return True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.holder is not None:
            self.holder = None
            self._backend.release()


def _backend_for(ledger_url: str, store: str, purpose: str) -> _Backend:
    try:
        url = make_url(ledger_url)
    except ArgumentError as exc:
        raise LedgerError("ledger.url is not a database URL") from exc
    backend = url.get_backend_name()
    if backend == "postgresql":
        return _AdvisoryBackend(url, store)
    if backend != "sqlite":
        raise LedgerError(
            f"`{purpose}` needs a ledger on SQLite or PostgreSQL, not {backend}: "
            "only those can tell whether another surveysync is running"
        )
    database = _sqlite_file(url)
    if database is None:
        return _ProcessBackend(url.render_as_string(hide_password=True), store)
    return _FileBackend(database, store)


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None when the database lives in memory."""
    database = url.database or ""
    if url.query.get("mode") == "memory" or database in ("", ":memory:"):
        return None
    if str(url.query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
        if not database or database == ":memory:":
            return None
    return Path(database)


def _file_safe(store: str) -> str:
    """A store id as a file name part, the same on every OS (Windows ignores case)."""
    if _SAFE_STORE.fullmatch(store):
        return store
    digest = hashlib.sha256(store.encode("utf-8")).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', store)[:40]}-{digest}"


def _advisory_keys(store: str) -> tuple[int, int]:
    """The two int4 keys of a store's advisory lock; both non-negative, so pg_locks shows them."""
    digest = hashlib.sha256(store.encode("utf-8")).digest()
    return _PG_LOCK_CLASS, int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF


# --- SQLite file: an OS file lock beside the database -----------------------------------------


class _FileBackend:
    def __init__(self, database: Path, store: str) -> None:
        stem = f"{database.name}.{_file_safe(store)}.lock"
        self.store = store
        self.lock_path = database.with_name(stem)
        self.info_path = database.with_name(f"{stem}.info")
        self._lock = FileLock(
            self.lock_path,
            blocking=False,
            thread_local=False,  # the daemon may release from another thread than it took it
            fallback_to_soft=False,  # a soft lock outlives a crash: refuse instead
        )

    def acquire(self, holder: Holder) -> None:
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout:
            raise LockHeld(self.store, self._read_holder()) from None
        except OSError as exc:
            raise LedgerError(
                f"cannot lock {self.lock_path} beside the ledger: {exc.strerror or exc}"
            ) from exc
        self._write_holder(holder)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.info_path.unlink(missing_ok=True)
        self._lock.release()

    def still_held(self) -> bool:
        return self._lock.is_locked  # an OS lock lasts as long as this process holds it

    def _read_holder(self) -> Holder | None:
        try:
            return Holder.from_json(self.info_path.read_text(encoding="utf-8"))
        except OSError:  # not written yet, or being replaced (Windows)
            return None

    def _write_holder(self, holder: Holder) -> None:
        # Best effort, atomically: a reader sees the old description or the new one. Failing
        # that, no description at all beats a stale one naming a process long gone.
        partial = self.info_path.with_name(f"{self.info_path.name}.{os.getpid()}.tmp")
        try:
            partial.write_text(holder.to_json(), encoding="utf-8")
            os.replace(partial, self.info_path)
        except OSError:
            for path in (partial, self.info_path):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)


# --- SQLite in memory: a lock within this process -----------------------------------------------

_IN_PROCESS: dict[tuple[str, str], Holder] = {}
_IN_PROCESS_GUARD = threading.Lock()


class _ProcessBackend:
    def __init__(self, ledger: str, store: str) -> None:
        self.store = store
        self._key = (ledger, store)

    def acquire(self, holder: Holder) -> None:
        with _IN_PROCESS_GUARD:
            if (other := _IN_PROCESS.get(self._key)) is not None:
                raise LockHeld(self.store, other)
            _IN_PROCESS[self._key] = holder

    def release(self) -> None:
        with _IN_PROCESS_GUARD:
            _IN_PROCESS.pop(self._key, None)

    def still_held(self) -> bool:
        with _IN_PROCESS_GUARD:
            return self._key in _IN_PROCESS


# --- PostgreSQL: a session advisory lock on a connection of its own ------------------------------


class _AdvisoryBackend:
    def __init__(self, url: URL, store: str) -> None:
        self.url = url
        self.store = store
        class_key, store_key = _advisory_keys(store)
        self.keys = {"class_key": class_key, "store_key": store_key}
        self._engine: Engine | None = None
        self._conn: Connection | None = None

    def acquire(self, holder: Holder) -> None:
        engine = create_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        conn: Connection | None = None
        try:
            conn = engine.connect()
            _describe_session(conn, holder)
            taken = conn.scalar(
                text(
                    "SELECT pg_try_advisory_lock("
                    "CAST(:class_key AS integer), CAST(:store_key AS integer))"
                ),
                self.keys,
            )
            other = None if taken else self._holder(conn)
        except SQLAlchemyError as exc:
            _close(engine, conn)
            raise LedgerError(f"the ledger database failed: {first_line(exc)}") from exc
        if not taken:
            _close(engine, conn)
            raise LockHeld(self.store, other)
        self._engine, self._conn = engine, conn

    def release(self) -> None:
        engine, conn = self._engine, self._conn
        self._engine = self._conn = None
        if engine is None or conn is None:
            return
        # Unlocked explicitly so the next holder need not wait for the server to notice the
        # close; if the connection is already gone, so is the lock.
        with contextlib.suppress(SQLAlchemyError):
            conn.execute(
                text(
                    "SELECT pg_advisory_unlock("
                    "CAST(:class_key AS integer), CAST(:store_key AS integer))"
                ),
                self.keys,
            )
        _close(engine, conn)

    def still_held(self) -> bool:
        """Whether our session is alive and still holds the lock (asked on that session)."""
        if self._conn is None:
            return False
        try:
            return bool(self._conn.scalar(_MINE_QUERY, self.keys))
        except SQLAlchemyError:
            return False  # the session is gone, and the lock with it

    def _holder(self, conn: Connection) -> Holder | None:
        row = conn.execute(_HOLDER_QUERY, self.keys).first()
        if row is None:  # released since we tried
            return None
        return Holder.from_application_name(row.application_name, row.address, row.backend_start)


def _describe_session(conn: Connection, holder: Holder) -> None:
    conn.execute(
        text("SELECT set_config('application_name', :name, false)"),
        {"name": holder.application_name()},
    )
    version: Any = conn.dialect.server_version_info or ()
    if tuple(version) >= (14,):
        # This connection idles for the whole run: a server-wide idle timeout must not end it,
        # or the lock with it.
        conn.execute(text("SELECT set_config('idle_session_timeout', '0', false)"))


def _close(engine: Engine, conn: Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(SQLAlchemyError):
            conn.close()
    engine.dispose()
