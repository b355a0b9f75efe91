"""What the tests of every HTTP provider (Postmark, SendGrid, Brevo, Mailgun, Resend, the
webhook) share, written once: the store pointed at a provider, customers with a sale each,
the ledger read back (statuses, request ids), a crash between send and settle, the random
faults of the "30 % fault rate" tests, a port nobody listens on, and a clock that only
moves when something sleeps (the SMTP provider's pacing tests use it too).

Each provider's own fake (the routes that answer as its API documents) stays in its test
module; the fixture that lets stamina retry at once is ``retries_without_waiting`` in
``conftest.py``, asked for by each module with ``pytest.mark.usefixtures``.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from surveysync.providers import OutgoingEmail, Provider, SendResult, create
from surveysync.sync import SyncRequest, run_sync
from tests.conftest import Store
from tests.http_fake import RESET_AFTER, RESET_BEFORE, Fault, slow, status

# 429s, 5xx, resets before and after handling and a read timeout (every provider's test
# client times out after 0.3 s): what the "30 % fault rate" tests draw from.
FAULTS: tuple[Fault, ...] = (
    status(429, Retry_After="1"),
    status(500),
    status(502),
    status(503),
    RESET_BEFORE,
    RESET_AFTER,
    slow(0.5),
)


# --- the store and its ledger ------------------------------------------------------------------


def use_provider(
    store: Store, kind: str, batch_size: int, settings: dict[str, str], **http: str
) -> None:
    """Point the store at provider ``kind`` (its ``[provider.<kind>]`` settings as TOML
    values) in batches of ``batch_size``, first run from 19 November; ``[provider.http]``
    times out after 0.3 s and tries 8 times unless ``http`` says otherwise."""
    store.first_run_start = "2026-11-19T00:00:00"
    store.extra["provider"] = {"kind": f'"{kind}"', "batch_size": str(batch_size)}
    store.extra[f"provider.{kind}"] = settings
    store.extra["provider.http"] = {"timeout_seconds": "0.3", "retry_attempts": "8", **http}


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


def closed_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeTime:
    """A monotonic clock that only moves when something sleeps."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
