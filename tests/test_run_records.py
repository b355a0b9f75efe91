"""Run records tell the truth: a killed run is shown as crashed, times are real, a repeated
call after crashes is the same call byte for byte, and status says how much it left out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from surveysync.ledger import open_ledger
from surveysync.model import RequestStatus
from surveysync.providers import OutgoingEmail, ProviderUnavailable, SendResult
from surveysync.sync import SyncRequest, run_sync
from tests.conftest import Store, local


@pytest.fixture
def store(tmp_path: Path, ledger_url: str) -> Store:
    """These promises hold on every ledger backend."""
    return Store(tmp_path, ledger_url)


class Killed(BaseException):
    """Stands for kill -9 right after the provider took a call, before the ledger heard."""


@dataclass
class KeyedProvider:
    """An idempotency-key provider that records every call exactly as it was made."""

    kill_on_calls: set[int] = field(default_factory=set)
    calls: list[list[tuple[str, str, str, bytes]]] = field(default_factory=list)
    name: str = "keyed"
    max_batch_size: int = 10
    honours_idempotency_key: bool = True
    renders_templates: bool = False

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        self.calls.append(
            [(e.batch_key, e.request_id, e.message.date.isoformat(), _bytes(e)) for e in batch]
        )
        if len(self.calls) in self.kill_on_calls:
            raise Killed
        return [SendResult(e.request_id, RequestStatus.SENT, f"m-{e.request_id}") for e in batch]

    def check(self) -> str:
        return "keyed"

    def close(self) -> None:
        return None


def _bytes(email: OutgoingEmail) -> bytes:
    """What an HTTP provider puts in its body: every part and header (MIME boundaries aside)."""
    m = email.message
    parts = [m.recipient.addr_spec, m.subject, m.text, m.html, repr(m.extra_headers())]
    return "\x00".join(parts).encode("utf-8")


class StepClock:
    """A clock that moves a fixed step each time it is read."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.now, self.step = start, step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def _customers(store: Store, count: int) -> None:
    for n in range(count):
        store.customer(f"C{n}")
        store.pos.sale(f"C{n}", datetime(2026, 11, 20, 9, 0) + timedelta(minutes=n))


@pytest.mark.parametrize("kills", [2, 3])
def test_a_call_repeated_after_several_kills_is_the_same_call_byte_for_byte(
    store: Store, kills: int
) -> None:
    """After two or three kills mid-call, each repeat lists the same emails in the same order
    with the same bytes (same Date, same links) under the same key, and each is sent once."""
    _customers(store, 7)
    provider = KeyedProvider(kill_on_calls=set(range(1, kills + 1)))
    for attempt in range(kills):
        now = local(2026, 11, 20, 23) + timedelta(minutes=10 * attempt)
        with pytest.raises(Killed):
            run_sync(store.settings(), SyncRequest(now=now), provider=provider)
    run_sync(store.settings(), SyncRequest(now=local(2026, 11, 21, 1)), provider=provider)
    first = provider.calls[0]
    assert len(first) == 7
    for repeat in provider.calls[1 : kills + 1]:
        assert repeat == first
    assert len(provider.calls) == kills + 1
    statuses = store.ledger_rows("SELECT status, COUNT(*) FROM requests GROUP BY status")
    assert statuses == [("sent", 7)]


def test_a_run_records_its_real_duration_and_each_email_its_real_send_time(store: Store) -> None:
    """finished_at is later than started_at, and a request's settled_at later than its
    created_at, by the time the injected clock moved."""
    _customers(store, 3)
    clock = StepClock(local(2026, 11, 20, 23), timedelta(seconds=5))
    request = SyncRequest(now=local(2026, 11, 20, 23), clock=clock)
    run_sync(store.settings(), request, provider=KeyedProvider())
    [(started, finished)] = store.ledger_rows("SELECT started_at, finished_at FROM runs")
    assert _at(finished) - _at(started) >= timedelta(seconds=10)
    for created, sending, settled in store.ledger_rows(
        "SELECT created_at, sending_at, settled_at FROM requests"
    ):
        assert _at(created) < _at(sending) < _at(settled)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_run_whose_process_died_is_shown_as_crashed_and_status_fails_until_a_run_succeeds(
    store: Store,
) -> None:
    """A run left 'running' by a killed process is crashed in status (exit 1), recorded so,
    and status passes again once a run has succeeded."""
    _customers(store, 2)
    settings = store.settings()
    ledger = open_ledger(settings)
    try:
        orphan = ledger.runs.start("sync", local(2026, 11, 20, 23), dry_run=False)
    finally:
        ledger.close()
    result = store.cli("status", "--json")
    assert result.exit_code == 1, result.output
    runs = json.loads(result.output)["runs"]
    assert (runs[0]["id"], runs[0]["status"]) == (orphan, "crashed")
    assert "killed" in runs[0]["error"]
    assert store.cli("sync").exit_code == 0
    assert store.cli("status").exit_code == 0
    assert store.ledger_rows(f"SELECT status FROM runs WHERE id = '{orphan}'") == [("crashed",)]


def test_status_says_how_many_unsettled_requests_it_left_out_and_all_lists_them(
    store: Store,
) -> None:
    """With 53 requests waiting, status lists 50 and says 'and 3 more'; --all lists 53."""
    _customers(store, 53)
    down = KeyedProvider(max_batch_size=100)
    down.send = _unavailable  # type: ignore[method-assign]
    with pytest.raises(Exception, match="failed"):
        run_sync(store.settings(), SyncRequest(now=local(2026, 11, 20, 23)), provider=down)
    shown = store.cli("status")
    assert "and 3 more" in shown.output
    listed = json.loads(store.cli("status", "--json").output)
    assert (len(listed["unsettled"]), listed["unsettled_total"]) == (50, 53)
    everything = json.loads(store.cli("status", "--json", "--all").output)
    assert len(everything["unsettled"]) == 53


def _unavailable(batch: Sequence[OutgoingEmail]) -> list[SendResult]:
    raise ProviderUnavailable("connection refused")


def test_two_sales_of_one_person_at_the_same_second_pick_the_larger_number(store: Store) -> None:
    """Transaction ids that are numbers compare as numbers: 1046 is newer than 732."""
    store.customer("C1")
    store.pos.sale("C1", datetime(2026, 11, 20, 9, 0), transaction_id=732)
    store.pos.sale("C1", datetime(2026, 11, 20, 9, 0), transaction_id=1046)
    run_sync(store.settings(), SyncRequest(now=local(2026, 11, 20, 23)), provider=KeyedProvider())
    assert store.decisions() == {"1046": "request", "732": "duplicate_in_run"}

