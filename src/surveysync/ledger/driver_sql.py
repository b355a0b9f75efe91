"""The ledger's hottest statements, run as SQL text through the driver.

A night writes one decision per sale and a handful of rows per request. Through SQLAlchemy
Core each row of an ``executemany`` costs about 22 µs (compiling parameters, bind
processors per value); handed to the driver as tuples, about 8 µs (benchmarks/bench_sync.py).
These helpers give the few statements that run per sale or per request the driver's
placeholder style and the stored form of a time, exactly as SQLAlchemy writes them, so that
rows written either way read back and compare alike. The SQL itself is plain: both SQLite
and PostgreSQL understand it, ``ON CONFLICT`` included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection


def placeholder(conn: Connection) -> str:
    """The driver's positional placeholder: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def placeholders(conn: Connection, count: int) -> str:
    """``?, ?, ?`` for ``count`` values, in the driver's style."""
    return ", ".join([placeholder(conn)] * count)


def time_writer(conn: Connection) -> Any:
    """A function giving the stored form of an aware time (``schema.UtcDateTime``): naive
    UTC; on SQLite the text SQLAlchemy's DATETIME writes (``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    if conn.dialect.name == "sqlite":
        return _sqlite_time
    return _naive_utc


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("the ledger stores aware datetimes only")
    return value.astimezone(UTC).replace(tzinfo=None)


def _sqlite_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("the ledger stores aware datetimes only")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def time_reader(conn: Connection) -> Any:
    """The inverse of ``time_writer``: an aware UTC time from what the driver hands back."""
    if conn.dialect.name == "sqlite":
        return _time_from_text
    return _aware_utc


def _aware_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _time_from_text(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def quoted(words: Iterable[str]) -> str:
    """``'a', 'b'``: fixed words of our own (reason codes, statuses), never data."""
    return ", ".join(f"'{word}'" for word in sorted(words))


def run_many(conn: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """``executemany`` through the driver (no per-row work in SQLAlchemy)."""
    if rows:
        conn.exec_driver_sql(sql, list(rows))
