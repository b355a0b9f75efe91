"""Every sales source keeps one contract, on every database it reads; ``pos.kind`` picks it."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from surveysync import pos
from surveysync.config import ConfigError, SqlPosSettings, load_settings
from surveysync.demo import PosWriter, create_pos_schema
from surveysync.model import Sale
from surveysync.pos import (
    CheckName,
    LoginCanWrite,
    PosError,
    PosMappingError,
    PosUnavailable,
    SalesSource,
    SqlSource,
    create_pos_engine,
)
from tests.conftest import TZ, Store, local

# --- backends ----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def pos_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind a POS may live in (no schema yet)."""
    if request.param == "sqlite":
        path = tmp_path / "pos.sqlite"
        path.touch()  # an empty file is an empty SQLite database
        return f"sqlite:///{path.as_posix()}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def writer(pos_url: str) -> Iterator[PosWriter]:
    """The Ascend-like schema in that database, with one location and one customer."""
    engine = create_engine(pos_url)
    create_pos_schema(engine)
    writer = PosWriter(engine)
    writer.location(1, "Centrum")
    writer.employee(1, "Anouk")
    writer.customer("C1", "Kim", "Jansen", "kim@example.com")
    yield writer
    engine.dispose()


@pytest.fixture
def unreachable_url(pos_url: str, tmp_path: Path) -> str:
    """A POS of the same kind that is not there: a missing file, a port nobody listens on."""
    if pos_url.startswith("sqlite"):
        return f"sqlite:///{(tmp_path / 'gone.sqlite').as_posix()}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"


def _open(url: str, chunk_size: int = 100) -> SalesSource:
    return pos.create(SqlPosSettings(url=url, chunk_size=chunk_size), TZ)


def _sales(source: SalesSource, start: datetime, end: datetime) -> list[list[Sale]]:
    chunks = list(source.sales(start, end))
    assert all(isinstance(item, Sale) for chunk in chunks for item in chunk)
    return chunks


# --- the contract --------------------------------------------------------------------------------


def test_create_builds_a_sales_source(writer: PosWriter, pos_url: str) -> None:
    """What ``pos.create`` hands the sync satisfies the interface: sales, check, close."""
    source = _open(pos_url)
    assert isinstance(source, SalesSource)
    assert isinstance(source, SqlSource)
    source.close()


def test_a_window_holds_the_sales_after_its_start_up_to_and_with_its_end(
    writer: PosWriter, pos_url: str
) -> None:
    """A sale stamped at the window's start belongs to the window before; one at its end
    belongs to it, and so does a sale still open, by its creation time."""
    start, end = datetime(2026, 11, 20, 0, 0), datetime(2026, 11, 21, 0, 0)
    writer.sale("C1", start)
    first = writer.sale("C1", start + timedelta(minutes=1))
    still_open = writer.sale("C1", datetime(2026, 11, 20, 12, 0), finalized=False)
    last = writer.sale("C1", end)
    writer.sale("C1", end + timedelta(minutes=1))
    writer.flush()
    source = _open(pos_url)
    (chunk,) = _sales(source, local(2026, 11, 20, 0), local(2026, 11, 21, 0))
    source.close()

    assert [s.transaction_id for s in chunk] == [str(first), str(still_open), str(last)]
    assert chunk[1].finalized_at is None
    assert chunk[2].sale_at == local(2026, 11, 21, 0)


def test_sales_sharing_one_moment_across_chunks_each_arrive_once_in_key_order(
    writer: PosWriter, pos_url: str
) -> None:
    """250 sales rung up in the same second, read 100 at a time: none lost, none twice."""
    for _ in range(250):
        writer.sale("C1", datetime(2026, 11, 20, 10, 0))
    writer.flush()
    source = _open(pos_url, chunk_size=100)
    chunks = _sales(source, local(2026, 11, 20, 0), local(2026, 11, 21, 0))
    source.close()

    assert all(len(c) <= 100 for c in chunks) and len(chunks) == 3
    ids = [int(s.transaction_id) for c in chunks for s in c]
    assert ids == sorted(set(ids)) and len(ids) == 250


def test_check_passes_each_part_on_a_working_pos(writer: PosWriter, pos_url: str) -> None:
    """On a reachable POS with the preset's schema, the checks pass in order; the login
    check fails only where the login could write (the tests' PostgreSQL superuser)."""
    source = _open(pos_url)
    results = source.check()
    source.close()

    assert [(r.name, r.ok, r.error) for r in results[:2]] == [
        (CheckName.POS, True, None),
        (CheckName.MAPPING, True, None),
    ]
    assert results[1].detail == "ascend: every required column present"
    login = results[2]
    assert login.name is CheckName.LOGIN
    if pos_url.startswith("sqlite"):
        assert (login.ok, login.detail) == (True, "the POS login can only read")
    else:
        assert not login.ok and isinstance(login.error, LoginCanWrite)
        assert login.detail.startswith("the POS login can write: it is a superuser")


def test_check_names_a_missing_table_as_a_mapping_problem(pos_url: str) -> None:
    """A POS that answers but lacks the mapped tables: reachable, and the mapping fails."""
    source = _open(pos_url)
    results = source.check()
    source.close()

    reachable, mapping = results
    assert reachable.ok and reachable.name is CheckName.POS
    assert not mapping.ok and mapping.name is CheckName.MAPPING
    assert isinstance(mapping.error, PosMappingError)


def test_check_names_an_unreachable_pos_as_such(unreachable_url: str) -> None:
    """A POS that is not there fails the first check, as unavailable; the mapping is not
    checked against nothing."""
    source = _open(unreachable_url)
    (result,) = source.check()
    source.close()

    assert (result.name, result.ok) == (CheckName.POS, False)
    assert isinstance(result.error, PosUnavailable)
    assert result.detail.startswith("the POS database is unavailable")


def test_a_source_that_cannot_be_set_up_is_a_failed_check_not_a_crash() -> None:
    """A URL that is no database URL is reported by ``pos.check`` like any other failure."""
    (result,) = pos.check(SqlPosSettings(url="not a url"), TZ)

    assert (result.name, result.ok) == (CheckName.POS, False)
    assert type(result.error) is PosError
    assert "pos.url is not a database URL" in result.detail


def test_the_session_is_read_only_even_past_the_statement_guard(
    writer: PosWriter, pos_url: str
) -> None:
    """A raw driver cursor on the POS engine cannot delete: the session itself is read-only."""
    engine = create_pos_engine(pos_url)
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with pytest.raises(Exception, match=r"(?i)read-?only"):
            cursor.execute("DELETE FROM customers")
    engine.dispose()
    with writer.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM customers")).scalar() == 1


# --- pos.kind ------------------------------------------------------------------------------------


def test_a_config_without_pos_kind_reads_a_sql_pos(store: Store) -> None:
    """Every config written before there were kinds loads as the SQL source, as before."""
    settings = store.settings()
    assert not re.search(r"^kind\s*=", store.config_path.read_text("utf-8"), re.MULTILINE)

    assert isinstance(settings.pos, SqlPosSettings) and settings.pos.kind == "sql"
    source = pos.create(settings.pos, TZ)
    assert isinstance(source, SqlSource)
    source.close()


def test_environment_overrides_still_reach_the_sql_pos(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SURVEYSYNC__POS__URL and friends override the file, with or without a kind."""
    monkeypatch.setenv("SURVEYSYNC__POS__URL", "sqlite:///elsewhere.sqlite")
    monkeypatch.setenv("SURVEYSYNC__POS__CHUNK_SIZE", "700")
    settings = load_settings(store.write_config())
    # Relative to the config file's folder, like every relative path in the settings.
    assert settings.pos.url.get_secret_value() == f"sqlite:///{store.root}/elsewhere.sqlite"
    assert settings.pos.chunk_size == 700

    monkeypatch.setenv("SURVEYSYNC__POS__KIND", "sql")
    assert load_settings(store.write_config()).pos.chunk_size == 700


def test_an_unknown_pos_kind_stops_the_program_naming_the_key_and_the_kinds(
    store: Store,
) -> None:
    """A kind nobody built is exit 2 before any work: the key, the value, the kinds there are."""
    store.extra["pos"] = {"kind": '"http"'}
    result = store.cli("check")

    assert result.exit_code == 2
    assert "pos.kind = 'http': unknown kind (allowed: 'sql')" in result.output
    assert not store.ledger_path.exists()


def test_a_typo_in_the_pos_table_names_the_key_as_written(store: Store) -> None:
    """pydantic's tag for the kind never shows in a message: ``pos.urll``, not ``pos.sql.urll``."""
    store.extra["pos"] = {"urll": '"sqlite:///x.sqlite"'}
    with pytest.raises(ConfigError) as caught:
        store.settings()

    assert "pos.urll: unknown setting; did you mean 'url'?" in str(caught.value)
    assert "pos.sql" not in str(caught.value)
