"""The SQL sales source: the read-only engine and the mapping, streamed in keyed chunks.

Each chunk is its own short read: ``SELECT … FROM (<mapping>) AS src WHERE <after the last
key> ORDER BY sale_at, transaction_id LIMIT n`` on a fresh connection, so no transaction or
server cursor stays open between chunks, a year of history never sits in memory, and the
dialect renders the limit (LIMIT, TOP or FETCH) itself.

SQLAlchemy and driver errors are translated here, once, into the ``PosError`` tree of
``surveysync.pos.base``; none may leave this module as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime, Engine, Select, and_, bindparam, column, or_, select, text
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError, SQLAlchemyError

from surveysync.config import Preset, SqlPosSettings
from surveysync.errors import first_line
from surveysync.model import Sale
from surveysync.pos.base import (
    CheckName,
    CheckResult,
    PosError,
    PosMappingError,
    PosUnavailable,
    RowProblem,
    SalesSource,
)
from surveysync.pos.sql.engine import create_pos_engine
from surveysync.pos.sql.mapping import (
    ASCEND_QUERY,
    REQUIRED_COLUMNS,
    TIME_COLUMNS,
    row_to_sale,
    to_pos_time,
)


class SqlSource(SalesSource):
    """The store's sales, read from its database through the configured mapping."""

    def __init__(self, settings: SqlPosSettings, tz: ZoneInfo) -> None:
        self._settings = settings
        self._tz = tz
        self._engine: Engine = create_pos_engine(settings.url.get_secret_value())
        self._mapped = mapped_subquery(settings)

    def close(self) -> None:
        self._engine.dispose()

    def sales(self, start: datetime, end: datetime) -> Iterator[list[Sale | RowProblem]]:
        """Chunks of sales with ``start < sale_at <= end``, in (sale_at, transaction_id) order."""
        params = {
            "start": to_pos_time(start, self._tz, self._settings.timestamps),
            "end": to_pos_time(end, self._tz, self._settings.timestamps),
        }
        after: tuple[Any, Any] | None = None
        while True:
            rows = self._read_chunk(params, after)
            if not rows:
                return
            last = rows[-1]
            after = (last["sale_at"], last["transaction_id"])
            yield [row_to_sale(row, self._tz, self._settings.timestamps) for row in rows]
            if len(rows) < self._settings.chunk_size:
                return

    def check(self) -> list[CheckResult]:
        """The database answers (read-only), then the mapping yields every required column."""
        mapping = f"{self._settings.mapping.value}: every required column present"
        checks = (
            (CheckName.POS, self.check_reachable, "reachable, read-only"),
            (CheckName.MAPPING, self.check_columns, mapping),
        )
        results: list[CheckResult] = []
        for name, probe, detail in checks:
            try:
                probe()
            except PosError as exc:
                return [*results, CheckResult.failed(exc)]
            results.append(CheckResult.passed(name, detail))
        return results

    def check_reachable(self) -> None:
        """Raise PosUnavailable unless the database answers a trivial read."""
        self._execute(select(1), {})

    def check_columns(self) -> None:
        """Raise PosMappingError unless the mapping yields every required column."""
        probe = select(text("*")).select_from(self._mapped).limit(0)
        try:
            with self._engine.connect() as conn:
                present = set(conn.execute(probe, _probe_params()).keys())
        except SQLAlchemyError as exc:
            raise _translate(exc) from exc
        missing = [
            name for name in REQUIRED_COLUMNS if name.lower() not in {p.lower() for p in present}
        ]
        if missing:
            raise PosMappingError(f"the mapped query lacks columns: {', '.join(missing)}")

    def _read_chunk(
        self, params: dict[str, datetime], after: tuple[Any, Any] | None
    ) -> list[dict[str, Any]]:
        statement = chunk_statement(self._mapped, self._settings.chunk_size, after)
        values: dict[str, Any] = dict(params)
        if after is not None:
            values |= {"after_at": after[0], "after_id": after[1]}
        return self._execute(statement, values)

    def _execute(self, statement: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            with self._engine.connect() as conn:
                return [dict(row) for row in conn.execute(statement, params).mappings()]
        except SQLAlchemyError as exc:
            raise _translate(exc) from exc


def chunk_statement(mapped: Any, chunk_size: int, after: tuple[Any, Any] | None) -> Select[Any]:
    """The next chunk after the (sale_at, transaction_id) key ``after``, in key order."""
    src = mapped.c
    statement = select(*src).order_by(src.sale_at, src.transaction_id)
    if after is not None:
        after_at = bindparam("after_at", type_=DateTime())
        statement = statement.where(
            or_(
                src.sale_at > after_at,
                and_(src.sale_at == after_at, src.transaction_id > bindparam("after_id")),
            )
        )
    return statement.limit(chunk_size)


def mapped_subquery(settings: SqlPosSettings) -> Any:
    """The configured mapping as a typed subquery named ``src``."""
    sql = ASCEND_QUERY if settings.mapping is Preset.ASCEND else (settings.query or "")
    columns = [
        column(name, DateTime()) if name in TIME_COLUMNS else column(name)
        for name in REQUIRED_COLUMNS
    ]
    mapped = text(sql).bindparams(
        bindparam("start", type_=DateTime()), bindparam("end", type_=DateTime())
    )
    return mapped.columns(*columns).subquery("src")


def _probe_params() -> dict[str, datetime]:
    moment = datetime(2000, 1, 1)
    return {"start": moment, "end": moment}


# SQLite reports a query that does not fit the schema as an OperationalError.
_MAPPING_HINTS = ("no such table", "no such column", "syntax error", "ambiguous column")


def _translate(exc: SQLAlchemyError) -> PosError:
    if isinstance(exc, ProgrammingError) or any(h in str(exc) for h in _MAPPING_HINTS):
        return PosMappingError(f"the POS rejected the mapped query: {first_line(exc)}")
    if isinstance(exc, OperationalError | DBAPIError):
        return PosUnavailable(f"the POS database is unavailable: {first_line(exc)}")
    return PosError(f"reading the POS failed: {first_line(exc)}")
