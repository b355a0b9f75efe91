"""Support reads the logs: `surveysync logs` answers "did last night's run work?" and "what
happened to this customer?" in one command each, in store time, without the files ever
holding an address; and a progress bar never swallows a log line."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime

import pytest
import time_machine
from rich.console import Console

from surveysync import logging as log_setup
from surveysync.console import Output
from surveysync.sync import SyncRequest, run_sync
from tests.conftest import Store, local

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def logged_store(store: Store) -> Store:
    """A store whose events are written at debug level to a log folder."""
    store.extra["logging"] = {"dir": f'"{(store.root / "logs").as_posix()}"', "level": '"debug"'}
    store.customer("C1", "kim.jansen@example.com")
    store.customer("C2", "no-communications@example.com", include=False)
    store.pos.sale("C1", datetime(2026, 11, 20, 10, 0))
    store.pos.sale("C2", datetime(2026, 11, 20, 11, 0))
    return store


def _run_logged(store: Store, now: datetime, **request: object) -> None:
    settings = store.settings()
    assert settings.logging.dir is not None
    log_setup.configure(
        "debug",
        log_setup.secret_values(settings),
        stream=io.StringIO(),
        log_dir=settings.logging.dir,
        store="test",
        tz=settings.store.tz,
    )
    try:
        with time_machine.travel(now, tick=False):  # the events' own clock: the night's
            run_sync(settings, SyncRequest(now=now, **request))  # type: ignore[arg-type]
    finally:
        log_setup.close()


def test_what_happened_to_a_customer_is_one_command_in_store_time(logged_store: Store) -> None:
    """--customer shows why C2 was skipped, with the time in store time (the file: UTC)."""
    _run_logged(logged_store, local(2026, 11, 20, 23, 30))
    result = logged_store.cli("logs", "--customer", "C2")
    assert result.exit_code == 0, result.output
    [line] = [x for x in result.output.splitlines() if "sale.decided" in x]
    assert line.startswith("2026-11-20 ") and "reason=not_in_communications" in line
    [stored] = [
        json.loads(x)
        for x in (logged_store.root / "logs" / "surveysync-2026-11-20.jsonl")
        .read_text()
        .splitlines()
        if '"sale.decided"' in x and '"C2"' in x
    ]
    assert stored["timestamp"].endswith("Z")


def test_an_address_finds_its_events_though_the_files_never_hold_it(logged_store: Store) -> None:
    """--email finds the decision and the sent request of that address by its keyed hash."""
    _run_logged(logged_store, local(2026, 11, 20, 23, 30))
    files = "".join(p.read_text() for p in (logged_store.root / "logs").iterdir())
    assert "kim.jansen@example.com" not in files
    result = logged_store.cli("logs", "--email", "Kim.Jansen@example.com", "--json")
    events = [json.loads(x) for x in result.output.splitlines() if x.startswith("{")]
    assert {e["event"] for e in events} >= {"sale.decided", "request.sent"}
    assert all(e.get("customer_id", "C1") == "C1" for e in events)


def test_did_last_nights_run_work_is_one_command(logged_store: Store) -> None:
    """--run last shows only the latest run; --level warning hides the routine."""
    _run_logged(logged_store, local(2026, 11, 20, 23, 30))
    logged_store.pos.sale("C1", datetime(2026, 11, 21, 10, 0))
    _run_logged(logged_store, local(2026, 11, 21, 23, 30))
    result = logged_store.cli("logs", "--run", "last", "--json")
    runs = {json.loads(x).get("run_id") for x in result.output.splitlines() if x.startswith("{")}
    assert len(runs) == 1
    quiet = logged_store.cli("logs", "--run", "last", "--level", "warning")
    assert "run.started" not in quiet.output


def test_every_event_of_a_dry_run_says_so(logged_store: Store) -> None:
    """A dry run's events carry dry_run=true, so nobody mistakes them for the night's."""
    _run_logged(logged_store, local(2026, 11, 20, 23, 30), dry_run=True)
    result = logged_store.cli("logs", "--json")
    events = [json.loads(x) for x in result.output.splitlines() if x.startswith("{")]
    in_run = [e for e in events if "run_id" in e]
    assert in_run and all(e.get("dry_run") is True for e in in_run)


def test_a_log_line_is_never_written_into_the_progress_bar(logged_store: Store) -> None:
    """During a backfill with a terminal, log lines print above the bar, each on its own."""
    screen = io.StringIO()
    out = Output(Console(file=screen, force_terminal=True, width=160))
    settings = logged_store.settings()
    log_setup.configure("info", stream=io.StringIO(), store="test")
    request = SyncRequest(
        now=local(2026, 11, 22, 12), kind="backfill", since=local(2026, 11, 15).date()
    )
    with out.progress("Reading days") as hook:
        run_sync(settings, request, progress=hook)
    lines = [ANSI.sub("", part) for part in re.split(r"[\r\n]", screen.getvalue())]
    logged = [x for x in lines if '"event"' in x]
    assert any('"day.covered"' in x for x in logged)
    assert any("days ·" in x for x in lines)  # the bar was drawn
    for line in logged:
        assert "days ·" not in line and line.startswith("{"), line


def test_logs_says_when_there_is_no_log_folder(store: Store) -> None:
    """Without logging.dir the command says where events go instead."""
    result = store.cli("logs")
    assert result.exit_code == 1 and "logging.dir is not set" in result.output
