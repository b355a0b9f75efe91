"""Paths mean the same from any folder (issue 17 item 9): relative paths in a config are
relative to the config file's folder, and a command that only reads never makes a ledger."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import time_machine
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from surveysync.cli import main
from surveysync.config import load_settings
from tests.conftest import Store, local

NIGHT = local(2026, 11, 20, 23)


def relative_store(root: Path) -> Store:
    """A store whose config names every file relative to its own folder."""
    store = Store(root)
    store.extra["pos"] = {"url": '"sqlite:///pos.sqlite"'}
    store.extra["ledger"] = {"url": '"sqlite:///data/ledger.sqlite"'}
    store.extra["provider"] = {"outbox_dir": '"mail/outbox"'}
    store.extra["schedule"] = {"heartbeat_file": '"data/heartbeat.json"'}
    store.customer("C1")
    store.pos.sale("C1", datetime(2026, 11, 20, 12, 0))
    store.pos.flush()
    store.write_config()
    return store


def cli(config: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_relative_paths_mean_the_config_files_folder_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync started in one folder and `status` asked in another both use the ledger, POS
    and outbox beside the config; neither folder gets files of its own."""
    store = relative_store(tmp_path / "store")
    elsewhere, later = tmp_path / "elsewhere", tmp_path / "later"
    for folder in (elsewhere, later):
        folder.mkdir()
    monkeypatch.chdir(elsewhere)
    with time_machine.travel(NIGHT, tick=False):
        cli(store.config_path, "sync")

    assert (tmp_path / "store/data/ledger.sqlite").is_file()
    assert len(list((tmp_path / "store/mail/outbox").glob("*.eml"))) == 1
    monkeypatch.chdir(later)
    assert "last successful run" in cli(store.config_path, "status")
    assert list(elsewhere.iterdir()) == [] and list(later.iterdir()) == []


READ_ONLY = [
    ("status",),
    ("explain", "--customer", "C1"),
    ("report",),
    ("suppress", "list"),
    ("suppress", "remove", "--customer", "C1"),
]


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c[:2]))
def test_a_command_that_only_reads_never_makes_a_ledger(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Before any sync, a reading command fails (exit 1) naming where it looked for the
    ledger; it never makes an empty one, which would read as "never run"."""
    store = relative_store(tmp_path)
    result = CliRunner().invoke(main, ["--config", str(store.config_path), *command])

    assert result.exit_code == 1, result.output
    assert f"no ledger at {tmp_path / 'data' / 'ledger.sqlite'}" in " ".join(result.output.split())
    assert not (tmp_path / "data").exists()


def test_a_reading_command_on_an_empty_postgresql_database_makes_no_tables(
    tmp_path: Path, postgres_url: str
) -> None:
    """On PostgreSQL the database exists but holds no ledger: `status` says so and creates
    no table in it."""
    store = Store(tmp_path, ledger_url=postgres_url)
    result = store.cli("status")

    assert result.exit_code == 1 and "no ledger at" in result.output
    engine = create_engine(postgres_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_init_with_a_data_dir_writes_the_data_paths_there(tmp_path: Path) -> None:
    """`init --data-dir` (a config in a read-only /etc, the data in /var/lib) writes the
    ledger, outbox and heartbeat under the data folder; they load as written."""
    config, data = tmp_path / "etc" / "surveysync.toml", tmp_path / "var" / "lib"
    config.parent.mkdir()
    CliRunner().invoke(main, ["init", str(config), "--data-dir", str(data)], catch_exceptions=False)
    settings = load_settings(config)

    assert settings.ledger.url.get_secret_value() == f"sqlite:///{data}/ledger.sqlite"
    assert settings.provider.outbox_dir == data / "outbox"
    assert settings.schedule.heartbeat_file == data / "heartbeat.json"
    plain = tmp_path / "plain" / "surveysync.toml"
    plain.parent.mkdir()
    CliRunner().invoke(main, ["init", str(plain)], catch_exceptions=False)
    ledger = load_settings(plain).ledger.url.get_secret_value()
    assert ledger == f"sqlite:///{plain.parent}/surveysync-data/ledger.sqlite"
