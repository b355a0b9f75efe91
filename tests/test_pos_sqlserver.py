"""SQL Server as a POS: reached through Microsoft's ODBC Driver 18 (from its PyPI wheel) and
FreeTDS, by ``pos.url`` or by the ``[pos.sqlserver]`` settings; read in T-SQL that SQL Server
parses, with the parameters in the order their ``?`` stand; its times on the right day.

No SQL Server runs here: the connection path is real (the ODBC driver manager, the driver,
a TCP connection to 127.0.0.1) against a server that accepts and never answers, and a port
where nothing listens. The SQL is compiled by SQLAlchemy's mssql+pyodbc dialect exactly as
the source sends it and parsed with sqlglot's T-SQL dialect.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlglot
from click.testing import CliRunner
from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, func, select, text
from sqlglot import exp

from surveysync import pos
from surveysync.cli import main
from surveysync.config import (
    ConfigError,
    Preset,
    SqlPosSettings,
    SqlServerSettings,
    Timestamps,
    load_settings,
)
from surveysync.pos import CheckName, PosUnavailable
from surveysync.pos.sql import login
from surveysync.pos.sql.mapping import EARLIEST, LATEST, UNPLACED_QUERY, row_to_sale, to_pos_time
from surveysync.pos.sql.odbc import MICROSOFT_DRIVER, microsoft_driver_library
from surveysync.pos.sql.session import MSSQL_SNAPSHOT_ALLOWED, SessionSettings, SessionSetup
from surveysync.pos.sql.source import chunk_statement, mapped_subquery
from surveysync.pos.sql.sqlserver import connection_string
from surveysync.windows import day_start, slice_days
from tests.conftest import TZ, Store, server_missing
from tests.test_pos_timeouts import bounded as _bounded

T = TypeVar("T")
BOUND_S = 120  # the longest a test waits: far beyond every timeout it sets
PASSWORD = "Zq7;pw}{secret"  # braces and a semicolon: quoted, never shown
DRIVERS = {"microsoft": MICROSOFT_DRIVER, "freetds": "FreeTDS"}


class SilentServer:
    """A port on 127.0.0.1 that accepts every connection and never says a word, counting
    the connections it got."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.port = int(self._socket.getsockname()[1])
        self.held: list[socket.socket] = []
        self._over = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._over.is_set():
            self.held.append(self._socket.accept()[0])

    def close(self) -> None:
        self._over.set()
        socket.create_connection(("127.0.0.1", self.port)).close()  # wakes accept()
        self._thread.join(timeout=BOUND_S)
        self._socket.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest) -> str:
    """Each SQL Server ODBC driver: Microsoft's (registered, or from the mssql extra's
    wheel), FreeTDS (Debian's tdsodbc); missing fails where services are required."""
    import pyodbc

    name = DRIVERS[request.param]
    wheel = name == MICROSOFT_DRIVER and microsoft_driver_library() is not None
    if name not in pyodbc.drivers() and not wheel:
        server_missing(f"the ODBC driver {name!r}", pyodbc.drivers())
    return name


def _by_parts(port: int, driver: str, **more: Any) -> SqlPosSettings:
    parts: dict[str, Any] = {
        "server": "127.0.0.1",
        "port": port,
        "database": "Ascend",
        "user": "surveysync",
        "password": PASSWORD,
        "driver": driver,
    }
    return SqlPosSettings(sqlserver=SqlServerSettings(**(parts | more)), connect_timeout=1)


def _by_url(port: int, driver: str) -> SqlPosSettings:
    url = (
        f"mssql+pyodbc://surveysync:{PASSWORD.replace(';', '%3B')}@127.0.0.1:{port}/Ascend"
        f"?driver={driver.replace(' ', '+')}&Encrypt=no"
    )
    return SqlPosSettings(url=url, connect_timeout=1)


@pytest.mark.parametrize("way", [_by_parts, _by_url], ids=["sqlserver-settings", "url"])
def test_a_silent_sql_server_fails_check_on_the_connect_timeout(
    silent: SilentServer, driver: str, way: Callable[[int, str], SqlPosSettings]
) -> None:
    """The driver connects to the port configured (the server sees it), then gives up
    after the connect timeout: check's pos line names the host, the port and the timeout,
    never the password."""
    results = _bounded(lambda: pos.check(way(silent.port, driver), TZ))
    [failed] = results
    assert failed.name is CheckName.POS and isinstance(failed.error, PosUnavailable)
    assert f"127.0.0.1:{silent.port}" in failed.detail, failed.detail
    assert "connect timeout" in failed.detail, failed.detail
    assert PASSWORD not in failed.detail and "Zq7" not in failed.detail
    assert silent.held, "the driver never reached the configured port"


def test_no_sql_server_on_the_port_is_unavailable(closed_port: int, driver: str) -> None:
    """Nothing listening: unavailable (retried), naming where."""
    [failed] = _bounded(lambda: pos.check(_by_parts(closed_port, driver), TZ))
    assert isinstance(failed.error, PosUnavailable), failed
    assert PASSWORD not in failed.detail


def test_the_password_from_a_secret_file_reaches_the_driver_and_no_output(
    tmp_path: Path, silent: SilentServer, driver: str
) -> None:
    """``[pos.sqlserver]`` in the TOML file with password_file: check fails on the silent
    server (the settings loaded and reached the driver) and prints no piece of it."""
    secret = tmp_path / "pos-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    store = Store(tmp_path)
    config = store.write_config()
    pos_line = re.compile(r'^url = "sqlite:///.*pos\.sqlite"$', re.MULTILINE)
    text_ = pos_line.sub("connect_timeout = 1", config.read_text(encoding="utf-8"), count=1)
    config.write_text(
        text_
        + '\n[pos.sqlserver]\nserver = "127.0.0.1"\n'
        + f'port = {silent.port}\ndatabase = "Ascend"\nuser = "surveysync"\n'
        + f'password_file = "{secret.as_posix()}"\ndriver = "{driver}"\n',
        encoding="utf-8",
    )
    result = _bounded(lambda: CliRunner().invoke(main, ["--config", str(config), "check"]))
    assert result.exit_code == 1, result.output
    assert re.search(rf"^pos\s+failed.*127\.0\.0\.1:{silent.port}", result.output, re.M)
    assert "Zq7" not in result.output


def _pairs(connect: str) -> dict[str, str]:
    """An ODBC connection string's keywords (lower case) and values, braces undone."""
    found = re.findall(r"(?:^|;)([^=;]+)=(\{(?:[^}]|\}\})*\}|[^;]*)", connect)
    return {
        key.lower(): value[1:-1].replace("}}", "}") if value.startswith("{") else value
        for key, value in found
    }


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ({"port": 1444}, {"server": "tcp:db1,1444", "encrypt": "yes"}),
        ({"instance": "ASCEND"}, {"server": "db1\\ASCEND"}),
        ({"trust_server_certificate": True}, {"trustservercertificate": "yes"}),
        ({"encrypt": "strict"}, {"encrypt": "strict"}),
        ({"read_only_intent": False}, {"applicationintent": None}),
        (
            {"windows_authentication": True, "user": None, "password": None},
            {"trusted_connection": "yes", "uid": None, "pwd": None},
        ),
        ({"driver": "FreeTDS", "port": 1444}, {"server": "db1", "port": "1444"}),
        ({"driver": "FreeTDS", "encrypt": "no"}, {"encryption": "off", "encrypt": None}),
    ],
)
def test_the_sqlserver_settings_become_the_keywords_the_driver_reads(
    parts: dict[str, Any], expected: dict[str, str | None]
) -> None:
    base: dict[str, Any] = {"server": "db1", "database": "Ascend", "user": "ro"}
    settings = SqlServerSettings(**(base | {"password": PASSWORD} | parts))
    found = _pairs(connection_string(settings))
    assert found["database"] == "Ascend"
    if "pwd" not in expected:
        assert found["pwd"] == PASSWORD and found["uid"] == "ro"  # quoted, read back whole
    if "applicationintent" not in expected:
        assert found["applicationintent"] == "ReadOnly"
    for key, value in expected.items():
        assert found.get(key) == value, (key, found)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else json.dumps(value)


@pytest.mark.parametrize(
    ("parts", "says"),
    [
        ({"instance": "ASCEND", "port": 1433}, "instance or port, not both"),
        ({"server": "db1\\ASCEND"}, "pos.sqlserver.instance"),
        ({"server": "db1,1433"}, "pos.sqlserver.port"),
        ({"password": None}, "user and password"),
        ({"windows_authentication": True}, "leave out user and password"),
        ({"database": None}, "needs server and database"),
        ({"odbc_connect": "Driver={FreeTDS};Server=db1"}, "leave out database, password"),
        ({"port": 70000}, "pos.sqlserver.port = 70000"),
    ],
)
def test_sqlserver_settings_that_cannot_work_are_refused_saying_why(
    tmp_path: Path, parts: dict[str, Any], says: str
) -> None:
    """As the operator sees it: the config error names the key and what to do, and never
    shows the password."""
    base: dict[str, Any] = {"server": "db1", "database": "Ascend", "user": "ro"}
    chosen = {k: v for k, v in (base | {"password": PASSWORD} | parts).items() if v is not None}
    config = tmp_path / "surveysync.toml"
    lines = [f"{key} = {_toml(value)}" for key, value in chosen.items()]
    config.write_text("[pos.sqlserver]\n" + "\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert says in str(caught.value), str(caught.value)
    assert "Zq7" not in str(caught.value)


def test_pos_url_and_sqlserver_settings_together_are_refused() -> None:
    parts = SqlServerSettings(server="db1", database="Ascend", user="ro", password=PASSWORD)
    with pytest.raises(ValidationError, match="keep one of them"):
        SqlPosSettings(url="mssql+pyodbc://db1/Ascend?driver=FreeTDS", sqlserver=parts)


def test_an_odbc_connect_string_is_taken_as_it_is() -> None:
    connect = "Driver={FreeTDS};Server=db1;Port=1444;Database=Ascend;UID=ro;PWD=x;Foo=bar"
    assert connection_string(SqlServerSettings(odbc_connect=connect)) == connect


# --- the T-SQL surveysync sends ----------------------------------------------------------


@pytest.fixture(scope="module")
def mssql() -> Engine:
    """An engine of the mssql+pyodbc dialect, only compiled against (never connected)."""
    return create_engine(f"mssql+pyodbc://ro:pw@db1/Ascend?driver={DRIVERS['freetds']}")


def _tsql(engine: Engine, statement: Any, **values: Any) -> tuple[exp.Expression, str]:
    """The statement as the source sends it (TOP rendered, ``?`` placeholders), parsed as
    T-SQL with each ``?`` replaced by ``@name``, the parameter sent in its place."""
    compiled = statement.params(**values).compile(
        dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
    )
    sql = str(compiled)
    names = iter(compiled.positiontup or ())
    named = re.sub(r"\?", lambda _: f"@{next(names)}", sql)
    assert next(names, None) is None, "more parameters than placeholders"
    return sqlglot.parse_one(named, read="tsql", error_level=sqlglot.ErrorLevel.RAISE), sql


def _comparisons(tree: exp.Expression) -> set[str]:
    return {
        node.sql(dialect="tsql")
        for node in tree.find_all(exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ)
        if node.find(exp.Parameter)
    }


BOUNDS = {"start": datetime(2026, 10, 24, 22), "end": datetime(2026, 10, 25, 23)}


@pytest.mark.parametrize("after", [None, (datetime(2026, 10, 25, 9), "T-17")])
def test_the_preset_chunk_is_t_sql_with_top_and_each_parameter_in_its_place(
    mssql: Engine, after: tuple[datetime, str] | None
) -> None:
    statement = chunk_statement(mapped_subquery(SqlPosSettings()), 5000, after)
    keys = {"after_at": after[0], "after_id": after[1]} if after else {}
    tree, sql = _tsql(mssql, statement, **BOUNDS, **keys)
    assert re.match(r"SELECT TOP 5000 ", sql) and not re.search(r"\bLIMIT\b", sql)
    assert tree.args["limit"].expression.to_py() == 5000
    inner = tree.find(exp.Subquery)
    assert inner is not None and inner.this.args.get("order") is None  # T-SQL refuses it
    expected = {
        "t.finalized_at > @start",
        "t.finalized_at <= @end",
        "t.created_at > @start",
        "t.created_at <= @end",
        "t.finalized_at >= @earliest",
        "t.finalized_at <= @latest",
        "t.finalized_at < @earliest",
        "t.finalized_at > @latest",
    }
    if after:
        expected |= {"src.sale_at > @after_at", "src.sale_at = @after_at"}
        expected |= {"src.transaction_id >= @after_id"}
    assert _comparisons(tree) == expected


def test_a_custom_chunk_keeps_the_admins_query_and_binds_in_order(mssql: Engine) -> None:
    query = (
        "SELECT s.SaleID AS transaction_id, s.Closed AS sale_at, s.Closed AS finalized_at, "
        "s.CustomerID AS customer_id, c.Email AS email, c.First AS first_name, "
        "c.Last AS last_name, 'nl' AS language, 1 AS include_in_communications, "
        "0 AS unsubscribed, s.StoreID AS location_id, NULL AS location_name, "
        "NULL AS employee_name, s.Total AS total, 'sale' AS kind "
        "FROM dbo.Sales s LEFT JOIN dbo.Customers c ON c.CustomerID = s.CustomerID "
        "WHERE s.Closed > :start AND s.Closed <= :end"
    )
    settings = SqlPosSettings(mapping=Preset.CUSTOM, query=query)
    after = {"after_at": datetime(2026, 10, 25, 9), "after_id": "T-17"}
    statement = chunk_statement(mapped_subquery(settings), 5000, (after["after_at"], "T-17"))
    tree, sql = _tsql(mssql, statement, **BOUNDS, **after)
    assert sql.startswith("SELECT TOP 5000 ")
    assert _comparisons(tree) == {
        "s.Closed > @start",
        "s.Closed <= @end",
        "src.sale_at > @after_at",
        "src.sale_at = @after_at",
        "src.transaction_id >= @after_id",
    }


def test_the_column_check_unplaced_rows_and_login_check_are_t_sql(mssql: Engine) -> None:
    mapped = mapped_subquery(SqlPosSettings())
    probe = select(text("*")).select_from(mapped).limit(0)
    _, sql = _tsql(mssql, probe, start=EARLIEST, end=EARLIEST)
    assert sql.startswith("SELECT TOP 0 *") and not re.search(r"\bLIMIT\b", sql)
    unplaced = (
        text(UNPLACED_QUERY)
        .bindparams(earliest=EARLIEST, latest=LATEST)
        .columns()
        .subquery("unplaced")
    )
    counted, _ = _tsql(mssql, select(func.count().label("n")).select_from(unplaced))
    assert counted.find(exp.Count) is not None
    for question in (login._MSSQL_SYSADMIN, login._MSSQL_ROLES, MSSQL_SNAPSHOT_ALLOWED):
        sqlglot.parse_one(question, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)


# --- DATETIME and DATETIME2 values on their business day ---------------------------------

# What pyodbc hands over: DATETIME in 1/300 s ticks shown to the millisecond (.997 is the
# last tick of a second), DATETIME2(7) to the microsecond (its 100 ns cut off).
LAST_DATETIME_TICK = timedelta(microseconds=997_000)
LAST_DATETIME2 = timedelta(microseconds=999_999)


@pytest.mark.parametrize("timestamps", list(Timestamps))
@pytest.mark.parametrize(
    ("wall", "day"),
    [
        (datetime(2026, 10, 25, 23, 59, 59) + LAST_DATETIME_TICK, 25),  # the DST-end day
        (datetime(2026, 10, 25, 23, 59, 59) + LAST_DATETIME2, 25),
        (datetime(2026, 10, 26, 0, 0, 0), 25),  # a window holds its end: (start, end]
        (datetime(2026, 10, 26, 0, 0, 0, 3_000), 26),  # the first tick after midnight
        (datetime(2026, 10, 24, 23, 59, 59) + LAST_DATETIME_TICK, 24),
        (datetime(2026, 3, 29, 23, 59, 59) + LAST_DATETIME_TICK, 29),  # the DST-start day
    ],
)
def test_datetime_ticks_land_on_their_business_day(
    timestamps: Timestamps, wall: datetime, day: int
) -> None:
    """A POS time read back (``row_to_sale``) lies in the day window whose naive bounds
    (``to_pos_time``, as bound to the query) hold it: the server's comparison and the
    store's day agree, in the store's zone or in UTC."""
    store_time = wall.replace(tzinfo=TZ)
    value = to_pos_time(store_time, TZ, timestamps)  # what the POS column holds
    sale = row_to_sale(
        {
            "transaction_id": "T1",
            "sale_at": value,
            "finalized_at": value,
            "customer_id": "C1",
            "email": "kim@example.com",
            "first_name": "Kim",
            "last_name": None,
            "language": "nl",
            "include_in_communications": 1,
            "unsubscribed": 0,
            "location_id": "1",
            "location_name": None,
            "employee_name": None,
            "total": "10.00",
            "kind": "sale",
        },
        TZ,
        timestamps,
    )
    assert not isinstance(sale, pos.RowProblem), sale
    assert sale.sale_at == store_time
    first = day_start(wall.date() - timedelta(days=2), TZ)
    windows = slice_days(first, day_start(wall.date() + timedelta(days=2), TZ), TZ)
    by_server = [
        w.day
        for w in windows
        if to_pos_time(w.start, TZ, timestamps) < value <= to_pos_time(w.end, TZ, timestamps)
    ]
    by_store = [w.day for w in windows if w.start < sale.sale_at <= w.end]
    assert by_server == by_store == [wall.date().replace(day=day)]


# --- SQL Server sessions -----------------------------------------------------------------


class _Refused(Exception):
    """The recorded connection's DB-API error."""


class _Recorded:
    """A DB-API connection that records what it is sent and answers the snapshot question:
    the one part of the SQL Server path no server here can play."""

    def __init__(self, snapshot_state: int | None) -> None:
        self.sent: list[str] = []
        self.ended: list[str] = []
        self._state = snapshot_state

    def cursor(self) -> Any:
        connection = self

        class Cursor:
            def execute(self, statement: str) -> None:
                connection.sent.append(statement)
                if statement == MSSQL_SNAPSHOT_ALLOWED and connection._state is None:
                    raise _Refused("permission denied on sys.databases")

            def fetchone(self) -> tuple[int | None]:
                return (connection._state,)

            def close(self) -> None:
                pass

        return Cursor()

    def commit(self) -> None:
        self.ended.append("COMMIT")

    def rollback(self) -> None:
        self.ended.append("ROLLBACK")


@pytest.mark.parametrize(
    ("state", "level"), [(1, "SNAPSHOT"), (0, "READ COMMITTED"), (None, "READ COMMITTED")]
)
def test_sql_server_reads_in_snapshot_where_the_database_allows_it(
    state: int | None, level: str
) -> None:
    """Asked once per connection (then rolled back, never committed; a question refused
    means READ COMMITTED); every checkout sets the level between transactions."""
    connection = _Recorded(state)
    setup = SessionSetup("mssql", SessionSettings())
    setup.on_connect("pyodbc", connection, _Refused)
    setup.on_checkout(connection, _Refused)
    setup.on_checkout(connection, _Refused)
    assert connection.sent == [MSSQL_SNAPSHOT_ALLOWED] + 2 * [
        f"SET TRANSACTION ISOLATION LEVEL {level}"
    ]
    assert connection.ended == ["ROLLBACK"]
    # sqlglot reads no SET TRANSACTION; the question itself is parsed with the other T-SQL.
