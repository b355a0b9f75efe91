"""Which ``PosError`` a driver's error is, told by its code, never by its wording.

Each driver says what went wrong in its own code; the class a driver picks does not (pymysql
raises OperationalError for an unknown column, which is the operator's to fix, not an
outage to retry all night)::

    driver     the code                     unavailable (retry)         mapping (fix the config)
    psycopg    orig.sqlstate (SQLSTATE)     08, 53, 57P0x, 57014, 58,   42 (syntax, no column or
                                            40001, 40P01, 55P03, XX     table, no right), 22, 25006
    pymysql    orig.args[0] (MySQL code)    2002 2003 2005 2006 2013    1054 1146 1064 1052 1060
                                            2055 1040 1053 1205 1213    1142 1143 1305 1630 1792
                                            1927 1969 3024              1222 1248
    pyodbc     orig.args[0] (SQLSTATE)      08, HYT00, HYT01, HY018,    42 (42S02, 42S22, 42000),
                                            70100, 40001                22, 25
    sqlite3    orig.sqlite_errorcode        BUSY, LOCKED, CANTOPEN,     ERROR (no such column or
               (its primary code)           IOERR, INTERRUPT, FULL,     table, syntax), READONLY,
                                            NOMEM, PROTOCOL             RANGE, MISMATCH

A code not in the table (or no code at all) is ``None``: the caller falls back on the error's
DB-API class. ``ran_out`` says whether the error is a timeout running out, by the driver's
timeout error or code, so that the caller can name which one.
"""

from __future__ import annotations

import sqlite3

from surveysync.pos.base import PosError, PosMappingError, PosUnavailable

_UNAVAILABLE = PosUnavailable
_MAPPING = PosMappingError

# SQLSTATE: the code's class (its first two characters), else the whole code.
_SQLSTATE_CLASSES: dict[str, type[PosError]] = {
    "08": _UNAVAILABLE,  # connection exception
    "53": _UNAVAILABLE,  # insufficient resources (too many connections, disk full)
    "58": _UNAVAILABLE,  # system error (I/O)
    "XX": _UNAVAILABLE,  # internal error
    "42": _MAPPING,  # syntax error or access rule violation: no such column or table
    "22": _MAPPING,  # data exception: a value the query cannot take
    "25": _MAPPING,  # invalid transaction state: the query tried to write
}
_SQLSTATES: dict[str, type[PosError]] = {
    "57P01": _UNAVAILABLE,  # admin shutdown
    "57P02": _UNAVAILABLE,  # crash shutdown
    "57P03": _UNAVAILABLE,  # cannot connect now (starting up)
    "57014": _UNAVAILABLE,  # query canceled: the statement timeout
    "40001": _UNAVAILABLE,  # serialization failure
    "40P01": _UNAVAILABLE,  # deadlock
    "55P03": _UNAVAILABLE,  # lock not available
    "HYT00": _UNAVAILABLE,  # ODBC: timeout expired
    "HYT01": _UNAVAILABLE,  # ODBC: connection timeout expired
    # ODBC: the driver's query timeout ran out and the server declined its cancel (MariaDB's
    # driver, when the server's own max_statement_time stopped the read first)
    "HY018": _UNAVAILABLE,
    "70100": _UNAVAILABLE,  # MariaDB/MySQL: query interrupted (a statement time limit)
}
_TIMEOUT_SQLSTATES: frozenset[object] = frozenset(
    {"57014", "HYT00", "HYT01", "HY018", "70100"}
)

_MYSQL_CODES: dict[int, type[PosError]] = {
    **dict.fromkeys(
        # can't connect (socket, TCP, unknown host), gone away, lost, too many connections,
        # shutting down, lock wait, deadlock, killed, statement time exceeded (MariaDB, MySQL)
        (2002, 2003, 2005, 2006, 2013, 2055, 1040, 1053, 1205, 1213, 1927, 1969, 3024),
        _UNAVAILABLE,
    ),
    **dict.fromkeys(
        # unknown column, no such table, syntax, ambiguous column, duplicate column name,
        # command or column denied, no such function (twice), write in a read-only
        # transaction, column counts differ, derived table without an alias
        (1054, 1146, 1064, 1052, 1060, 1142, 1143, 1305, 1630, 1792, 1222, 1248),
        _MAPPING,
    ),
}
_MYSQL_TIMEOUTS: frozenset[object] = frozenset({1969, 3024})

_SQLITE_CODES: dict[int, type[PosError]] = {
    **dict.fromkeys(
        (
            sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN,
            sqlite3.SQLITE_IOERR, sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_FULL,
            sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_PROTOCOL,
        ),
        _UNAVAILABLE,
    ),
    **dict.fromkeys(
        (sqlite3.SQLITE_ERROR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_RANGE,
         sqlite3.SQLITE_MISMATCH),
        _MAPPING,
    ),
}  # fmt: skip


def error_class(error: BaseException) -> type[PosError] | None:
    """``PosUnavailable`` or ``PosMappingError`` as the driver's code says (``error`` may be
    SQLAlchemy's wrapper, whose ``orig`` is the driver's); None when no code says."""
    driver_error = getattr(error, "orig", None) or error
    driver = type(driver_error).__module__.split(".")[0]
    if driver == "psycopg":
        return _by_sqlstate(getattr(driver_error, "sqlstate", None))
    if driver == "pymysql":
        code = _first_arg(driver_error)
        return _MYSQL_CODES.get(code) if isinstance(code, int) else None
    if driver == "pyodbc":
        return _by_sqlstate(_first_arg(driver_error))
    if isinstance(driver_error, sqlite3.Error):
        primary = _sqlite_primary_code(driver_error)
        return None if primary is None else _SQLITE_CODES.get(primary)
    return None


def ran_out(error: BaseException) -> bool:
    """Whether ``error`` is a timeout running out: the driver's timeout code, or a socket
    timeout under it (pymysql, psycopg's connect timeout)."""
    driver_error = getattr(error, "orig", None) or error
    # pymysql gives both: a SQLSTATE (70100 for any interrupted query) and its own number.
    if getattr(driver_error, "sqlstate", None) in _TIMEOUT_SQLSTATES:
        return True
    if _first_arg(driver_error) in _TIMEOUT_SQLSTATES | _MYSQL_TIMEOUTS:
        return True
    if type(driver_error).__name__ == "ConnectionTimeout":  # psycopg's connect_timeout
        return True
    return _caused_by_timeout(driver_error)


def _by_sqlstate(state: object) -> type[PosError] | None:
    if not isinstance(state, str) or len(state) != 5:
        return None
    if state in _SQLSTATES:
        return _SQLSTATES[state]
    return _SQLSTATE_CLASSES.get(state[:2])


def _first_arg(error: BaseException) -> object:
    return error.args[0] if error.args else None


def _sqlite_primary_code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    return code & 0xFF if isinstance(code, int) else None  # extended codes keep it in the low byte


def _caused_by_timeout(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, TimeoutError):
            return True
        seen.add(id(current))
        inner = getattr(current, "original_exception", None)  # pymysql keeps the socket's
        current = inner or current.__cause__ or current.__context__
    return False
