"""The POS stage: the store's sales, read-only, from the source that ``pos.kind`` names.

    base   what a sales source is (``SalesSource``), its ``CheckResult``, ``RowProblem``
           and the ``PosError`` tree (drawn there)
    sql    ``kind = "sql"`` (the default): a database through SQLAlchemy and a mapping

``create`` builds the configured source; ``check`` opens it, checks it and closes it. Adding
a source (an HTTP API, say) takes three things and touches nothing else::

    surveysync/pos/http.py        class HttpSource(SalesSource): sales, check, close, raising
                                  only the PosError tree
    surveysync/config.py          class HttpPosSettings(Section) with kind: Literal["http"],
                                  added to PosSettings as | Annotated[HttpPosSettings, Tag("http")]
    create, below                 case HttpPosSettings(): return HttpSource(settings, tz)

mypy then refuses a ``create`` that forgets the new settings class (``assert_never``).

Nothing in this package may write to the POS, whatever the source.
"""

from __future__ import annotations

from typing import assert_never
from zoneinfo import ZoneInfo

from surveysync.config import PosSettings, SqlPosSettings
from surveysync.pos.base import (
    CheckName,
    CheckResult,
    ColumnUnreadable,
    DriverMissing,
    LoginCanWrite,
    PosError,
    PosMappingError,
    PosUnavailable,
    ReadOnlyViolation,
    RowProblem,
    SalesSource,
    UnplacedRows,
)
from surveysync.pos.sql import (
    ASCEND_QUERY,
    REQUIRED_COLUMNS,
    SqlSource,
    assert_read_only,
    create_pos_engine,
)

# The name of the SQL source from before there was more than one kind.
PosSource = SqlSource


def create(settings: PosSettings, tz: ZoneInfo) -> SalesSource:
    """The sales source that ``settings.kind`` names (config has already picked the settings
    class by it). Raises PosError when the source cannot even be set up (a bad URL, a driver
    not installed)."""
    match settings:
        case SqlPosSettings():
            return SqlSource(settings, tz)
        case _:
            assert_never(settings)


def check(settings: PosSettings, tz: ZoneInfo) -> list[CheckResult]:
    """Open the configured source, check it and close it: the lines of ``surveysync check``,
    or a health answer. Never raises PosError: a source that cannot be set up is a failure
    like any other."""
    try:
        source = create(settings, tz)
    except PosError as exc:
        return [CheckResult.failed(exc)]
    try:
        return source.check()
    finally:
        source.close()


__all__ = [
    "ASCEND_QUERY",
    "REQUIRED_COLUMNS",
    "CheckName",
    "CheckResult",
    "ColumnUnreadable",
    "DriverMissing",
    "LoginCanWrite",
    "PosError",
    "PosMappingError",
    "PosSource",
    "PosUnavailable",
    "ReadOnlyViolation",
    "RowProblem",
    "SalesSource",
    "SqlSource",
    "UnplacedRows",
    "assert_read_only",
    "check",
    "create",
    "create_pos_engine",
]
