"""What a sales source is: the one interface every POS backend implements, and its errors.

A sales source hands the sync the store's sales of a window, checks itself for ``surveysync
check`` (or a health endpoint), and closes. ``surveysync.pos.sql`` is the one there is (a
database read through SQLAlchemy and a mapping query); another backend implements
``SalesSource`` in its own module and lets only the errors below out of it.

Error tree (every foreign error leaves a source as one of these; nothing else is raised)::

    PosError                  the source cannot be used (a bad URL, a driver not installed)
    ├── DriverMissing         the (ODBC) driver the URL names is not installed: says which,
    │                         how to list the installed ones and where to get it
    ├── PosUnavailable        cannot connect, or the server failed the read: retry later
    ├── PosMappingError       the mapping does not fit the POS (a table, a column, the SQL):
    │   │                     an operator must fix the config
    │   └── ColumnUnreadable  the driver cannot read a mapped column at all (``column``)
    ├── LoginCanWrite         ``check`` only: the POS login could write (use a read-only one)
    └── ReadOnlyViolation     something other than a read was about to reach the POS: a bug

A row that cannot be read is not an error: it is a ``RowProblem`` in its chunk (naming the
column, the value masked), and the night goes on. A self-check is not an error either:
``check`` answers ``CheckResult`` values, each failure carrying its ``PosError`` so that
callers tell failures apart by class. Error messages never hold the POS URL's credentials.

A source must never write to the POS, hold a transaction or a cursor open between chunks,
or load a whole window into memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from surveysync.model import Sale


class PosError(Exception):
    """Something went wrong reading the POS."""


class DriverMissing(PosError):
    """The driver the POS URL names cannot be loaded on this machine; retrying will not help."""


class PosUnavailable(PosError):
    """The POS could not be reached or the server refused the read; try later."""


class PosMappingError(PosError):
    """The configured mapping does not fit the POS schema; an operator must fix the config."""


class ColumnUnreadable(PosMappingError):
    """The driver fails on a mapped column itself, not on one row's value: never retried."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


class LoginCanWrite(PosError):
    """The POS login has rights beyond reading (a superuser, write grants, a role)."""


class ReadOnlyViolation(PosError):
    """A statement other than a plain read was about to be sent to the POS."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row that could not be turned into a Sale, and why: the column, and what is wrong
    with its value (masked). Whatever of the row could be read is kept, so that the sale
    gets its decision (``unreadable_row``) under its own key."""

    transaction_id: str | None
    problem: str
    column: str | None = None
    customer_id: str | None = None
    sale_at: datetime | None = None
    location_id: str | None = None


@dataclass(frozen=True, slots=True)
class UnplacedRows:
    """Rows that no window can hold (no sale time a window could compare), counted once per
    run so that they are never lost in silence."""

    count: int
    sample_ids: tuple[str, ...] = ()  # a few transaction ids, for support


class CheckName(StrEnum):
    """What a self-check is about: one word per line of ``surveysync check``."""

    POS = "pos"  # the source answers, read-only
    MAPPING = "mapping"  # what it answers fits the Sale record
    LOGIN = "pos-login"  # the login itself cannot write (a least-privilege login)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One thing a source checked about itself, ready to print or to serve, never to parse.

    ``error`` is the failure itself when ``ok`` is false: a ``PosUnavailable`` (retry later)
    and a ``PosMappingError`` (fix the config) are told apart by its class.
    """

    name: CheckName
    ok: bool
    detail: str
    error: PosError | None = None

    @classmethod
    def passed(cls, name: CheckName, detail: str) -> CheckResult:
        return cls(name, True, detail)

    @classmethod
    def failed(cls, error: PosError) -> CheckResult:
        """A failure, named by what it says: a mapping that does not fit, or a POS not read."""
        name = CheckName.POS
        if isinstance(error, PosMappingError):
            name = CheckName.MAPPING
        elif isinstance(error, LoginCanWrite):
            name = CheckName.LOGIN
        return cls(name, False, str(error), error)


@runtime_checkable
class SalesSource(Protocol):
    """Where the store's sales come from. Built by ``surveysync.pos.create``; closed by its
    caller."""

    def sales(self, start: datetime, end: datetime) -> Iterator[list[Sale | RowProblem]]:
        """Chunks of the sales with ``start < sale_at <= end`` (aware, store time), in
        (sale_at, transaction_id) order, each chunk a short read of its own.

        Raises PosUnavailable (retry later), PosMappingError (fix the config) or
        DriverMissing (install the driver).
        """
        ...

    def unplaced(self) -> UnplacedRows | None:
        """Rows of the POS that no window would ever read (a sale time that is empty or not
        a time at all); None when this source cannot tell. Raises like ``sales``."""
        ...

    def check(self) -> list[CheckResult]:
        """Each self-check in order, ending at the first failure (a later check needs the
        earlier ones); never raises PosError."""
        ...

    def close(self) -> None:
        """Let go of connections; the source is not used afterwards."""
        ...
