"""A SQLAlchemy engine on the POS database that can only read.

The database login should be read-only too, but we do not rely on it: every statement is
checked here before it reaches the driver (``assert_read_only``: one statement, a SELECT,
WITH or SHOW that names nothing that writes or locks), and sessions are put in read-only mode
where the server supports it. It must never send anything else, nor let a statement through
unchecked.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlparse
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlparse import tokens as T

from surveysync.pos.base import PosError, ReadOnlyViolation

_READING_STARTS = frozenset({"SELECT", "WITH", "SHOW"})
# Keywords that make an otherwise SELECT-looking statement write or lock something.
_WRITING_WORDS = frozenset(
    {
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "UPSERT",
        "REPLACE",
        "INTO",
        "CREATE",
        "DROP",
        "ALTER",
        "TRUNCATE",
        "GRANT",
        "REVOKE",
        "EXEC",
        "EXECUTE",
        "CALL",
        "LOCK",
        "COPY",
    }
)


@lru_cache(maxsize=256)
def assert_read_only(statement: str) -> None:
    """Raise ReadOnlyViolation unless ``statement`` is one statement that only reads."""
    statements = [s for s in sqlparse.parse(statement) if s.value.strip(" \t\r\n;")]
    if len(statements) != 1:
        raise ReadOnlyViolation(f"refused: {len(statements)} statements in one call")
    tokens = statements[0].flatten()  # type: ignore[no-untyped-call]
    words = [t for t in tokens if t.ttype in T.Keyword or t.ttype in T.Name.Builtin]
    first = words[0].normalized.upper() if words else ""
    if first not in _READING_STARTS:
        raise ReadOnlyViolation(f"refused: the POS is read-only and this is a {first or '?'}")
    writing = sorted({w.normalized.upper() for w in words} & _WRITING_WORDS)
    if writing:
        raise ReadOnlyViolation(f"refused: the POS is read-only and this uses {', '.join(writing)}")


def create_pos_engine(url: str) -> Engine:
    """An engine on ``url`` that refuses anything but reading, with short READ COMMITTED reads."""
    parsed = _parse_url(url)
    options: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        parsed = _sqlite_read_only(parsed)
    else:
        options["isolation_level"] = "READ COMMITTED"
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ImportError) as exc:
        raise PosError(f"pos.url: the database driver is not installed ({exc})") from exc
    _install_guards(engine)
    return engine


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise PosError("pos.url is not a database URL (for example sqlite:///pos.sqlite)") from exc


def _sqlite_read_only(url: URL) -> URL:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return url
    query = dict(url.query) | {"mode": "ro", "uri": "true"}
    return url.set(database=f"file:{database}", query=query)


def _install_guards(engine: Engine) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _only_reads(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        assert_read_only(statement)

    @event.listens_for(engine, "connect")
    def _read_only_session(dbapi_connection: Any, connection_record: Any) -> None:
        _set_session_read_only(engine.dialect.name, dbapi_connection)


def _set_session_read_only(dialect: str, dbapi_connection: Any) -> None:
    # Issued on the raw DB-API connection: these are the only non-SELECT statements we send,
    # and they only take rights away.
    statement = {
        "sqlite": "PRAGMA query_only = ON",
        "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        "mysql": "SET SESSION TRANSACTION READ ONLY",
        "mariadb": "SET SESSION TRANSACTION READ ONLY",
    }.get(dialect)
    if statement is None:
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()
    if dialect != "sqlite":
        # A session setting issued inside a transaction would be undone by its rollback.
        dbapi_connection.commit()
