"""The single-instance lock: a second surveysync for the same store and ledger is refused."""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from surveysync.ledger import InstanceLock, LedgerError, LockHeld
from surveysync.ledger.lock import _advisory_keys

HOLDER_SCRIPT = Path(__file__).with_name("lock_holder.py")
WAIT = 30.0  # seconds a subprocess gets to report; only reached when something is broken


@dataclass
class OtherProcess:
    """A surveysync stand-in in its own process, holding the lock until told to stop."""

    proc: subprocess.Popen[str]
    pid: int

    def stop(self) -> None:
        """Let it leave its ``with`` block and exit normally."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=WAIT) == 0

    def kill(self) -> None:
        """SIGKILL (TerminateProcess on Windows): no clean-up code runs."""
        self.proc.kill()
        self.proc.wait(timeout=WAIT)


@pytest.fixture
def other_process(ledger_url: str) -> Iterator[Callable[[str, str], OtherProcess]]:
    """Start lock holders on ``ledger_url``; any still running are killed afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(store: str, purpose: str) -> OtherProcess:
        proc = subprocess.Popen(
            [sys.executable, str(HOLDER_SCRIPT), ledger_url, store, purpose],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        line = _first_line(proc)
        if not line.startswith("locked "):
            proc.kill()
            _, err = proc.communicate(timeout=WAIT)
            pytest.fail(f"the lock holder did not take the lock: {line!r} {err}")
        return OtherProcess(proc, int(line.split()[1]))

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        with proc:  # closes its pipes and reaps it
            pass


def _first_line(proc: subprocess.Popen[str]) -> str:
    """The first line the process prints, waiting at most WAIT seconds for it."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=WAIT)
    except queue.Empty:
        proc.kill()
        pytest.fail(f"the lock holder printed nothing in {WAIT} s")


def _until_server_frees(ledger_url: str, store: str) -> None:
    """After a client dies PostgreSQL frees its locks a moment later: wait on the lock itself."""
    if make_url(ledger_url).get_backend_name() != "postgresql":
        return  # the OS dropped a dead process's file locks before wait() returned
    class_key, store_key = _advisory_keys(store)
    keys = {"a": class_key, "b": store_key}
    engine = create_engine(ledger_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SET lock_timeout = '{int(WAIT)}s'")
            conn.execute(text("SELECT pg_advisory_lock(CAST(:a AS int), CAST(:b AS int))"), keys)
            conn.execute(text("SELECT pg_advisory_unlock(CAST(:a AS int), CAST(:b AS int))"), keys)
    finally:
        engine.dispose()


def test_second_process_is_refused_and_told_who_runs(
    ledger_url: str, other_process: Callable[[str, str], OtherProcess]
) -> None:
    """A `sync` started while a `run` holds the store is refused, naming that run's pid and host."""
    running = other_process("store-1", "run")
    with pytest.raises(LockHeld) as refused, InstanceLock(ledger_url, "store-1", "sync"):
        pass
    message = str(refused.value)
    assert message.startswith("another surveysync is running for store 'store-1' on this ledger")
    assert f"`run`, pid {running.pid} on host {socket.gethostname()}" in message
    assert message.endswith("; stop it first (or wait for it to finish)")
    assert "://" not in message
    assert refused.value.holder is not None
    assert refused.value.holder.pid == running.pid
    assert isinstance(refused.value, LedgerError)


def test_lock_is_free_once_the_holder_exits(
    ledger_url: str, other_process: Callable[[str, str], OtherProcess]
) -> None:
    """When the running surveysync finishes, the next one starts without anyone cleaning up."""
    other_process("store-1", "run").stop()
    with InstanceLock(ledger_url, "store-1", "run") as lock:
        assert lock.holder is not None


def test_lock_is_free_after_the_holder_is_killed(
    ledger_url: str, other_process: Callable[[str, str], OtherProcess]
) -> None:
    """A surveysync killed with kill -9 leaves no stale lock: the next one simply starts."""
    other_process("store-1", "run").kill()
    _until_server_frees(ledger_url, "store-1")
    with InstanceLock(ledger_url, "store-1", "run") as lock:
        assert lock.holder is not None


def test_same_store_twice_in_one_process_is_refused(ledger_url: str) -> None:
    """Even within one process, a second lock on the same store is refused."""
    with (
        InstanceLock(ledger_url, "store-1", "run"),
        pytest.raises(LockHeld, match=r"`run`, pid \d+"),
        InstanceLock(ledger_url, "store-1", "sync"),
    ):
        pass
    with InstanceLock(ledger_url, "store-1", "sync"):
        pass


def test_stores_sharing_a_ledger_run_side_by_side(
    ledger_url: str, other_process: Callable[[str, str], OtherProcess]
) -> None:
    """Two stores of a chain on one ledger each get their lock, in one process or in two."""
    other_process("store-2", "run")
    with InstanceLock(ledger_url, "store-1", "run"), InstanceLock(ledger_url, "Störe 3", "run"):
        pass


def test_lock_files_sit_beside_the_ledger(tmp_path: Path) -> None:
    """An admin finds the lock and who holds it next to the ledger file, and no holder after."""
    ledger = tmp_path / "data" / "ledger.sqlite"
    with InstanceLock(f"sqlite:///{ledger.as_posix()}", "store-1", "run") as lock:
        info = (tmp_path / "data" / "ledger.sqlite.store-1.lock.info").read_text("utf-8")
        assert (tmp_path / "data" / "ledger.sqlite.store-1.lock").exists()
        assert lock.holder is not None
        assert f'"pid": {lock.holder.pid}' in info
        assert '"purpose": "run"' in info
    assert not (tmp_path / "data" / "ledger.sqlite.store-1.lock.info").exists()
    assert not ledger.exists()  # the lock never opens the ledger itself


def test_refusal_without_a_holder_description_still_refuses(tmp_path: Path) -> None:
    """If the holder's description is missing, the refusal says so instead of guessing."""
    url = f"sqlite:///{(tmp_path / 'ledger.sqlite').as_posix()}"
    with InstanceLock(url, "store-1", "run"):
        (tmp_path / "ledger.sqlite.store-1.lock.info").unlink()
        with (
            pytest.raises(LockHeld, match="has not said which"),
            InstanceLock(url, "store-1", "run"),
        ):
            pass


def test_refusal_never_shows_the_ledger_password(postgres_url: str) -> None:
    """The refusal names the holder, never the ledger URL or its password."""
    url = make_url(postgres_url).set(password="not-the-real-secret")
    secret_url = url.render_as_string(hide_password=False)
    with (
        InstanceLock(secret_url, "store-1", "run"),
        pytest.raises(LockHeld) as refused,
        InstanceLock(secret_url, "store-1", "sync"),
    ):
        pass
    message = str(refused.value)
    assert "not-the-real-secret" not in message
    assert "postgresql" not in message
    assert "`run`, pid" in message


def test_in_memory_ledger_locks_within_the_process() -> None:
    """An in-memory ledger (demo, tests) still refuses a second lock on a store in this process."""
    with InstanceLock("sqlite://", "store-1", "demo"):
        with pytest.raises(LockHeld, match="`demo`"), InstanceLock("sqlite://", "store-1", "demo"):
            pass
        with InstanceLock("sqlite:///:memory:", "store-2", "demo"):
            pass
    with InstanceLock("sqlite://", "store-1", "demo"):
        pass


def test_other_databases_are_refused_plainly() -> None:
    """A ledger URL for another database says run needs SQLite or PostgreSQL, without the URL."""
    with pytest.raises(LedgerError) as refused:
        InstanceLock("mysql+pymysql://shop:hunter2@db/ledger", "store-1", "run")
    assert "SQLite or PostgreSQL" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    assert not isinstance(refused.value, LockHeld)


def _end_session_of(postgres_url: str, purpose: str) -> None:
    """What a database restart or a network cut does to the holder: its session ends."""
    admin = create_engine(postgres_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            ended = conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE :name"
                ),
                {"name": f"surveysync%{purpose}%"},
            )
    finally:
        admin.dispose()
    assert ended == 1


def test_a_lock_lost_with_its_session_is_taken_again_before_the_next_night(
    postgres_url: str,
) -> None:
    """When the PostgreSQL session holding the lock ends, the daemon notices before its next
    night and takes the lock again; meanwhile a second instance is refused as before."""
    with InstanceLock(postgres_url, "store-1", "run") as lock:
        assert lock.ensure_held() is False
        _end_session_of(postgres_url, "run")
        assert lock.ensure_held() is True
        with pytest.raises(LockHeld):
            InstanceLock(postgres_url, "store-1", "sync").__enter__()


def test_a_lock_lost_and_taken_by_another_process_stops_the_first(postgres_url: str) -> None:
    """If another surveysync took the lock while the first one's session was gone, the first
    one is told so, naming the new holder, instead of running beside it."""
    with InstanceLock(postgres_url, "store-1", "run") as lock:
        _end_session_of(postgres_url, "run")
        with (
            InstanceLock(postgres_url, "store-1", "sync"),
            pytest.raises(LockHeld, match=r"`sync`, pid \d+"),
        ):
            lock.ensure_held()
