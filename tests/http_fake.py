"""A real HTTP server on 127.0.0.1 that answers like an email provider, with faults on demand.

Each provider's tests give it routes: functions that read a ``Recorded`` request the way the
provider documents it and return a ``Reply``. The server adds what every provider has:

- faults, planned for the requests they are meant for (``fail(method, path, ...)``, matched by
  method, path and optionally a predicate, never by arrival order) or drawn at a random
  ``fault_rate``: an HTTP status with headers (429 with Retry-After, 500, 502, 503), a
  connection reset before the request is handled (nothing happened) or after it (the
  provider did the work, the answer was lost), or ``HOLD``: the work is done, the status line
  and headers are sent, and the body is kept until the client gives up and closes the
  connection;
- an idempotency cache: a request whose ``Idempotency-Key`` was seen before gets the first
  answer again and is not handled twice, as Resend and others document;
- a record of every request and of every message the routes say they delivered.

Nothing here depends on speed. A held answer never arrives, so a client's read timeout is
the only way out, and it fires on a client ``attach``-ed to the fake: its hook gives that one
call a short read timeout once the held headers are in, after the work is done. ``stop``
ends every connection and joins every thread, so nothing outlives the test that started it.
"""

from __future__ import annotations

import contextlib
import json
import random
import selectors
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

HELD_HEADER = "X-Fake-Held"  # on a held answer: the client's hook gives up on its body
ATTACHED_HEADER = "X-Fake-Attached"  # on a request from a client whose hook can give up
GIVE_UP_SECONDS = 0.05  # the held body never comes, so any read timeout ends the same way
JOIN_SECONDS = 30.0  # only reached when a thread is stuck, which fails the test


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    kind: str  # "status" | "reset_before" | "reset_after" | "hold"
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """How ``faults_injected`` counts it: the status code, or the kind."""
        return str(self.status) if self.kind == "status" else self.kind


def status(code: int, **headers: str) -> Fault:
    return Fault("status", code, tuple((k.replace("_", "-"), v) for k, v in headers.items()))


RESET_BEFORE = Fault("reset_before")
RESET_AFTER = Fault("reset_after")
HOLD = Fault("hold")

Route = Callable[[Recorded], Reply]
Predicate = Callable[[Recorded], bool]


@dataclass(frozen=True)
class _Planned:
    method: str
    path: str
    fault: Fault | None  # None: this request passes untouched
    when: Predicate | None

    def matches(self, request: Recorded) -> bool:
        return (
            request.method == self.method
            and request.path == self.path
            and (self.when is None or self.when(request))
        )


class FakeProvider:
    """Routes by (method, path prefix); faults from ``fail`` or a random ``fault_rate``."""

    def __init__(self, routes: dict[tuple[str, str], Route]) -> None:
        self.routes = routes
        self.requests: list[Recorded] = []
        self.handled: list[Recorded] = []  # requests a route actually processed
        self.delivered: Counter[str] = Counter()  # whatever id a route counts deliveries by
        self.fault_rate = 0.0
        self.random_faults: list[Fault] = []
        self.faults_injected: Counter[str] = Counter()
        self.idempotent = True  # honour Idempotency-Key like the real service
        self.problems: list[str] = []  # what went wrong inside the fake; stop() raises them
        self._planned: list[_Planned] = []
        self._answers: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self._random = random.Random(7)
        self._server = _Server(self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end every connection, join every thread; raise what went wrong."""
        self._server.shutdown()
        self._server.end_connections()
        stuck = self._server.join_handlers(JOIN_SECONDS)
        self._server.server_close()
        self._thread.join(JOIN_SECONDS)
        problems = self.problems + [f"a handler thread outlived the test: {t}" for t in stuck]
        assert not problems, problems

    def fail(
        self, method: str, path: str, *faults: Fault | None, when: Predicate | None = None
    ) -> None:
        """The next requests to exactly ``method path`` (and, given ``when``, only those it
        accepts) meet ``faults`` in order; a ``None`` lets one such request through."""
        with self._lock:
            self._planned += [_Planned(method, path, f, when) for f in faults]

    def unplanned(self) -> list[tuple[str, str, Fault | None]]:
        """The planned faults no request has met yet."""
        with self._lock:
            return [(p.method, p.path, p.fault) for p in self._planned]

    def deliver(self, *ids: str) -> None:
        with self._lock:
            self.delivered.update(ids)

    def attach(self, client: httpx.Client) -> None:
        """Let ``client`` give up on a held answer: that call alone gets a short read timeout,
        set once its headers arrived (the work is done by then); every other call keeps the
        client's own timeouts."""
        normal = client.timeout.as_dict()

        def mark(request: httpx.Request) -> None:
            request.headers[ATTACHED_HEADER] = "1"
            request.extensions["timeout"] = dict(normal)  # a retry starts from the usual

        def give_up_if_held(response: httpx.Response) -> None:
            if HELD_HEADER in response.headers:
                timeouts = response.request.extensions["timeout"]
                response.request.extensions["timeout"] = {**timeouts, "read": GIVE_UP_SECONDS}

        client.event_hooks["request"].append(mark)
        client.event_hooks["response"].append(give_up_if_held)

    # --- one request ---------------------------------------------------------------------

    def _fault_for(self, request: Recorded) -> Fault | None:
        with self._lock:
            index = next((i for i, p in enumerate(self._planned) if p.matches(request)), None)
            if index is not None:
                fault = self._planned.pop(index).fault
            elif self.fault_rate and self._random.random() < self.fault_rate:
                fault = self._random.choice(self.random_faults)
            else:
                fault = None
            if fault is not None:
                self.faults_injected[fault.name] += 1
        attached = ATTACHED_HEADER.lower() in request.headers
        if fault is not None and fault.kind == "hold" and not attached:
            # Held, this client would wait out its whole timeout: fail the test instead.
            self.problems.append(
                f"{request.method} {request.path} was held for a client that cannot give up "
                "on it: run through provider_kit.run, which attaches the fake"
            )
            return RESET_AFTER
        return fault

    def _answer(self, request: Recorded) -> tuple[Reply | None, bool]:
        """The reply (None: drop the connection without one) and whether to hold its body."""
        with self._lock:
            self.requests.append(request)
        fault = self._fault_for(request)
        if fault is not None and fault.kind == "status":
            return Reply(fault.status, {"message": "injected fault"}, dict(fault.headers)), False
        kind = fault.kind if fault is not None else None
        if kind == "reset_before":
            return None, False
        reply = self._handle(request)
        if kind == "reset_after":
            return None, False
        return reply, kind == "hold"

    def _handle(self, request: Recorded) -> Reply:
        key = request.headers.get("idempotency-key")
        with self._lock:
            if self.idempotent and key and key in self._answers:
                return self._answers[key]
        route = self._route(request)
        reply = route(request) if route else Reply(404, {"message": "no such route"})
        with self._lock:
            self.handled.append(request)
            if self.idempotent and key and reply.status < 500:
                self._answers[key] = reply
        return reply

    def _route(self, request: Recorded) -> Route | None:
        for (method, prefix), route in self.routes.items():
            if request.method == method and request.path.startswith(prefix):
                return route
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _serve(self) -> None:
                try:
                    reply, held = fake._answer(self._recorded())
                except Exception as exc:  # a broken route fails its test, not just a call
                    fake.problems.append(f"{self.command} {self.path}: {exc!r}")
                    raise
                if reply is None:
                    self._drop()
                    return
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body)
                payload = data.encode("utf-8") if isinstance(data, str) else data
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if held:  # chunked, and not one chunk follows: even an empty body never ends
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header(HELD_HEADER, "1")
                    self.end_headers()
                    self._hold()
                    return
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _recorded(self) -> Recorded:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                return Recorded(self.command, parts.path, parse_qs(parts.query), headers, body)

            def _hold(self) -> None:
                """Keep the body until the client closes the connection (or the fake stops)."""
                self.wfile.flush()
                fake._server.wait_for_close(self.connection)
                self.close_connection = True

            def _drop(self) -> None:
                # A reset, not a clean close: SO_LINGER 0 makes the kernel send RST.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                self.close_connection = True
                self.connection.close()

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler


class _Server(ThreadingHTTPServer):
    """A threading server that knows its connections and handler threads, so that ``stop``
    can end the first and join the second."""

    daemon_threads = True  # never blocks the interpreter's exit; stop() joins them anyway

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._handlers: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._tracking = threading.Lock()
        self._wake_reader, self._wake_writer = socket.socketpair()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._tracking:
            self._handlers.append(thread)
            self._connections.add(request)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._tracking:
            self._connections.discard(request)
        super().shutdown_request(request)

    def wait_for_close(self, connection: socket.socket) -> None:
        """Return once the peer closed ``connection`` (or reset it), or the server stops."""
        with selectors.DefaultSelector() as selector:
            selector.register(connection, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_reader:
                        return
                    try:
                        if not connection.recv(65536):
                            return
                    except OSError:
                        return

    def end_connections(self) -> None:
        """Wake held answers and end keep-alive connections a client left open."""
        self._wake_writer.send(b"x")
        with self._tracking:
            open_now = list(self._connections)
        for connection in open_now:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)

    def join_handlers(self, seconds: float) -> list[threading.Thread]:
        """Join every handler thread; those still running after ``seconds``."""
        with self._tracking:
            threads = list(self._handlers)
        for thread in threads:
            thread.join(seconds)
        return [t for t in threads if t.is_alive()]

    def server_close(self) -> None:
        super().server_close()  # its own thread list is empty: process_request is ours
        self._wake_reader.close()
        self._wake_writer.close()
