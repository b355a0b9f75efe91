"""Nothing waits forever on the POS: a server that accepts the connection and never answers
fails ``check`` and a sync once ``pos.connect_timeout`` runs out, and a read that never ends
fails once ``pos.query_timeout`` does; each says which timeout ran out, and where.

The silent server is a real listening socket on 127.0.0.1 that accepts and never answers: it
always outlasts a timeout, whatever the machine's speed. Each test's own wait is bounded (far
above the timeouts) so that a timeout that is not applied fails the test instead of hanging.
"""

from __future__ import annotations

import re
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from click.testing import Result

from surveysync.pos import PosUnavailable
from surveysync.sync import SyncError
from tests.conftest import Store, local

# The filled POS databases of the error tests, as fixtures here too.
from tests.test_pos_errors import (
    _query,
    mariadb_odbc_url,
    mariadb_url,
    postgresql_url,
)

__all__ = ["mariadb_odbc_url", "mariadb_url", "postgresql_url"]

T = TypeVar("T")
BOUND_S = 120  # the longest a test waits for an answer: far beyond every timeout it sets

SCHEMES = {
    "psycopg": "postgresql+psycopg://postgres@127.0.0.1:{port}/test",
    "pymysql": "mysql+pymysql://root@127.0.0.1:{port}/test",
}


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 whose server accepts every connection and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    over = threading.Event()

    def accept() -> None:
        while not over.is_set():
            held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = int(server.getsockname()[1])
    yield port
    over.set()
    socket.create_connection(("127.0.0.1", port)).close()  # wakes accept() to see it
    thread.join(timeout=BOUND_S)
    server.close()
    for connection in held:
        connection.close()


def bounded(call: Callable[[], T]) -> T:
    """``call()``'s answer, failing the test if there is none within BOUND_S."""
    answers: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            answers.append(call())
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=BOUND_S)
    assert not thread.is_alive(), f"still waiting after {BOUND_S} s: a timeout is not applied"
    if errors:
        raise errors[0]
    return answers[0]


@pytest.mark.parametrize("driver", sorted(SCHEMES))
def test_a_silent_server_fails_check_and_sync_on_the_connect_timeout(
    store: Store, silent_port: int, driver: str
) -> None:
    """check fails its pos line naming the host and the connect timeout (exit 1); a sync
    fails, is recorded failed and is worth a retry, saying the same."""
    url = SCHEMES[driver].format(port=silent_port)
    store.extra["pos"] = {"url": f'"{url}"', "connect_timeout": "1", "query_timeout": "3600"}
    where = f"127.0.0.1:{silent_port}"

    checked: Result = bounded(lambda: store.cli("check"))
    assert checked.exit_code == 1, checked.output
    line = re.search(r"^pos\s+failed\s+(.*)$", checked.output, re.MULTILINE)
    assert line is not None, checked.output
    assert where in line[1] and "connect timeout" in line[1], line[1]

    synced: Result = bounded(lambda: store.cli("sync"))
    assert synced.exit_code == 1, synced.output
    with pytest.raises(SyncError) as caught:
        bounded(lambda: store.run(local(2026, 11, 21, 23)))
    assert caught.value.retryable and isinstance(caught.value.__cause__, PosUnavailable)
    assert where in str(caught.value) and "connect timeout" in str(caught.value)
    assert store.ledger_rows("SELECT status FROM runs") == [("failed",), ("failed",)]


# A read that cannot end within a second on any machine: a sum over ten billion numbers.
ENDLESS = {
    "postgresql": "(SELECT SUM(g % 7) FROM generate_series(1, 10000000000) AS g)",
    "mariadb": "(SELECT SUM(seq % 7) FROM seq_1_to_10000000000)",
    "mariadb_odbc": "(SELECT SUM(seq % 7) FROM seq_1_to_10000000000)",
}


@pytest.mark.parametrize("server", sorted(ENDLESS))
def test_a_read_that_never_ends_fails_on_the_query_timeout(
    store: Store, request: pytest.FixtureRequest, server: str
) -> None:
    """A mapping whose read cannot finish fails the sync once the query timeout runs out
    (the server stops it too), naming it and the host; the night is retried."""
    url = str(request.getfixturevalue(f"{server}_url"))
    store.extra["pos"] = {
        "url": f'"{url}"',
        "mapping": '"custom"',
        "query": f'"""{_query(total=ENDLESS[server])}"""',
        "query_timeout": "1",
    }
    store.first_run_start = "2026-11-20T00:00:00"
    with pytest.raises(SyncError) as caught:
        bounded(lambda: store.run(local(2026, 11, 21, 23)))
    assert caught.value.retryable, caught.value
    assert "127.0.0.1" in str(caught.value) and "query timeout" in str(caught.value)


def test_a_sqlite_pos_locked_by_a_writer_fails_after_the_connect_timeout(store: Store) -> None:
    """A POS file a writer holds locked is waited for as long as the connect timeout (the
    busy timeout), then the night fails as unavailable and is retried."""
    store.customer("C1")
    store.pos.flush()
    store.extra["pos"] = {"connect_timeout": "1"}
    store.settings()
    writer = sqlite3.connect(store.root / "pos.sqlite", isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        with pytest.raises(SyncError) as caught:
            bounded(lambda: store.run(local(2026, 11, 21, 23)))
    finally:
        writer.close()
    assert caught.value.retryable and "database is locked" in str(caught.value)


@pytest.mark.parametrize("value", ["0", "-5", '"soon"'])
def test_a_timeout_that_is_not_a_positive_number_is_refused(store: Store, value: str) -> None:
    """A timeout of zero (which some drivers read as "wait for ever") or not a number is a
    config error naming the setting."""
    store.extra["pos"] = {"connect_timeout": value}
    result = store.cli("check")
    assert result.exit_code == 2, result.output
    assert "connect_timeout" in result.output
