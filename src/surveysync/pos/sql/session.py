"""What every POS session is set to before it reads: read-only, in which isolation, the time
zone the POS's naive times are in, and how long it may wait; and how every read ends.

    read-only   PostgreSQL: every transaction begins READ ONLY (psycopg's ``read_only``);
                MariaDB/MySQL: ``SET SESSION TRANSACTION … READ ONLY`` at every checkout;
                SQLite: ``PRAGMA query_only`` at every checkout. SQL Server has no
                read-only session: there the guard, ``ApplicationIntent=ReadOnly`` (the
                ``[pos.sqlserver]`` settings) and the ROLLBACK below are what keep it unchanged
    isolation   READ COMMITTED; on SQL Server SNAPSHOT when the database allows it
                (``ALLOW_SNAPSHOT_ISOLATION ON``: the read neither waits for nor blocks the
                tills), else READ COMMITTED
    time zone   at every checkout, the zone ``pos.timestamps`` names (UTC, or the store's):
                PostgreSQL ``SET TIME ZONE``, MariaDB/MySQL ``SET time_zone``
    timeouts    ``pos.connect_timeout`` and ``pos.query_timeout``, for every driver:

        driver     connect timeout                      query timeout
        psycopg    connect_timeout (whole seconds,      statement_timeout, at every checkout
                   at least 2: libpq's floor)
        pymysql    connect_timeout, and read_timeout    read_timeout and write_timeout, once
                   while it logs in                     logged in
        pyodbc     the login timeout (``timeout``)      the connection's query ``timeout``
        sqlite3    the busy timeout (waiting for a      (a local file: no server to wait for)
                   writer's lock)

Every read transaction ends in ROLLBACK, never COMMIT, on every database: nothing here
commits (SQLAlchemy's own isolation setters for MySQL and SQL Server send a COMMIT, so the
isolation is set here instead), and SQLAlchemy rolls back each connection it hands back.
Whatever a stored function did inside a read (PostgreSQL ``set_config``) is undone with it.

Nothing waits forever: a server that accepts the connection and never answers fails the
read once the connect timeout runs out, and a read that never ends once the query timeout
does.

The time zone is why a business day reads the same sales whatever the server's default:
window bounds are bound as naive times in that frame, so a zone-aware column
(``timestamptz``, MariaDB ``TIMESTAMP``) must read them in that frame too, and hand its
values over in it. A naive column (``timestamp``, ``DATETIME``) compares as it is. Both are
set at every checkout, not only on connect, so that a stored function that changed them
cannot carry over to the next read (MariaDB's session variables outlive a ROLLBACK).

Only settings that take rights away or fix how values are read are sent here, on the raw
DB-API connection, past the guard: never anything that writes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# A zone name as the IANA database spells it (or an offset): safe inside quotes.
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-/:]+$")
_CLIENT_GRACE_S = 5
_MYSQL_READ_ONLY = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY"
_READ_ONLY = {
    "sqlite": "PRAGMA query_only = ON",
    "mysql": _MYSQL_READ_ONLY,
    "mariadb": _MYSQL_READ_ONLY,
}
# 1 when the database allows SNAPSHOT transactions (ALLOW_SNAPSHOT_ISOLATION ON).
MSSQL_SNAPSHOT_ALLOWED = (
    "SELECT snapshot_isolation_state FROM sys.databases WHERE database_id = DB_ID()"
)


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """How each POS session is set up. ``time_zone``: the zone the POS's naive times are
    in (``UTC``, or the store's zone name for ``pos.timestamps = "local"``)."""

    time_zone: str = "UTC"
    connect_timeout: float = 15.0  # seconds
    query_timeout: float = 300.0  # seconds

    def __post_init__(self) -> None:
        if not _ZONE_NAME.match(self.time_zone):
            raise ValueError(f"not a time zone name: {self.time_zone!r}")


def connect_args(driver: str, settings: SessionSettings) -> dict[str, Any]:
    """The driver's own arguments for the timeouts it applies while connecting."""
    connect, query = settings.connect_timeout, settings.query_timeout
    if driver == "psycopg":
        return {"connect_timeout": max(1, math.ceil(connect))}
    if driver == "pymysql":
        # The login is read with read_timeout: the connect timeout until logged in
        # (``on_connect`` then sets the query timeout).
        return {"connect_timeout": connect, "read_timeout": connect, "write_timeout": query}
    if driver == "pyodbc":
        return {"timeout": max(1, math.ceil(connect))}  # the ODBC login timeout
    if driver == "pysqlite":
        return {"timeout": connect}
    return {}


class SessionSetup:
    """Sets each checked-out connection of one engine up; remembers a zone the server does
    not know (MariaDB without its time zone tables), so that it is said once, not per read."""

    def __init__(self, dialect: str, settings: SessionSettings) -> None:
        self._dialect = dialect
        self._settings = settings
        self._zone_known = True
        self._mssql_isolation = "READ COMMITTED"

    def on_connect(self, driver: str, dbapi_connection: Any, dbapi_error: type[Exception]) -> None:
        """The query timeout of drivers that keep it on the connection, and of MariaDB/MySQL
        servers (so that a read the client gave up on does not run on there); PostgreSQL
        transactions that begin read-only; SQL Server's isolation, asked once."""
        query = self._settings.query_timeout
        if driver == "pymysql":
            # pymysql has no setter: the attribute its reads use (set from read_timeout),
            # a little over the server's own limit, which then speaks first.
            dbapi_connection._read_timeout = query + _CLIENT_GRACE_S
        elif driver == "pyodbc":
            dbapi_connection.timeout = max(1, math.ceil(query))
        elif driver == "psycopg":
            dbapi_connection.read_only = True  # BEGIN … READ ONLY, for every transaction
        if self._dialect in ("mysql", "mariadb"):
            _set_mysql_statement_time(dbapi_connection, query, dbapi_error)
        elif self._dialect == "mssql":
            self._mssql_isolation = _mssql_isolation(dbapi_connection, dbapi_error)

    def on_checkout(self, dbapi_connection: Any, dbapi_error: type[Exception]) -> None:
        """Read-only, the isolation and the time zone, each time the pool hands the connection
        out. Never committed: MariaDB's and SQL Server's SET outlive a transaction, and
        PostgreSQL's are undone with the read they were made for (set again next time)."""
        cursor = dbapi_connection.cursor()
        try:
            statement = _READ_ONLY.get(self._dialect)
            if statement is not None:
                cursor.execute(statement)
            if self._dialect == "mssql":
                cursor.execute(f"SET TRANSACTION ISOLATION LEVEL {self._mssql_isolation}")
            self._set_time_zone(cursor, dbapi_error)
        finally:
            cursor.close()

    def _set_time_zone(self, cursor: Any, dbapi_error: type[Exception]) -> None:
        zone = self._settings.time_zone
        if self._dialect == "postgresql":
            milliseconds = max(1, round(self._settings.query_timeout * 1000))
            cursor.execute(f"SET TIME ZONE '{zone}'")
            cursor.execute(f"SET statement_timeout = {milliseconds}")
        elif self._dialect in ("mysql", "mariadb") and self._zone_known:
            self._set_mysql_time_zone(cursor, zone, dbapi_error)

    def _set_mysql_time_zone(self, cursor: Any, zone: str, dbapi_error: type[Exception]) -> None:
        # UTC as an offset: a named zone needs the server's time zone tables loaded.
        try:
            cursor.execute(f"SET time_zone = '{'+00:00' if zone == 'UTC' else zone}'")
        except dbapi_error as exc:
            self._zone_known = False
            log.warning(
                "pos.time_zone_unknown",
                zone=zone,
                error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                hint="TIMESTAMP columns are read in the server's zone: load its time zone "
                "tables (mysql_tzinfo_to_sql), or store UTC and set pos.timestamps = 'utc'",
            )


def _set_mysql_statement_time(
    dbapi_connection: Any, seconds: float, dbapi_error: type[Exception]
) -> None:
    """MariaDB's ``max_statement_time`` (seconds), else MySQL's ``max_execution_time``
    (milliseconds, reads only); a server with neither keeps the client's timeout alone."""
    cursor = dbapi_connection.cursor()
    try:
        for statement in (
            f"SET SESSION max_statement_time = {seconds:g}",
            f"SET SESSION max_execution_time = {max(1, round(seconds * 1000))}",
        ):
            try:
                cursor.execute(statement)
                return
            except dbapi_error:
                continue
    finally:
        cursor.close()


def _mssql_isolation(dbapi_connection: Any, dbapi_error: type[Exception]) -> str:
    """SNAPSHOT when the database allows it, else (or when it cannot be asked) READ
    COMMITTED. The question opens a transaction (pyodbc reads in implicit transactions),
    rolled back at once: SQL Server refuses a switch to SNAPSHOT inside a transaction that
    began under another level."""
    cursor = dbapi_connection.cursor()
    row = None
    try:
        cursor.execute(MSSQL_SNAPSHOT_ALLOWED)
        row = cursor.fetchone()
    except dbapi_error as exc:
        log.warning("pos.snapshot_unknown", error=type(exc).__name__, isolation="READ COMMITTED")
    finally:
        cursor.close()
        dbapi_connection.rollback()
    return "SNAPSHOT" if row is not None and row[0] == 1 else "READ COMMITTED"
