"""What the tests of every provider share, written once: the store pointed at a provider,
customers with a sale each, the ledger read back (statuses, request ids), a run whose client
can give up on a held answer, a crash between send and settle, the random faults of the
"30 % fault rate" tests, a port nobody listens on, a clock that only moves when something
sleeps, and ``Service``: what the contract suite (``test_provider_contract.py``) asks of
each provider's local service.

Each provider's own fake (the routes that answer as its API documents) stays in its test
module; the fixture that lets stamina retry at once is ``retries_without_waiting`` in
``conftest.py``, asked for by each module with ``pytest.mark.usefixtures``.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

import pytest

from surveysync.providers import OutgoingEmail, Provider, SendResult, create
from surveysync.providers.http import HttpProvider
from surveysync.sync import RunReport, SyncRequest, run_sync
from tests.conftest import Store
from tests.http_fake import HOLD, RESET_AFTER, RESET_BEFORE, FakeProvider, Fault, status

# 429s, 5xx, resets before and after handling and a held answer (the client's read timeout
# fires once the work is done): what the "30 % fault rate" tests draw from.
FAULTS: tuple[Fault, ...] = (
    status(429, Retry_After="1"),
    status(500),
    status(502),
    status(503),
    RESET_BEFORE,
    RESET_AFTER,
    HOLD,
)

# Generous: a normal answer on a busy machine is never mistaken for a lost one. A held
# answer ends by the client's hook (http_fake.FakeProvider.attach), not by this timeout.
TIMEOUT_SECONDS = "30"


# --- the store and its ledger ------------------------------------------------------------------


def use_provider(
    store: Store, kind: str, batch_size: int, settings: dict[str, str], **http: str
) -> None:
    """Point the store at provider ``kind`` (its ``[provider.<kind>]`` settings as TOML
    values) in batches of ``batch_size``, first run from 19 November; ``[provider.http]``
    times out after 30 s and tries 8 times unless ``http`` says otherwise."""
    store.first_run_start = "2026-11-19T00:00:00"
    store.extra["provider"] = {"kind": f'"{kind}"', "batch_size": str(batch_size)}
    store.extra[f"provider.{kind}"] = settings
    store.extra["provider.http"] = {
        "timeout_seconds": TIMEOUT_SECONDS,
        "retry_attempts": "8",
        **http,
    }


def customers(
    store: Store, count: int, day: int = 20, first: int = 0, *, numbered_names: bool = False
) -> list[str]:
    """Customers C{first}… with a sale each on 2026-11-{day}, a minute apart; their addresses.

    Every one is Kim Jansen, or with ``numbered_names`` Kim0, Kim1, … (C0, C1, …)."""
    for n in range(first, first + count):
        if numbered_names:
            store.customer(f"C{n}", first=f"Kim{n}")
        else:
            store.customer(f"C{n}")
        store.pos.sale(f"C{n}", datetime(2026, 11, day, 9, 0) + timedelta(minutes=n))
    return [f"c{n}@example.com" for n in range(first, first + count)]


def statuses(store: Store) -> list[str]:
    """The status of every request in the ledger, sorted."""
    return sorted(s for (s,) in store.ledger_rows("SELECT status FROM requests"))


def request_ids(store: Store, status: str | None = "sent") -> list[str]:
    """The ids of the requests with this status (None: every request), sorted."""
    where = "" if status is None else f" WHERE status = '{status}'"
    return sorted(rid for (rid,) in store.ledger_rows(f"SELECT id FROM requests{where}"))


def run(store: Store, fake: FakeProvider | None, now: datetime, **request: Any) -> RunReport:
    """``store.run``, with a provider whose client can give up on ``fake``'s held answers."""
    settings = store.settings()
    provider = create(settings.provider)
    if fake is not None and isinstance(provider, HttpProvider):
        fake.attach(provider.client)
    try:
        return run_sync(settings, SyncRequest(now=now, **request), provider=provider)
    finally:
        provider.close()


# --- a crash between send and settle -------------------------------------------------------------


class Crash(Exception):
    pass


class CrashAfterSend:
    """The real provider, and a power cut right after it answered, before the ledger hears."""

    def __init__(self, real: Provider) -> None:
        self.real = real
        self.name = real.name
        self.max_batch_size = real.max_batch_size
        self.honours_idempotency_key = real.honours_idempotency_key
        self.renders_templates = real.renders_templates

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        self.real.send(batch)
        raise Crash

    def check(self) -> str:
        return self.real.check()

    def close(self) -> None:
        self.real.close()


def crash_after_send(
    store: Store, now: datetime, expect_type: type[Provider] | None = None
) -> None:
    """A run at ``now`` with the configured provider (checked to be an ``expect_type``) that
    crashes right after the first call was answered; the requests in it stay 'sending'."""
    settings = store.settings()
    provider = create(settings.provider)
    if expect_type is not None:
        assert isinstance(provider, expect_type)
    try:
        with pytest.raises(Crash):
            run_sync(settings, SyncRequest(now=now), provider=CrashAfterSend(provider))
    finally:
        provider.close()


# --- the network and the clock -------------------------------------------------------------------


@contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections while the block runs: it stays bound and
    never listens, so no other server (of this run or another) can take it meanwhile."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


class FakeTime:
    """A monotonic clock that only moves when something sleeps."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# --- what the contract suite asks of each provider's service --------------------------------------


class Service(Protocol):
    """A provider's local service (an HTTP fake, the SMTP server, a folder) as the contract
    suite in ``test_provider_contract.py`` drives it."""

    kind: ClassVar[str]
    secrets: ClassVar[tuple[str, ...]]  # the key or password, in each form it travels in
    bad_address: ClassVar[str]  # an address the service refuses for good
    ready_words: ClassVar[str]  # part of what `check` says when all is well
    refused_words: ClassVar[str]  # part of what `check` says about a refused key
    unreachable_words: ClassVar[str]  # part of what `check` says when it cannot get there
    # A lost answer is retried within the run under the call's own key, so it ends sent.
    retries_lost_answers: ClassVar[bool]
    # After a crash the call in flight goes again under its key (honours_idempotency_key).
    repeats_after_crash: ClassVar[bool]
    http: FakeProvider | None  # the HTTP fake, whose held answers a run's client gives up on

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def configure(
        self, store: Store, *, secret: str | None = None, reachable: bool = True, attempts: int = 8
    ) -> None:
        """Point the store at the service: with another key or password, at a place where
        nothing answers, or retrying ``attempts`` times."""

    def delivered(self) -> Counter[str]:
        """How many times each request id reached its recipient."""

    def trouble(self) -> None:
        """Plan faults on the next sends that are retried, and answered in words."""

    def fault_rate(self, rate: float) -> None:
        """Fault this share of calls, drawn with a fixed seed."""


class HttpService:
    """What the HTTP providers' services share; each module names its calls and words.

    ``start`` also keeps a port that refuses connections until ``stop``, for the
    "cannot reach" case of ``configure(reachable=False)``."""

    kind: ClassVar[str]
    secrets: ClassVar[tuple[str, ...]]
    bad_address: ClassVar[str]
    ready_words: ClassVar[str]
    refused_words: ClassVar[str] = "refused the API key (HTTP 40"
    unreachable_words: ClassVar[str] = "cannot reach 127.0.0.1"
    retries_lost_answers: ClassVar[bool] = False
    repeats_after_crash: ClassVar[bool] = False
    send_call: ClassVar[tuple[str, str]]  # method and path of a send
    list_call: ClassVar[tuple[str, str] | None] = None  # the suppression list, if any
    http: FakeProvider

    def start(self) -> None:
        self._held = ExitStack()
        self.unreachable_url = f"http://127.0.0.1:{self._held.enter_context(closed_port())}"
        self.http.start()

    def stop(self) -> None:
        self._held.close()
        self.http.stop()

    def base_url(self, reachable: bool) -> str:
        return self.http.url if reachable else self.unreachable_url

    def delivered(self) -> Counter[str]:
        return self.http.delivered

    def trouble(self) -> None:
        self.http.fail(*self.send_call, status(500), status(429, Retry_After="1"))

    def fault_rate(self, rate: float) -> None:
        self.http.fault_rate = rate
        self.http.random_faults = list(FAULTS)

    def suppress(self, address: str) -> None:
        """Put ``address`` on the provider's suppression list (providers with a list_call)."""
        raise NotImplementedError(f"{self.kind} keeps no suppression list")
