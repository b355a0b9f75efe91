"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 that records what it is given and
misbehaves on cue (refused or busy recipients, dropped connections, going away) or at a
random ``fault_rate``, with STARTTLS, TLS from the first byte and AUTH when asked.

Its port is reserved for the whole test (``reserve_port``): bound and not listening, it
refuses connections while no server runs on it, and no other server, of this run or
another, can take it between a stop and a restart.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
BUSY_REPLY = "451 4.7.1 Greylisted, try again later"
READY_SECONDS = 60.0  # how long a start may take; only reached when something is broken
RANDOM_FAULTS = ("busy", "drop_at_mail", "drop_after_content")


@contextmanager
def reserve_port() -> Iterator[int]:
    """A port on 127.0.0.1 kept for the block: it refuses connections until an
    ``SmtpServer`` listens on it (SO_REUSEPORT lets that server share it), and again after."""
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((HOST, 0))
        yield int(held.getsockname()[1])


@dataclass(frozen=True)
class Received:
    """One message as the server took it in."""

    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    content: bytes

    def parsed(self) -> EmailMessage:
        # Decoded first: a message to a non-ASCII local part has UTF-8 headers (RFC 6532).
        text = self.content.decode("utf-8")
        return email.message_from_string(text, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def request_id(self) -> str:
        return str(self.parsed()["X-Surveysync-Request"])


@dataclass
class Handler:
    """aiosmtpd hooks; the public fields are the faults to inject and what was seen."""

    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> 5xx reply
    busy: dict[str, int] = field(default_factory=dict)  # recipient -> 451 replies left
    drop_at_mail: set[int] = field(default_factory=set)  # n-th MAIL command (from 1) drops
    drop_after_content: set[str] = field(default_factory=set)  # content taken, never answered
    stop_after: int | None = None  # the server goes away at the MAIL after this many messages
    fault_rate: float = 0.0  # this share of transactions meets one of RANDOM_FAULTS
    clock: Callable[[], float] | None = None  # read at every MAIL, into mail_times
    received: list[Received] = field(default_factory=list)
    unanswered: list[Received] = field(default_factory=list)
    mail_times: list[float] = field(default_factory=list)
    peers: list[Any] = field(default_factory=list)  # one per connection that sent MAIL
    rcpt_addresses: list[str] = field(default_factory=list)  # every RCPT, refused or not
    listener: asyncio.AbstractServer | None = None
    mail_commands: int = 0
    faults_injected: Counter[str] = field(default_factory=Counter)
    _random: random.Random = field(default_factory=lambda: random.Random(7))

    def recipients(self) -> list[str]:
        return sorted(r for message in self.received for r in message.rcpt_tos)

    def delivered(self) -> Counter[str]:
        """Request id -> times the server took its content (answered or not)."""
        return Counter(m.request_id for m in [*self.received, *self.unanswered])

    def _draw(self, envelope: Envelope) -> str | None:
        """This transaction's random fault, kept on its envelope for RCPT and DATA."""
        fault = None
        if self.fault_rate and self._random.random() < self.fault_rate:
            fault = self._random.choice(RANDOM_FAULTS)
            self.faults_injected[fault] += 1
        envelope.random_fault = fault  # type: ignore[attr-defined]
        return fault

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mail_commands += 1
        if self.clock is not None:
            self.mail_times.append(self.clock())
        if session.peer not in self.peers:
            self.peers.append(session.peer)
        if self.stop_after is not None and len(self.received) >= self.stop_after:
            assert self.listener is not None
            self.listener.close()  # nobody can connect any more
            await _drop(server)
        if self.mail_commands in self.drop_at_mail:
            self.drop_at_mail.discard(self.mail_commands)
            await _drop(server)
        if self._draw(envelope) == "drop_at_mail":
            await _drop(server)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.rcpt_addresses.append(address)
        if address in self.refuse:
            return self.refuse[address]
        if self.busy.get(address, 0) > 0:
            self.busy[address] -= 1
            return BUSY_REPLY
        if getattr(envelope, "random_fault", None) == "busy":
            return BUSY_REPLY
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None and isinstance(envelope.original_content, bytes)
        message = Received(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            list(envelope.mail_options),
            envelope.original_content,
        )
        dropped = self.drop_after_content.intersection(message.rcpt_tos)
        if dropped or getattr(envelope, "random_fault", None) == "drop_after_content":
            self.drop_after_content -= dropped
            self.unanswered.append(message)
            await _drop(server)
        self.received.append(message)
        return "250 2.0.0 OK: queued"


async def _drop(server: SMTP) -> None:
    """Close the connection without a reply; the session is cancelled when it is gone."""
    assert server.transport is not None
    server.transport.close()
    await asyncio.Event().wait()


class PasswordCheck:
    """An aiosmtpd authenticator that knows one user."""

    def __init__(self, username: str, password: str) -> None:
        self._expected = LoginPassword(username.encode(), password.encode())

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        return AuthResult(success=data == self._expected, handled=False)


@dataclass(frozen=True)
class TestCertificates:
    """A test CA (its PEM file for ca_file) and a server context it signed."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    ca_file: Path
    server_context: ssl.SSLContext


def certificates(folder: Path) -> TestCertificates:
    authority = trustme.CA()
    ca_file = folder / "test-ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(HOST, "localhost").configure_cert(context)
    return TestCertificates(ca_file, context)


class _SharedPortController(Controller):
    """aiosmtpd's Controller, listening with SO_REUSEPORT on a port ``reserve_port`` holds."""

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(
            self._factory_invoker,
            host=self.hostname,
            port=self.port,
            ssl=self.ssl_context,
            reuse_port=True,
        )


class SmtpServer:
    """An aiosmtpd Controller on 127.0.0.1, on a port from ``reserve_port``.

    ``security`` is "none", "starttls" (required before MAIL) or "tls" (from the first byte);
    ``login`` is a (username, password) pair the server then requires.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        port: int,
        security: str = "none",
        tls: ssl.SSLContext | None = None,
        login: tuple[str, str] | None = None,
        smtputf8: bool = True,
    ) -> None:
        self.handler = handler or Handler()
        self.port = port
        options: dict[str, Any] = {"enable_SMTPUTF8": smtputf8, "server_hostname": "mx.test"}
        if security == "starttls":
            options.update(tls_context=tls, require_starttls=True)
        elif security == "tls":
            options.update(ssl_context=tls)
        if login is not None:
            options.update(authenticator=PasswordCheck(*login), auth_required=True)
        self._controller = _SharedPortController(
            self.handler, hostname=HOST, port=self.port, ready_timeout=READY_SECONDS, **options
        )
        self._running = False

    def start(self) -> SmtpServer:
        self._controller.start()
        self._running = True
        self.handler.listener = self._controller.server
        return self

    def stop(self) -> None:
        """Stop serving; harmless when already stopped."""
        if self._running:
            self._running = False
            self._controller.stop()


class StartServer:
    """Starts SMTP servers for one test, each on a port reserved until the test ends."""

    def __init__(self, held: ExitStack) -> None:
        self._held = held
        self.servers: list[SmtpServer] = []

    def reserve(self) -> int:
        """A port that refuses connections until a server is started on it."""
        return self._held.enter_context(reserve_port())

    def __call__(
        self, handler: Handler | None = None, *, port: int | None = None, **options: Any
    ) -> SmtpServer:
        chosen = self.reserve() if port is None else port
        server = SmtpServer(handler, port=chosen, **options).start()
        self.servers.append(server)
        return server


def servers_for_a_test() -> Iterator[StartServer]:
    """Start SMTP servers for a test; every one is stopped, and its port let go, afterwards."""
    with ExitStack() as held:
        servers = StartServer(held)
        yield servers
        for server in servers.servers:
            server.stop()
