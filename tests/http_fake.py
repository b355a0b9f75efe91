"""A real HTTP server on 127.0.0.1 that answers like an email provider, with faults on demand.

Each provider's tests give it routes: functions that read a ``Recorded`` request the way the
provider documents it and return a ``Reply``. The server adds what every provider has:

- faults, planned per request: an HTTP status with headers (429 with Retry-After, 500, 502,
  503), a connection reset before the request is handled (nothing happened) or after it
  (the provider did the work, the answer was lost), or a slow answer (the client's read
  timeout fires; the work is done);
- an idempotency cache: a request whose ``Idempotency-Key`` was seen before gets the first
  answer again and is not handled twice, as Resend and others document;
- a record of every request and of every message the routes say they delivered.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


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
    kind: str  # "status" | "reset_before" | "reset_after" | "slow"
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0


def status(code: int, **headers: str) -> Fault:
    return Fault("status", code, tuple((k.replace("_", "-"), v) for k, v in headers.items()))


RESET_BEFORE = Fault("reset_before")
RESET_AFTER = Fault("reset_after")


def slow(seconds: float) -> Fault:
    return Fault("slow", seconds=seconds)


Route = Callable[[Recorded], Reply]


class FakeProvider:
    """Routes by (method, path prefix); faults from ``plan`` or a random ``fault_rate``."""

    def __init__(self, routes: dict[tuple[str, str], Route]) -> None:
        self.routes = routes
        self.requests: list[Recorded] = []
        self.handled: list[Recorded] = []  # requests a route actually processed
        self.delivered: Counter[str] = Counter()  # whatever id a route counts deliveries by
        self.plan: list[Fault | None] = []  # consumed one per request, before fault_rate
        self.fault_rate = 0.0
        self.random_faults: list[Fault] = []
        self.faults_injected: Counter[str] = Counter()
        self.idempotent = True  # honour Idempotency-Key like the real service
        self._answers: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self._random = random.Random(7)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
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
        self._server.shutdown()
        self._server.server_close()

    def deliver(self, *ids: str) -> None:
        with self._lock:
            self.delivered.update(ids)

    # --- one request ---------------------------------------------------------------------

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self.plan:
                return self.plan.pop(0)
            if self.fault_rate and self._random.random() < self.fault_rate:
                return self._random.choice(self.random_faults)
        return None

    def _answer(self, request: Recorded) -> Reply | None:
        """None means: drop the connection without an answer."""
        with self._lock:
            self.requests.append(request)
        fault = self._next_fault()
        if fault is not None:
            self.faults_injected[fault.kind if fault.kind != "status" else str(fault.status)] += 1
        if fault is not None and fault.kind == "status":
            return Reply(fault.status, {"message": "injected fault"}, dict(fault.headers))
        if fault is not None and fault.kind == "reset_before":
            return None
        reply = self._handle(request)
        if fault is not None and fault.kind == "reset_after":
            return None
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.seconds)  # the server is slow; the client's timeout fires
        return reply

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
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                reply = fake._answer(request)
                if reply is None:
                    self._drop()
                    return
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body)
                payload = data.encode("utf-8") if isinstance(data, str) else data
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _drop(self) -> None:
                # A reset, not a clean close: SO_LINGER 0 makes the kernel send RST.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                self.close_connection = True
                self.connection.close()

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler
