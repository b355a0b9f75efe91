"""What an admin and a support person see: no run without a config, the daemon's real next
fire, explain with location names and send times, and suppressions that say what they did."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from surveysync import heartbeat
from surveysync.cli import main
from surveysync.ledger import open_ledger
from surveysync.rules import normalize_email
from tests.conftest import Store, local
from tests.test_ledger import _candidate


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["run"],
        ["sync"],
        ["check"],
        ["explain", "--customer", "C1"],
        ["suppress", "list"],
    ],
)
def test_without_a_config_file_nothing_runs_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """In a folder without surveysync.toml every command but init and demo exits 2, says
    where it looked and how to make one, and leaves no ledger behind."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SURVEYSYNC_CONFIG", raising=False)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 2, result.output
    assert "surveysync init" in result.output and "SURVEYSYNC_CONFIG" in result.output
    assert os.listdir(tmp_path) == []


def test_status_shows_the_running_daemons_next_fire_not_the_configs(store: Store) -> None:
    """A daemon started with another schedule (through the environment) is believed: status
    shows the next fire from its heartbeat, and the config's time only when none runs."""
    store.run(local(2026, 11, 28, 23))  # the daemon's ledger
    beat_file = store.root / "heartbeat.json"
    beat = heartbeat.Heartbeat("test", "idle", next_fire=local(2026, 11, 29, 21, 30).isoformat())
    heartbeat.write(beat_file, beat)
    with_daemon = store.cli("status")
    assert "next nightly run: 2026-11-29 21:30 (from the running daemon)" in with_daemon.output
    beat.state = "stopped"
    heartbeat.write(beat_file, beat)
    without = store.cli("status")
    assert "23:00 (from config)" in without.output


def test_explain_names_the_location_and_when_the_email_really_went(store: Store) -> None:
    """explain shows the location's name beside its id and the time the email was sent."""
    store.customer("C1")
    store.pos.sale("C1", datetime(2026, 11, 20, 10, 0), location_id=2)
    store.run(local(2026, 11, 20, 23))
    result = store.cli("explain", "--customer", "C1")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "\tall rules passed\t" in line)
    assert "Noord (2)" in row
    assert row.split("\t")[-1].startswith("2026-11-20 23:0")


def _unsubscribe_link(store: Store) -> str:
    [message] = store.messages()
    header = str(message["List-Unsubscribe"])
    return header.split("<", 1)[1].split(">", 1)[0]


def test_suppress_by_link_keeps_the_given_reason_and_says_when_it_was_already_there(
    tmp_path: Path, ledger_url: str
) -> None:
    """--reason is what the ledger keeps; a second time, the command says it was already so
    (on every ledger backend)."""
    store = Store(tmp_path, ledger_url)
    store.customer("C1")
    store.pos.sale("C1", datetime(2026, 11, 20, 10, 0))
    store.run(local(2026, 11, 20, 23))
    link = _unsubscribe_link(store)
    first = store.cli("suppress", "add", "--link", link, "--reason", "asked by phone")
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[-1].startswith("suppressed:"), first.output
    again = store.cli("suppress", "add", "--link", link, "--reason", "asked by phone")
    assert again.output.splitlines()[-1].startswith("already suppressed:"), again.output
    assert store.ledger_rows("SELECT reason FROM suppressions") == [("asked by phone",)]


def test_suppress_list_shows_an_address_only_to_an_admin_who_asks(store: Store) -> None:
    """Masked by default; --show-addresses shows the address the ledger still holds."""
    store.customer("C1", "kim.jansen@example.com")
    store.pos.sale("C1", datetime(2026, 11, 20, 10, 0))
    address, night = "kim.jansen@example.com", local(2026, 11, 20, 23)
    ledger = open_ledger(store.settings())
    try:  # a suppression, and a request to the same person still waiting to be sent
        key = ledger.keys.email(normalize_email(address))
        ledger.suppressions.add("email", key, "k***@example.com", "admin", None, night)
        run = ledger.runs.start("sync", night, dry_run=False)
        ledger.claims.claim(run, [_candidate(ledger, address, None)], night)
    finally:
        ledger.close()
    masked = store.cli("suppress", "list")
    assert "k***@example.com" in masked.output and "kim.jansen" not in masked.output
    shown = store.cli("suppress", "list", "--show-addresses")
    assert "kim.jansen@example.com" in shown.output

