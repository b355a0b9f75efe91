"""The daily log files support staff open: one JSON line per event, one file per UTC day."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import time_machine

from surveysync import logging as logs

NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TODAY = NOON.date()
FULL_EMAIL = re.compile(r"[A-Za-z0-9._%+-]*[A-Za-z0-9]{2}@[A-Za-z0-9.-]+\.[a-z]{2,}")


class TtyBuffer(io.StringIO):
    """A console that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def closed_log_file() -> Iterator[None]:
    """Close the log file a test opened, so no handle outlives it."""
    yield
    logs.close()


def day_file(folder: Path, day: date) -> Path:
    return folder / logs.log_file_name(day)


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_events_go_to_todays_file_with_name_level_time_store_and_run(tmp_path: Path) -> None:
    """Today's file holds one JSON line per event, each naming its store and, in a run, its run."""
    folder = tmp_path / "logs"
    with time_machine.travel(NOON, tick=False):
        logs.configure("info", stream=io.StringIO(), log_dir=folder, store="north")
        log = structlog.get_logger("test")
        log.info("scheduler.started")
        with structlog.contextvars.bound_contextvars(run_id=42):
            log.warning("requests.in_doubt", count=2)
        log.debug("too.detailed")

    assert [p.name for p in folder.iterdir()] == ["surveysync-2026-11-20.jsonl"]
    started, in_doubt = read_events(day_file(folder, TODAY))
    assert started == {
        "event": "scheduler.started",
        "level": "info",
        "timestamp": "2026-11-20T12:00:00Z",
        "store": "north",
    }
    assert in_doubt["event"] == "requests.in_doubt" and in_doubt["level"] == "warning"
    assert in_doubt["run_id"] == 42 and in_doubt["store"] == "north"


def test_crossing_midnight_utc_starts_a_new_file_and_leaves_the_old_one_alone(
    tmp_path: Path,
) -> None:
    """After midnight UTC events go to the new day's file; yesterday's file is untouched."""
    with time_machine.travel(datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC), tick=False) as clock:
        logs.configure("info", stream=io.StringIO(), log_dir=tmp_path, store="north")
        log = structlog.get_logger("test")
        log.info("run.started")
        old = day_file(tmp_path, TODAY)
        before, content = os.stat(old), old.read_bytes()

        clock.move_to(datetime(2026, 11, 21, 0, 0, 1, tzinfo=UTC))
        log.info("run.finished")

    after = os.stat(old)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert old.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "surveysync-2026-11-20.jsonl",
        "surveysync-2026-11-21.jsonl",
    ]
    assert [e["event"] for e in read_events(day_file(tmp_path, date(2026, 11, 21)))] == [
        "run.finished"
    ]


def test_files_older_than_keep_days_are_deleted_and_everything_else_is_kept(
    tmp_path: Path,
) -> None:
    """Old daily files disappear; recent ones, other files and a file that is in use stay."""
    for age in (400, 31, 30, 1):
        day_file(tmp_path, TODAY - timedelta(days=age)).write_text('{"event": "old"}\n')
    unrelated = ["notes.txt", "surveysync-latest.jsonl", "other-2020-01-01.jsonl"]
    unrelated += ["surveysync-2020-01-01.jsonl.gz", "surveysync-2020-13-45.jsonl"]
    for name in unrelated:
        (tmp_path / name).write_text("keep me\n")
    # Cannot be deleted, as a file held open by another program on Windows cannot.
    (tmp_path / "surveysync-2020-01-02.jsonl").mkdir()
    console = io.StringIO()

    with time_machine.travel(NOON, tick=False):
        logs.configure("info", stream=console, log_dir=tmp_path, keep_days=30)
        structlog.get_logger("test").info("scheduler.started")

    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {
        "surveysync-2026-10-21.jsonl",  # 30 days old
        "surveysync-2026-11-19.jsonl",
        "surveysync-2026-11-20.jsonl",
        "surveysync-2020-01-02.jsonl",
        *unrelated,
    }
    assert [json.loads(line)["event"] for line in console.getvalue().splitlines()] == [
        "scheduler.started"
    ]


def test_old_files_are_swept_once_a_day_not_on_every_event(tmp_path: Path) -> None:
    """Deleting old files happens when a day's file is first opened, not per event."""
    with time_machine.travel(NOON, tick=False) as clock:
        logs.configure("info", stream=io.StringIO(), log_dir=tmp_path, keep_days=2)
        log = structlog.get_logger("test")
        late_arrival = day_file(tmp_path, date(2026, 1, 1))
        late_arrival.write_text("{}\n")
        log.info("day.covered")
        assert late_arrival.exists()

        clock.move_to(NOON + timedelta(days=1))
        log.info("day.covered")

    assert not late_arrival.exists()


def test_a_second_process_appending_to_the_same_day_file_leaves_every_line_whole(
    tmp_path: Path,
) -> None:
    """A manual sync logging while the daemon logs to the same file never tears a line."""
    padding = "x" * 20_000  # larger than any write buffer, so a half-written line would show
    with time_machine.travel(NOON, tick=False):
        logs.configure("info", stream=io.StringIO(), log_dir=tmp_path, store="north")
        other_process = logs.DailyJsonFile(tmp_path)
        other_process.open(TODAY)
        log = structlog.get_logger("test")
        for n in range(40):
            log.info("daemon.event", n=n, padding=padding)
            line = json.dumps({"event": "cli.event", "n": n, "padding": padding})
            assert other_process.write(TODAY, line.encode() + b"\n") is None
        other_process.close()

    events = read_events(day_file(tmp_path, TODAY))
    assert len(events) == 80
    for name in ("daemon.event", "cli.event"):
        assert [e["n"] for e in events if e["event"] == name] == list(range(40))


@pytest.mark.parametrize("where", ["inside a file", "is a file"])
def test_a_log_folder_that_cannot_be_made_or_written_is_a_clear_error(
    tmp_path: Path, where: str
) -> None:
    """Setup stops with a message naming the log folder and the system's reason."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    folder = blocker / "logs" if where == "inside a file" else blocker

    with pytest.raises(logs.LogSetupError) as caught:
        logs.configure("info", stream=io.StringIO(), log_dir=folder)

    assert str(folder) in str(caught.value)
    cause = caught.value.__cause__
    assert isinstance(cause, OSError) and cause.strerror and cause.strerror in str(caught.value)


def test_a_log_folder_lost_later_does_not_stop_the_run_and_the_console_says_so(
    tmp_path: Path,
) -> None:
    """When the next day's file cannot be opened the run goes on and the console tells why, once."""
    folder = tmp_path / "logs"
    console = io.StringIO()
    with time_machine.travel(NOON, tick=False) as clock:
        logs.configure("info", stream=console, log_dir=folder)
        log = structlog.get_logger("test")
        log.info("day.covered")
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        folder.write_text("someone put a file here")
        clock.move_to(NOON + timedelta(days=1))
        log.info("day.covered")
        log.info("run.finished")

    events = [json.loads(line) for line in console.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["day.covered", "day.covered", "run.finished"]
    assert str(folder) in events[1]["log_file_error"]
    assert "log_file_error" not in events[2]


def test_an_exception_with_an_address_and_a_secret_is_masked_in_the_file(tmp_path: Path) -> None:
    """A traceback in the log file shows neither the customer's address nor a password."""
    secret = "pg-password-1"
    console = io.StringIO()
    logs.configure("info", [secret], stream=console, log_dir=tmp_path, store="north")
    log = structlog.get_logger("test")
    try:
        try:
            raise KeyError("kim.jansen@example.com")
        except KeyError as exc:
            raise ConnectionError(
                "550 <jürgen.müller@example.de> refused by postgresql://u:pg-password-1@db/pos"
            ) from exc
    except ConnectionError:
        log.exception("provider.failed", to="kim.jansen@example.com")

    text = next(tmp_path.iterdir()).read_text("utf-8")
    (event,) = [json.loads(line) for line in text.splitlines()]
    assert "Traceback" in event["exception"] and "ConnectionError" in event["exception"]
    assert "j***@example.de" in event["exception"] and event["to"] == "k***@example.com"
    for line in text.splitlines() + console.getvalue().splitlines():
        assert not FULL_EMAIL.search(line), line
        assert secret not in line and "müller@" not in line


def test_a_plain_console_stays_json_lines_identical_to_the_file(tmp_path: Path) -> None:
    """Where stderr is not a terminal (a service, a pipe), it carries the file's JSON lines."""
    console = io.StringIO()
    with time_machine.travel(NOON, tick=False):
        logs.configure("info", stream=console, log_dir=tmp_path, store="north")
        structlog.get_logger("test").info("run.started", window_start="2026-11-19T23:00:00+01:00")

    assert console.getvalue() == day_file(tmp_path, TODAY).read_text("utf-8")
    assert json.loads(console.getvalue())["event"] == "run.started"


def test_the_file_is_json_even_when_the_console_is_a_terminal(tmp_path: Path) -> None:
    """A person at a terminal reads plain lines while the file keeps machine-readable JSON."""
    console = TtyBuffer()
    with time_machine.travel(NOON, tick=False):
        logs.configure("info", stream=console, log_dir=tmp_path, store="north")
        log = structlog.get_logger("test")
        log.info("run.started", window_start="2026-11-19T23:00:00+01:00")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("run.not_recorded")

    shown = console.getvalue()
    assert "run.started" in shown and "RuntimeError: boom" in shown
    with pytest.raises(json.JSONDecodeError):
        json.loads(shown.splitlines()[0])
    events = read_events(day_file(tmp_path, TODAY))
    assert [e["event"] for e in events] == ["run.started", "run.not_recorded"]
    assert "RuntimeError: boom" in events[1]["exception"]


def open_paths() -> set[str]:
    """The files this process holds open (Linux); empty where /proc is missing."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return set()
    found = set()
    for fd in fds.iterdir():
        try:
            found.add(os.readlink(fd))
        except OSError:
            continue
    return found


def test_configuring_again_closes_the_previous_file(tmp_path: Path) -> None:
    """A reconfiguration writes to the new folder only and leaves no handle on the old one."""
    first, second = tmp_path / "first", tmp_path / "second"
    with time_machine.travel(NOON, tick=False):
        logs.configure("info", stream=io.StringIO(), log_dir=first)
        structlog.get_logger("test").info("one")
        logs.configure("info", stream=io.StringIO(), log_dir=second)
        structlog.get_logger("test").info("two")
        assert str(day_file(first, TODAY)) not in open_paths()
        logs.close()
        structlog.get_logger("test").info("console only")

    assert str(day_file(second, TODAY)) not in open_paths()
    assert [e["event"] for e in read_events(day_file(first, TODAY))] == ["one"]
    assert [e["event"] for e in read_events(day_file(second, TODAY))] == ["two"]
