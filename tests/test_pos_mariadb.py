"""MariaDB/MySQL as a POS, through pymysql and through the MariaDB ODBC driver (pyodbc): the
preset reads the sales on both (the custom query is in test_pos_errors), and the port in
``pos.url`` is the port connected to.

The ODBC trap: SQLAlchemy writes ``Server=host,port``, which MariaDB's driver does not read,
so a URL naming another port silently reached the server on 3306. Proved with real sockets:
a forwarder on a free port in front of the server (reached, and counted), and a port where
nothing listens (refused, not quietly answered by 3306).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from urllib.parse import quote_plus

import pytest
from sqlalchemy.engine import make_url

from surveysync import pos
from surveysync.config import SqlPosSettings
from surveysync.model import Sale
from surveysync.pos import PosUnavailable
from tests.conftest import TZ, local

# The filled POS databases of the error tests, as fixtures here too.
from tests.test_pos_errors import mariadb_odbc_url, mariadb_url

__all__ = ["mariadb_odbc_url", "mariadb_url"]

DRIVERS = ["mariadb", "mariadb_odbc"]
BOUND_S = 60  # how long a forwarding thread may take to finish once both ends closed


class Forwarder:
    """A TCP port on 127.0.0.1 that passes each connection on to ``target``, counting them."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = int(self._server.getsockname()[1])
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closing = False
        self._start(self._accept)

    def _start(self, target: Callable[..., None], *args: socket.socket) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            client, _ = self._server.accept()
            if self._closing:
                client.close()
                return
            self.connections += 1
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            self._start(self._pump, client, upstream)
            self._start(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # the other side closed first
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closing = True
        socket.create_connection(("127.0.0.1", self.port)).close()  # wakes accept()
        for connection in self._sockets:
            connection.close()
        for thread in self._threads:
            thread.join(timeout=BOUND_S)
        self._server.close()


@pytest.fixture(params=DRIVERS)
def maria_url(request: pytest.FixtureRequest) -> str:
    """The filled MariaDB database, through pymysql and through the MariaDB ODBC driver."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def forwarder(maria_url: str) -> Iterator[Forwarder]:
    parsed = make_url(maria_url)
    relay = Forwarder((parsed.host or "127.0.0.1", parsed.port or 3306))
    yield relay
    relay.close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _on_port(url: str, port: int) -> str:
    return make_url(url).set(port=port).render_as_string(hide_password=False)


def _read(settings: SqlPosSettings) -> list[str]:
    source = pos.create(settings, TZ)
    try:
        chunks = list(source.sales(local(2026, 11, 20, 0), local(2026, 11, 21, 0)))
    finally:
        source.close()
    return [sale.transaction_id for chunk in chunks for sale in chunk if isinstance(sale, Sale)]


def test_the_preset_reads_the_sale_through_each_driver(maria_url: str) -> None:
    settings = SqlPosSettings(url=maria_url)
    results = pos.check(settings, TZ)
    assert [r.ok for r in results[:2]] == [True, True], results
    assert _read(settings) == ["1"]


def test_the_port_in_the_url_is_the_port_connected_to(maria_url: str, forwarder: Forwarder) -> None:
    """A URL naming the forwarder's port reads the sale through it: the forwarder saw the
    connections, so the driver did not go to 3306 on its own."""
    settings = SqlPosSettings(url=_on_port(maria_url, forwarder.port))
    assert _read(settings) == ["1"]
    assert forwarder.connections >= 1


def test_a_port_where_nothing_listens_fails_instead_of_reaching_3306(
    maria_url: str, closed_port: int
) -> None:
    settings = SqlPosSettings(url=_on_port(maria_url, closed_port), connect_timeout=5)
    [failed] = pos.check(settings, TZ)
    assert isinstance(failed.error, PosUnavailable), failed


def test_an_odbc_connect_string_with_server_comma_port_reaches_that_port(
    mariadb_odbc_url: str,
) -> None:
    """The same trap in a connection string of the admin's own (``SERVER=host,port``): the
    port is passed as ``Port=`` and the forwarder in front of 3306 carries the read."""
    parsed = make_url(mariadb_odbc_url)
    relay = Forwarder((parsed.host or "127.0.0.1", parsed.port or 3306))
    try:
        connect = (
            f"DRIVER={{{parsed.query['driver']}}};SERVER=127.0.0.1,{relay.port};"
            f"DATABASE={parsed.database};UID={parsed.username}"
        )
        url = f"mysql+pyodbc:///?odbc_connect={quote_plus(connect)}"
        assert _read(SqlPosSettings(url=url)) == ["1"]
        assert relay.connections >= 1
    finally:
        relay.close()
