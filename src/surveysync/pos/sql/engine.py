"""A SQLAlchemy engine on the POS database that can only read.

Three layers, because none is enough alone:

    the guard      every statement is checked here before it reaches the driver
                   (``assert_read_only``: one statement, a SELECT, WITH or SHOW that names
                   nothing that writes or locks, and calls none of the functions known to
                   act outside the query, such as ``pg_terminate_backend`` or ``dblink_exec``)
    the session    put in read-only mode at every checkout from the pool, not only when the
                   connection is made, so that a stored function that switched it off
                   (MariaDB ``SET SESSION tx_read_only=0``) cannot carry over to the next read
                   (``session``, which also sets the time zone the POS's times are read in)
    the login      the guard cannot see inside a function; ``surveysync check`` says when
                   the POS login itself could write (``login_write_rights``)

Drivers are also made to hand over a value they cannot convert (SQLite text that is not
UTF-8, a PostgreSQL ``infinity`` time) instead of failing the whole read, so that one bad
row is one row's problem. It must never send anything but reads, nor let a statement through
unchecked.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import sqlparse
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlparse import tokens as T

from surveysync.pos.base import PosError, PosUnavailable, ReadOnlyViolation
from surveysync.pos.sql import odbc
from surveysync.pos.sql.session import SessionSettings, SessionSetup, connect_args

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


# Functions a SELECT can call that act outside the query: end or signal other sessions,
# write through another connection, touch files or large objects, take locks, move
# sequences, change settings. Not complete (a stored function can do anything its owner
# may): the read-only session and a read-only login are the other layers.
_ACTING_FUNCTIONS = frozenset(
    {
        # PostgreSQL
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
        "pg_promote", "pg_switch_wal", "pg_create_restore_point", "pg_start_backup",
        "pg_stop_backup", "pg_backup_start", "pg_backup_stop", "pg_file_write",
        "pg_file_rename", "pg_file_unlink", "pg_read_file", "pg_read_binary_file", "pg_ls_dir",
        "pg_logical_emit_message", "pg_notify", "pg_advisory_lock", "pg_advisory_xact_lock",
        "pg_try_advisory_lock", "pg_try_advisory_xact_lock", "pg_advisory_lock_shared",
        "pg_drop_replication_slot", "pg_create_physical_replication_slot",
        "pg_create_logical_replication_slot", "pg_replication_origin_create",
        "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
        "set_config", "nextval", "setval", "txid_current", "pg_current_xact_id",
        "lo_import", "lo_export", "lo_unlink", "lo_create", "lo_creat", "lo_put",
        "lo_from_bytea", "dblink", "dblink_exec", "dblink_connect", "dblink_connect_u",
        "dblink_send_query", "dblink_open", "dblink_fetch", "dblink_disconnect",
        "pg_sleep", "pg_sleep_for", "pg_sleep_until",
        # MariaDB / MySQL
        "get_lock", "release_lock", "release_all_locks", "load_file", "sleep", "benchmark",
        "master_pos_wait", "sys_exec", "sys_eval", "lastval",
        # SQL Server
        "openrowset", "openquery", "opendatasource", "xp_cmdshell",
    }
)  # fmt: skip
_QUOTES = "\"`[]"


@lru_cache(maxsize=256)
def assert_read_only(statement: str) -> None:
    """Raise ReadOnlyViolation unless ``statement`` is one statement that only reads."""
    statements = [s for s in sqlparse.parse(statement) if s.value.strip(" \t\r\n;")]
    if len(statements) != 1:
        raise ReadOnlyViolation(f"refused: {len(statements)} statements in one call")
    tokens = [t for t in statements[0].flatten() if not t.is_whitespace]  # type: ignore[no-untyped-call]
    words = [t for t in tokens if t.ttype in T.Keyword or t.ttype in T.Name.Builtin]
    first = words[0].normalized.upper() if words else ""
    if first not in _READING_STARTS:
        raise ReadOnlyViolation(f"refused: the POS is read-only and this is a {first or '?'}")
    writing = sorted({w.normalized.upper() for w in words} & _WRITING_WORDS)
    if writing:
        raise ReadOnlyViolation(f"refused: the POS is read-only and this uses {', '.join(writing)}")
    acting = sorted(_called_functions(tokens) & _ACTING_FUNCTIONS)
    if acting:
        raise ReadOnlyViolation(f"refused: {', '.join(acting)} acts outside a read")


def _called_functions(tokens: list[Any]) -> set[str]:
    """The names followed by an opening parenthesis, unquoted and in lower case."""
    return {
        token.value.strip(_QUOTES).lower()
        for token, following in pairwise(tokens)
        if following.value == "(" and token.ttype not in T.String.Single
    }


def mapping_sql(query: str) -> str:
    """An operator's query as it can be wrapped in ``(...) AS src``: trailing semicolons and
    comments dropped, and a line end after it, so that nothing at its end (``;``, a
    ``-- comment``) can swallow the wrapper's closing parenthesis."""
    tokens = [t for statement in sqlparse.parse(query) for t in statement.flatten()]  # type: ignore[no-untyped-call]
    while tokens and (tokens[-1].is_whitespace or tokens[-1].ttype in T.Comment or
                      tokens[-1].value == ";"):  # fmt: skip
        tokens.pop()
    return "".join(t.value for t in tokens) + "\n"


def create_pos_engine(url: str, session: SessionSettings | None = None) -> Engine:
    """An engine on ``url`` that refuses anything but reading, with short READ COMMITTED (SQL
    Server: SNAPSHOT where allowed) reads that end in ROLLBACK, each session set up as
    ``session`` says (the time zone of the POS's naive times, the connect and query
    timeouts)."""
    parsed = _parse_url(url)
    session = session or SessionSettings()
    options: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        parsed = _sqlite_read_only(parsed)
    elif parsed.get_backend_name() == "postgresql":
        # psycopg only notes it for its next BEGIN. MySQL's and SQL Server's setters in
        # SQLAlchemy send a COMMIT: ``session`` sets their isolation instead.
        options["isolation_level"] = "READ COMMITTED"
    try:
        parsed = odbc.for_driver(parsed)
        driver = parsed.get_dialect().driver
        options["connect_args"] = connect_args(driver, session)
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ImportError) as exc:
        hint = ""
        if parsed.get_driver_name() == "pyodbc" and isinstance(exc, ImportError):
            # pyodbc is installed with surveysync; what fails to load is the driver manager.
            hint = "; pyodbc needs the unixODBC driver manager (Debian: apt install unixodbc)"
        raise PosError(f"pos.url: the database driver is not installed ({exc}){hint}") from exc
    _install_guards(engine, SessionSetup(engine.dialect.name, session))
    if parsed.get_backend_name() == "sqlite":
        _refuse_a_missing_file(engine, _sqlite_file(url))
    return engine


def _sqlite_file(url: str) -> Path | None:
    database = make_url(url).database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _refuse_a_missing_file(engine: Engine, path: Path | None) -> None:
    """Each connection first checks the file is there, so that a missing POS fails the run
    that tries to read it, naming the path (SQLite would only say "unable to open")."""
    if path is None:
        return

    @event.listens_for(engine, "do_connect")
    def _exists(*args: Any) -> None:
        if not path.is_file():
            raise PosUnavailable(
                f"the POS database is unavailable: the file {str(path.resolve())!r} does not "
                "exist (pos.url; a relative path is relative to the config file's folder)"
            )


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


def _install_guards(engine: Engine, setup: SessionSetup) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _only_reads(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        assert_read_only(statement)

    @event.listens_for(engine, "connect")
    def _lenient_driver(dbapi_connection: Any, connection_record: Any) -> None:
        _hand_over_bad_values(engine.dialect.driver, dbapi_connection)
        setup.on_connect(engine.dialect.driver, dbapi_connection, engine.dialect.loaded_dbapi.Error)

    @event.listens_for(engine, "checkout")
    def _read_only_session(dbapi_connection: Any, *args: Any) -> None:
        setup.on_checkout(dbapi_connection, engine.dialect.loaded_dbapi.Error)


def _hand_over_bad_values(driver: str, dbapi_connection: Any) -> None:
    """Make the driver return a value it cannot convert rather than fail the whole read:
    the mapping then names that row's column (``unreadable_row``)."""
    if driver == "pysqlite":
        dbapi_connection.text_factory = _sqlite_text
    elif driver == "psycopg":
        from surveysync.pos.sql import lenient_psycopg  # only where psycopg is installed

        lenient_psycopg.register(dbapi_connection)


def _sqlite_text(data: bytes) -> str:
    # Text that is not UTF-8 keeps its bytes as lone surrogates, which the mapping refuses.
    return data.decode("utf-8", "surrogateescape")
