"""The SQL sales source: the read-only engine and the mapping, streamed in keyed chunks.

Each chunk is its own short read: ``SELECT … FROM (<mapping>) AS src WHERE <from the last
key on> ORDER BY sale_at, transaction_id LIMIT n`` on a fresh connection, so no transaction or
server cursor stays open between chunks, a year of history never sits in memory, and the
dialect renders the limit (LIMIT, TOP or FETCH) itself. Columns are read as the driver hands
them over (no SQLAlchemy type conversion), so a bad value is one row's problem, found by the
mapping, and the key of the last row is passed back as it came.

Two rows may share a transaction id and a time (one transaction id for two customers): the
next chunk starts *at* the last key, and rows already handed over there are dropped, so none
is lost at a chunk boundary.

SQLAlchemy and driver errors are translated here, once, into the ``PosError`` tree of
``surveysync.pos.base``, by the driver's code (``driver_errors``), a timeout that ran out
named as the connect or the query timeout; none may leave this module as they are, and no
message holds the URL's credentials.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Select,
    and_,
    bindparam,
    column,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    ProgrammingError,
    SQLAlchemyError,
)

from surveysync.config import Preset, SqlPosSettings, Timestamps
from surveysync.errors import ambiguous_userinfo, first_line, without_credentials
from surveysync.model import Sale
from surveysync.pos.base import (
    CheckName,
    CheckResult,
    ColumnUnreadable,
    LoginCanWrite,
    PosError,
    PosMappingError,
    PosUnavailable,
    RowProblem,
    SalesSource,
    UnplacedRows,
)
from surveysync.pos.sql import login, odbc, sqlserver
from surveysync.pos.sql.driver_errors import error_class, ran_out
from surveysync.pos.sql.engine import create_pos_engine, mapping_sql
from surveysync.pos.sql.mapping import (
    ASCEND_QUERY,
    EARLIEST,
    LATEST,
    REQUIRED_COLUMNS,
    UNPLACED_QUERY,
    PosValues,
    row_to_sale,
    to_pos_time,
)
from surveysync.pos.sql.session import SessionSettings

# key=value pairs of an ODBC connection string (a value may be braced).
_KEY_VALUE = re.compile(r"(?:^|;)\s*([A-Za-z_]+)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*)")
# What a driver raises for a value it cannot hand over (beside the DBAPI's DataError).
_VALUE_ERRORS = (ValueError, TypeError, OverflowError, ArithmeticError)
_SAMPLE = 10


class SqlSource(SalesSource):
    """The store's sales, read from its database through the configured mapping."""

    def __init__(self, settings: SqlPosSettings, tz: ZoneInfo) -> None:
        self._settings = settings
        self._tz = tz
        self._url = sqlserver.pos_url(settings)
        self._secrets = _secrets_of(settings)
        try:
            self._engine: Engine = create_pos_engine(self._url, _session(settings, tz))
        except PosError as exc:
            raise type(exc)(without_credentials(str(exc), self._url)) from exc
        self._mapped = mapped_subquery(settings)
        self._values = PosValues.of(settings)

    def close(self) -> None:
        self._engine.dispose()

    def sales(self, start: datetime, end: datetime) -> Iterator[list[Sale | RowProblem]]:
        """Chunks of sales with ``start < sale_at <= end``, in (sale_at, transaction_id) order."""
        params = {
            "start": to_pos_time(start, self._tz, self._settings.timestamps),
            "end": to_pos_time(end, self._tz, self._settings.timestamps),
        }
        boundary = _Boundary()
        while True:
            rows = self._read_chunk(params, boundary.key)
            fresh = boundary.new_rows(rows)
            if rows and not fresh and len(rows) == self._settings.chunk_size:
                raise PosMappingError(
                    f"more than pos.chunk_size ({len(rows)}) rows share transaction id "
                    f"{boundary.key[1] if boundary.key else '?'} and one time; the mapping must "
                    "yield one row per sale and customer"
                )
            if fresh:
                frame = self._settings.timestamps
                yield [row_to_sale(row, self._tz, frame, self._values) for row in fresh]
            if len(rows) < self._settings.chunk_size:
                return

    def unplaced(self) -> UnplacedRows | None:
        """With the preset, the transactions whose finalized and creation times are both
        unusable (no window compares them); a custom mapping cannot tell."""
        if self._settings.mapping is not Preset.ASCEND:
            return None
        rows = text(UNPLACED_QUERY).bindparams(
            bindparam("earliest", EARLIEST), bindparam("latest", LATEST)
        )
        found = rows.columns(column("transaction_id")).subquery("unplaced")
        [counted] = self._execute(select(func.count().label("n")).select_from(found), {})
        sample = select(found.c.transaction_id).order_by(found.c.transaction_id).limit(_SAMPLE)
        ids = tuple(str(row["transaction_id"]) for row in self._execute(sample, {}))
        return UnplacedRows(int(counted["n"]), ids)

    def check(self) -> list[CheckResult]:
        """The database answers (read-only), the mapping yields every required column, and
        the login cannot write."""
        mapping = f"{self._settings.mapping.value}: every required column present"
        checks = (
            (CheckName.POS, self.check_reachable, "reachable, read-only"),
            (CheckName.MAPPING, self.check_columns, mapping),
            (CheckName.LOGIN, self.check_login, "the POS login can only read"),
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
            with self._connect() as conn:
                present = set(conn.execute(probe, _probe_params()).keys())
        except SQLAlchemyError as exc:
            raise self._translate(exc) from exc
        missing = [
            name for name in REQUIRED_COLUMNS if name.lower() not in {p.lower() for p in present}
        ]
        if missing:
            raise PosMappingError(f"the mapped query lacks columns: {', '.join(missing)}")

    def check_login(self) -> None:
        """Raise LoginCanWrite when the POS login itself could change the POS."""
        try:
            with self._connect() as conn:
                rights = login.write_rights(conn, self._engine.dialect.name)
        except SQLAlchemyError as exc:
            raise self._translate(exc) from exc
        if rights:
            raise LoginCanWrite(
                "the POS login can write: "
                + "; ".join(rights)
                + ". surveysync only reads, but a query can call a function that writes: "
                "give it a read-only login (README: 'A read-only POS login')"
            )

    def _read_chunk(
        self, params: dict[str, Any], after: tuple[Any, Any] | None
    ) -> list[dict[str, Any]]:
        statement = chunk_statement(self._mapped, self._settings.chunk_size, after)
        values: dict[str, Any] = dict(params)
        if after is not None:
            values |= {"after_at": after[0], "after_id": after[1]}
        try:
            return self._execute(statement, values, values_fail=True)
        except _ValuesFailed as failed:
            raise self._unreadable_column(values, after, failed.error) from failed.error

    def _unreadable_column(
        self, values: dict[str, Any], after: tuple[Any, Any] | None, error: BaseException
    ) -> PosError:
        """The driver could not hand over the chunk: name the column it fails on."""
        for name in REQUIRED_COLUMNS:
            alone = chunk_statement(self._mapped, self._settings.chunk_size, after, name)
            try:
                self._execute(alone, values, values_fail=True)
            except _ValuesFailed as failed:
                detail = self._clean(_detail(failed.error))
                return ColumnUnreadable(name, f"the POS cannot hand over column {name}: {detail}")
        return PosMappingError(
            f"the POS cannot hand over the mapped rows: {self._clean(_detail(error))}"
        )

    def _execute(
        self, statement: Any, params: dict[str, Any], *, values_fail: bool = False
    ) -> list[dict[str, Any]]:
        try:
            with self._connect() as conn:
                return [dict(row) for row in conn.execute(statement, params).mappings()]
        except (DataError, *_VALUE_ERRORS) as exc:
            if values_fail:
                raise _ValuesFailed(exc) from exc
            raise self._translate(exc) from exc
        except SQLAlchemyError as exc:
            raise self._translate(exc) from exc

    def _connect(self) -> Connection:
        """A connection, its failure translated as one while connecting (a timeout that runs
        out here is the connect timeout)."""
        try:
            return self._engine.connect()
        except SQLAlchemyError as exc:
            raise self._translate(exc, connecting=True) from exc

    def _clean(self, message: str) -> str:
        message = without_credentials(message, self._url)
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    def _translate(self, exc: BaseException, *, connecting: bool = False) -> PosError:
        """The driver's error as the PosError its code says (``error_class``); by its DB-API
        class when no code says."""
        missing = odbc.missing_driver(exc, self._url)
        if missing is not None:
            return missing
        message = self._clean(first_line(exc))
        if isinstance(exc, (DataError, *_VALUE_ERRORS)):
            return PosMappingError(f"the POS cannot hand over a value: {message}")
        if ran_out(exc):
            return PosUnavailable(self._clean(self._timed_out(connecting, message)))
        kind = error_class(exc) or _class_by_type(exc)
        if kind is PosMappingError:
            return PosMappingError(f"the POS rejected the mapped query: {message}")
        if kind is PosUnavailable:
            hint = ""
            if ambiguous_userinfo(self._url):
                hint = " (pos.url has an '@' in its user name or password: write it as %40)"
            return PosUnavailable(f"the POS database is unavailable: {message}{hint}")
        return PosError(f"reading the POS failed: {message}")

    def _timed_out(self, connecting: bool, message: str) -> str:
        """Which timeout ran out, and where (``_clean`` it: a misread host can hold a
        piece of the password)."""
        which = "connect_timeout" if connecting else "query_timeout"
        seconds = getattr(self._settings, which)
        return (
            f"the POS database is unavailable: {_where(self._url)} did not answer within the "
            f"{which.replace('_', ' ')} (pos.{which} = {seconds:g} s): {message}"
        )


def _where(url: str) -> str:
    """The server a URL names (host and port, or an ``odbc_connect`` string's Server and
    Port), without its credentials."""
    parsed = make_url(url)
    connect = parsed.query.get("odbc_connect")
    if not parsed.host and isinstance(connect, str):
        parts = {key.lower(): value for key, value in _KEY_VALUE.findall(connect)}
        server, _, port = parts.get("server", "").strip("{}").removeprefix("tcp:").partition(",")
        port = port or parts.get("port", "")
        return (f"{server}:{port}" if port else server) or "the server"
    if not parsed.host:
        return "the server"
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


def _secrets_of(settings: SqlPosSettings) -> list[str]:
    """What of ``[pos.sqlserver]`` must never show in a message (the URL's own user
    information is masked by ``without_credentials``)."""
    server = settings.sqlserver
    if server is None:
        return []
    found = [server.password, server.odbc_connect]
    values = [value.get_secret_value() for value in found if value is not None]
    if server.password is not None:
        values.append(sqlserver.quoted(server.password.get_secret_value()))
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def _class_by_type(exc: BaseException) -> type[PosError] | None:
    """For an error no code classifies: SQL the server refused is the mapping's, any other
    driver error an outage."""
    if isinstance(exc, ProgrammingError):
        return PosMappingError
    if isinstance(exc, DBAPIError):
        return PosUnavailable
    return None


def _session(settings: SqlPosSettings, tz: ZoneInfo) -> SessionSettings:
    """Sessions read in the frame of the POS's naive times, so that window bounds (bound
    naive in that frame) mean the same instants to zone-aware columns on any server."""
    zone = "UTC" if settings.timestamps is Timestamps.UTC else tz.key
    return SessionSettings(
        time_zone=zone,
        connect_timeout=settings.connect_timeout,
        query_timeout=settings.query_timeout,
    )


class _ValuesFailed(Exception):
    """Inside this module only: the driver failed on the values it was handing over."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Boundary:
    """The key the next chunk starts at, and the rows already handed over at that key."""

    def __init__(self) -> None:
        self.key: tuple[Any, Any] | None = None
        self._seen: set[tuple[Any, Any]] = set()

    def new_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = [row for row in rows if not self._handed_over(row)]
        if rows:
            last = _key(rows[-1])
            if last != self.key:
                self.key, self._seen = last, set()
            self._seen |= {_identity(row) for row in rows if _key(row) == last}
        return fresh

    def _handed_over(self, row: dict[str, Any]) -> bool:
        return _key(row) == self.key and _identity(row) in self._seen


def _key(row: dict[str, Any]) -> tuple[Any, Any]:
    return (row["sale_at"], row["transaction_id"])


def _identity(row: dict[str, Any]) -> tuple[Any, Any]:
    return (row["transaction_id"], row["customer_id"])


def _detail(error: BaseException) -> str:
    return first_line(error) if str(error).strip() else type(error).__name__


def chunk_statement(
    mapped: Any, chunk_size: int, after: tuple[Any, Any] | None, only: str | None = None
) -> Select[Any]:
    """The next chunk from the (sale_at, transaction_id) key ``after`` on, in key order
    (rows at ``after`` itself again: the caller drops those it has). ``only``: that column
    alone, to find which one a driver cannot read."""
    src = mapped.c
    picked = [src[only]] if only else list(src)
    statement = select(*picked).order_by(src.sale_at, src.transaction_id)
    if after is not None:
        after_at: Any = bindparam("after_at")
        statement = statement.where(
            or_(
                src.sale_at > after_at,
                and_(src.sale_at == after_at, src.transaction_id >= bindparam("after_id")),
            )
        )
    return statement.limit(chunk_size)


def mapped_subquery(settings: SqlPosSettings) -> Any:
    """The configured mapping as a subquery named ``src``; its columns carry no SQLAlchemy
    type, so values arrive as the driver reads them."""
    times = [bindparam("start", type_=DateTime()), bindparam("end", type_=DateTime())]
    if settings.mapping is Preset.ASCEND:
        mapped = text(ASCEND_QUERY).bindparams(
            *times, bindparam("earliest", EARLIEST), bindparam("latest", LATEST)
        )
    else:
        mapped = text(mapping_sql(settings.query or "")).bindparams(*times)
    return mapped.columns(*(column(name) for name in REQUIRED_COLUMNS)).subquery("src")


def _probe_params() -> dict[str, datetime]:
    moment = datetime(2000, 1, 1)
    return {"start": moment, "end": moment}
