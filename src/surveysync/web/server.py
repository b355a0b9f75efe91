"""``serve``: the survey page on uvicorn until the process is told to stop.

The socket is bound here, before uvicorn starts, so that a port already in use is a clear
``WebError`` (and ``--port 0`` can say which port it got). uvicorn stops gracefully on
SIGINT and SIGTERM, and on Windows on Ctrl+C and Ctrl+Break, which is how WinSW and NSSM
stop a service; the process then exits with code 0. Proxy headers are handled by the
application itself (``create_app``), only from ``web.trusted_proxies``, so uvicorn's own
handling stays off.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator

import structlog
import uvicorn

from surveysync.config import Settings
from surveysync.ledger import open_ledger
from surveysync.web.alerting import AlertHooks
from surveysync.web.app import Hooks, create_app

log = structlog.get_logger("surveysync.web")
GRACEFUL_STOP_SECONDS = 10


class WebError(Exception):
    """The survey page cannot start (the address cannot be listened on)."""


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    *,
    hooks: Hooks | None = None,
    ready: Callable[[str], object] | None = None,
) -> None:
    """Serve the survey page on ``host:port`` (default ``[web]`` host and port) until
    stopped. ``ready`` is told the address once it listens."""
    host = host or settings.web.host
    port = settings.web.port if port is None else port
    sock = bind(host, port)
    ledger = open_ledger(settings)
    alerting = AlertHooks(settings)
    try:
        app = create_app(settings, ledger, hooks=hooks or alerting.hooks())
        config = uvicorn.Config(
            app,
            proxy_headers=False,
            server_header=False,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_STOP_SECONDS,
        )
        url = listening_url(sock)
        log.info("web.listening", url=url, public_url=settings.web.public_url)
        if ready is not None:
            ready(url)
        _Server(config).run(sockets=[sock])
    finally:
        alerting.close()
        ledger.close()
        sock.close()
    log.info("web.stopped")


class _Server(uvicorn.Server):
    """uvicorn's server, except that a stop signal ends in a clean exit (code 0, after the
    graceful stop and our own "web.stopped"), as `surveysync run` does; uvicorn would
    raise the signal again once stopped, and the process would die of it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        if os.name != "nt":  # on Windows it would let another process take the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        raise WebError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def listening_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
