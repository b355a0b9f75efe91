"""Every read of the POS ends in ROLLBACK, never COMMIT, on every database and driver: a night
(check, the sales of a window, the unplaced rows) leaves nothing committed, so that whatever a
function did inside a read is undone with it.

Seen where the database sees it: PostgreSQL's wire protocol as libpq traces it (each BEGIN
and what ended it), MariaDB's own per-session counters (``Com_commit``, ``Com_rollback``:
pymysql and the MariaDB ODBC driver), and the statements SQLite runs (its trace callback).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, event

from surveysync import pos
from surveysync.config import SqlPosSettings
from tests.conftest import TZ, local

# The filled POS databases of the error tests, as fixtures here too.
from tests.test_pos_errors import (
    mariadb_odbc_url,
    mariadb_url,
    pos_url,
    postgresql_url,
    sqlite_url,
)

__all__ = ["mariadb_odbc_url", "mariadb_url", "pos_url", "postgresql_url", "sqlite_url"]


def _pg_trace_flags() -> int:
    from psycopg import pq

    return int(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)


_PG_TRACE_FLAGS = _pg_trace_flags()


@dataclass
class Ending:
    """How the transactions of every connection opened during a test ended."""

    commits: int = 0
    rollbacks: int = 0
    begun: int = 0  # PostgreSQL: the BEGINs seen (each must end in a ROLLBACK)
    _readers: list[Any] = field(default_factory=list)

    def watch(self, dbapi_connection: Any) -> None:
        module = type(dbapi_connection).__module__
        if module.startswith("psycopg"):
            trace = tempfile.TemporaryFile()  # noqa: SIM115 (closed once read, in _pg_endings)
            dbapi_connection.pgconn.trace(trace.fileno())
            dbapi_connection.pgconn.set_trace_flags(_PG_TRACE_FLAGS)
            self._readers.append(lambda: _pg_endings(dbapi_connection, trace))
        elif module.startswith("sqlite3"):
            seen: list[str] = []
            dbapi_connection.set_trace_callback(seen.append)
            self._readers.append(lambda: _sqlite_endings(seen))
        else:  # pymysql, pyodbc on MariaDB: the session's own counters, read at the end
            self._readers.append(lambda: _mariadb_endings(dbapi_connection))

    def read(self) -> Ending:
        for reader in self._readers:
            commits, rollbacks, begun = reader()
            self.commits += commits
            self.rollbacks += rollbacks
            self.begun += begun
        return self


def _pg_endings(dbapi_connection: Any, trace: Any) -> tuple[int, int, int]:
    dbapi_connection.pgconn.untrace()
    trace.seek(0)
    # Lines such as: F <tab> 13 <tab> Query <tab> "ROLLBACK" (what the client sent).
    sent = [line.split("\t") for line in trace.read().decode().splitlines()]
    trace.close()
    queries = [
        parts[3].strip().strip('"').upper()
        for parts in sent
        if len(parts) > 3 and parts[0] == "F" and parts[2] == "Query"
    ]
    return (
        sum(q.startswith(("COMMIT", "END")) for q in queries),
        sum(q.startswith("ROLLBACK") for q in queries),
        sum(q.startswith(("BEGIN", "START TRANSACTION")) for q in queries),
    )


def _sqlite_endings(statements: list[str]) -> tuple[int, int, int]:
    words = [s.strip().split(maxsplit=1)[0].upper() for s in statements if s.strip()]
    return words.count("COMMIT") + words.count("END"), words.count("ROLLBACK"), 0


def _mariadb_endings(dbapi_connection: Any) -> tuple[int, int, int]:
    cursor = dbapi_connection.cursor()
    cursor.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Com_commit', 'Com_rollback')")
    counters = {str(name): int(value) for name, value in cursor.fetchall()}
    cursor.close()
    return counters["Com_commit"], counters["Com_rollback"], 0


@pytest.fixture
def endings() -> Iterator[Ending]:
    """Watches every engine's new connections while the test runs."""
    found = Ending()

    def connected(dbapi_connection: Any, record: Any) -> None:
        found.watch(dbapi_connection)

    event.listen(Engine, "connect", connected)
    try:
        yield found
    finally:
        event.remove(Engine, "connect", connected)


def test_a_night_of_reads_ends_every_transaction_in_rollback(pos_url: str, endings: Ending) -> None:
    """check, two windows of sales and the unplaced rows: not one COMMIT reaches the POS;
    reads that began a transaction were rolled back (SQLite reads begin none)."""
    source = pos.create(SqlPosSettings(url=pos_url), TZ)
    try:
        results = source.check()
        assert [r.ok for r in results[:2]] == [True, True], results
        for day in (19, 20):
            list(source.sales(local(2026, 11, day, 0), local(2026, 11, day + 1, 0)))
        source.unplaced()
        seen = endings.read()
    finally:
        source.close()
    assert seen.commits == 0, seen
    if pos_url.startswith("sqlite"):
        return
    assert seen.rollbacks >= 4, seen  # check, both windows and unplaced each read once or more
    if pos_url.startswith("postgresql"):
        assert seen.begun == seen.rollbacks, seen
