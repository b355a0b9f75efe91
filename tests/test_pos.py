"""The SQL POS source: read-only by construction, mapped columns, time zones, keyed chunks."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import mssql

from surveysync.config import Preset, SqlPosSettings, Timestamps
from surveysync.demo import new_pos
from surveysync.pos import (
    PosMappingError,
    ReadOnlyViolation,
    SqlSource,
    assert_read_only,
    create_pos_engine,
)
from surveysync.pos.sql.source import chunk_statement, mapped_subquery
from tests.conftest import TZ, Store, local


def _pos_file(tmp_path: Path) -> Path:
    writer = new_pos(tmp_path / "pos.sqlite")
    writer.location(1, "Centrum")
    writer.customer("C1", "Kim", "Jansen", "kim@example.com")
    writer.sale("C1", datetime(2026, 11, 20, 10, 0))
    writer.flush()
    writer.engine.dispose()
    return tmp_path / "pos.sqlite"


def test_the_pos_engine_refuses_an_update_and_the_data_stays(tmp_path: Path) -> None:
    """An UPDATE through the POS engine is refused in code; the row is unchanged."""
    path = _pos_file(tmp_path)
    engine = create_pos_engine(f"sqlite:///{path}")
    with (
        pytest.raises(ReadOnlyViolation, match="read-only and this is a UPDATE"),
        engine.connect() as conn,
    ):
        conn.execute(text("UPDATE customers SET email = 'x@example.com'"))
    engine.dispose()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT email FROM customers").fetchall() == [("kim@example.com",)]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM customers",
        "INSERT INTO customers (id) VALUES ('x')",
        "SELECT 1; DROP TABLE customers",
        "select * into backup from customers",
        "WITH gone AS (DELETE FROM customers RETURNING *) SELECT * FROM gone",
        "SELECT * FROM customers FOR UPDATE",
        "EXEC sp_who",
        "PRAGMA writable_schema = ON",
        "CREATE TABLE x (id int)",
    ],
)
def test_statements_that_write_or_lock_are_refused(statement: str) -> None:
    """Anything but a plain read is refused before it reaches a driver."""
    with pytest.raises(ReadOnlyViolation):
        assert_read_only(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1",
        "  -- the night's sales\n  select id from transactions where note = 'DELETE me'",
        "WITH recent AS (SELECT id FROM transactions) SELECT id FROM recent",
        "SHOW server_version",
    ],
)
def test_plain_reads_pass_the_guard(statement: str) -> None:
    """Reads, comments and string literals that merely mention a keyword are fine."""
    assert_read_only(statement)


def test_the_sqlite_pos_is_opened_read_only_even_past_the_guard(tmp_path: Path) -> None:
    """Even a raw driver cursor cannot write: the file is opened in read-only mode."""
    path = _pos_file(tmp_path)
    engine = create_pos_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only"):
            cursor.execute("DELETE FROM customers")
    engine.dispose()


def test_a_custom_query_maps_another_schema(tmp_path: Path) -> None:
    """Custom SQL with :start/:end maps a different POS schema into sales."""
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as raw:
        raw.executescript("""
            CREATE TABLE bon (nr TEXT, klant TEXT, mail TEXT, gesloten TEXT, bedrag REAL);
            INSERT INTO bon VALUES ('B1', 'K1', 'Anne@Example.nl', '2026-11-20 10:00:00', 25.5);
            INSERT INTO bon VALUES ('B2', 'K2', 'piet@example.nl', '2026-11-21 10:00:00', 10);
        """)
    query = """SELECT nr AS transaction_id, gesloten AS sale_at, gesloten AS finalized_at,
                      klant AS customer_id, mail AS email, NULL AS first_name,
                      NULL AS last_name, 'nl' AS language, 1 AS include_in_communications,
                      0 AS unsubscribed, '1' AS location_id, 'Winkel' AS location_name,
                      NULL AS employee_name, bedrag AS total, 'sale' AS kind
               FROM bon WHERE gesloten > :start AND gesloten <= :end"""
    settings = SqlPosSettings(url=f"sqlite:///{path}", mapping=Preset.CUSTOM, query=query)
    source = SqlSource(settings, TZ)
    source.check_columns()
    (chunk,) = list(source.sales(local(2026, 11, 20, 0), local(2026, 11, 20, 23)))
    source.close()

    (sale,) = chunk
    assert (sale.transaction_id, sale.email, str(sale.total)) == ("B1", "Anne@Example.nl", "25.5")
    assert sale.finalized_at == local(2026, 11, 20, 10)


def test_utc_timestamps_are_converted_to_the_store_zone_once(tmp_path: Path) -> None:
    """With timestamps = utc, a sale at 23:30 UTC belongs to the next local day."""
    writer = new_pos(tmp_path / "pos.sqlite")
    writer.location(1, "Centrum")
    writer.customer("C1", "Kim", "Jansen", "kim@example.com")
    writer.sale("C1", datetime(2026, 11, 20, 23, 30))  # 00:30 on the 21st in Amsterdam
    writer.flush()
    settings = SqlPosSettings(url=f"sqlite:///{tmp_path / 'pos.sqlite'}", timestamps=Timestamps.UTC)
    source = SqlSource(settings, TZ)

    assert list(source.sales(local(2026, 11, 20, 0), local(2026, 11, 21, 0))) == []
    (chunk,) = list(source.sales(local(2026, 11, 21, 0), local(2026, 11, 22, 0)))
    source.close()
    assert chunk[0].sale_at == datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    assert chunk[0].sale_at.tzinfo == TZ


def test_sales_stream_in_keyed_chunks_in_time_order(store: Store) -> None:
    """Thousands of sales arrive in bounded chunks, each sale once, oldest first (a chunk
    starts at the last key of the one before, whose rows it does not hand over again)."""
    store.customer("C1")
    for n in range(2_345):
        store.pos.sale("C1", datetime(2026, 11, 20, 8 + n // 600, (n // 10) % 60))
    store.extra["pos"] = {"chunk_size": "500"}
    settings = store.settings()
    source = SqlSource(settings.pos, TZ)
    chunks = list(source.sales(local(2026, 11, 20, 0), local(2026, 11, 21, 0)))
    source.close()

    assert [len(c) for c in chunks] == [500, 499, 499, 499, 348]
    sales = [s for c in chunks for s in c]
    assert len(sales) == len({s.transaction_id for s in sales}) == 2_345
    assert [s.sale_at for s in sales] == sorted(s.sale_at for s in sales)


def test_a_mapping_query_that_does_not_parse_is_a_mapping_error(tmp_path: Path) -> None:
    """SQL naming a table the POS lacks is reported as a mapping problem, not an outage."""
    path = _pos_file(tmp_path)
    settings = SqlPosSettings(
        url=f"sqlite:///{path}",
        mapping=Preset.CUSTOM,
        query="SELECT * FROM bons WHERE x > :start AND x <= :end",
    )
    source = SqlSource(settings, TZ)
    with pytest.raises(PosMappingError, match="no such table: bons"):
        source.check_columns()
    source.close()


def test_the_chunk_query_compiles_for_sql_server() -> None:
    """The keyed-chunk read renders as T-SQL (TOP/ORDER BY) for SQL Server POS databases."""
    statement = chunk_statement(mapped_subquery(SqlPosSettings()), 500, (datetime(2026, 11, 20), 5))
    sql = str(statement.compile(dialect=mssql.dialect()))
    assert sql.startswith("SELECT TOP ")
    assert "LIMIT" not in sql
    assert sql.endswith("ORDER BY src.sale_at, src.transaction_id")
