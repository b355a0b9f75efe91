"""`surveysync run` as a real process: it catches up on start, refuses a second instance,
stops on SIGTERM with exit code 0, and its logs hold no address and no secret."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import TZ, Store

LINK_SECRET = "link-secret-that-must-stay-hidden"
FULL_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]{2,}@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
LAUNCH = "from surveysync.cli import main; main()"

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="sends POSIX signals; Windows stops services with Ctrl-Break"
)


class Daemon:
    """A `surveysync run` child process whose stderr lines can be awaited one by one."""

    def __init__(self, config: Path, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "--config", str(config), "run"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def await_event(self, event: str, timeout: float = 60) -> dict[str, object]:
        """Block until the child logs ``event`` (a JSON line) or ends."""
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"ended before {event}:\n{''.join(self.lines)}")
            self.lines.append(line)
            if f'"{event}"' in line:
                return dict(json.loads(line))

    def close(self) -> None:
        self._reader.join(timeout=30)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    def rest(self) -> list[str]:
        while (line := self._queue.get(timeout=30)) is not None:
            self.lines.append(line)
        return self.lines


@pytest.fixture
def running(store: Store, tmp_path: Path) -> Iterator[tuple[Store, Daemon]]:
    yesterday = datetime.now(TZ).replace(tzinfo=None) - timedelta(days=1)
    store.first_run_start = (yesterday - timedelta(days=3)).strftime("%Y-%m-%dT00:00:00")
    store.extra["email"] = {"link_secret": f'"{LINK_SECRET}"'}
    store.extra["logging"] = {"dir": f'"{(tmp_path / "logs").as_posix()}"'}
    store.extra["schedule"] = {"heartbeat_file": f'"{(tmp_path / "beat.json").as_posix()}"'}
    for n in range(3):
        store.customer(f"C{n}", first=f"Name{n}")
        store.pos.sale(f"C{n}", yesterday.replace(hour=10, minute=n))
    store.settings()  # writes the POS rows and the config file
    daemon = Daemon(store.config_path, tmp_path)
    try:
        yield store, daemon
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
        daemon.process.wait()
        daemon.close()


def test_the_daemon_catches_up_then_stops_cleanly_on_sigterm(
    running: tuple[Store, Daemon],
) -> None:
    """On start it sends yesterday's surveys; SIGTERM ends it with exit code 0 and a
    'daemon.stopped' event, well within 30 seconds."""
    store, daemon = running
    daemon.await_event("daemon.started")
    finished = daemon.await_event("run.finished")
    assert finished["counts"]["sent"] == 3  # type: ignore[index]

    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=30) == 0
    lines = daemon.rest()
    assert any('"daemon.stopped"' in line for line in lines)
    assert len(store.messages()) == 3


def test_a_second_instance_is_refused_and_names_the_first(running: tuple[Store, Daemon]) -> None:
    """While `run` holds the store, a second `run` and a `sync` exit 1 naming its pid."""
    store, daemon = running
    daemon.await_event("daemon.started")
    second = subprocess.run(
        [sys.executable, "-c", LAUNCH, "--config", str(store.config_path), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=store.root,
    )
    assert second.returncode == 1
    assert f"pid {daemon.process.pid}" in second.stderr
    sync = store.cli("sync")
    assert sync.exit_code == 1 and f"pid {daemon.process.pid}" in sync.output
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=30) == 0


def test_no_log_line_holds_an_address_or_a_secret(
    running: tuple[Store, Daemon], tmp_path: Path
) -> None:
    """Every line of a whole run, console and log file, names events and the store but no
    complete email address and not the link secret."""
    _, daemon = running
    daemon.await_event("run.finished")
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=30) == 0
    console = daemon.rest()
    files = sorted((tmp_path / "logs").glob("*"))
    assert files, "no log file was written"
    logged = [line for f in files for line in f.read_text("utf-8").splitlines()]
    assert len(logged) >= 5
    for line in console + logged:
        assert not FULL_ADDRESS.search(line), line
        assert LINK_SECRET not in line, line
    events = [json.loads(line) for line in logged]
    assert all(e.get("store") == "test" and e.get("event") for e in events)
    run_events = [e for e in events if str(e["event"]).startswith("run.")]
    assert run_events and all(e.get("run_id") for e in run_events)
    assert os.path.exists(tmp_path / "beat.json")
