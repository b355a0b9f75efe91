"""The crash harness's receiver (tests/crash_receiver.py) as a process on 127.0.0.1: the
webhook contract as surveysync signs it, its idempotency cache, its durable record and its
scripted faults. The crash trials count on each of these to tell a duplicate from a repeat."""

from __future__ import annotations

import contextlib
import http.client
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from surveysync.providers.webhook import signature
from tests.crash_harness import ReceiverProcess
from tests.crash_shop import WEBHOOK_SECRET


class Receiver:
    """A receiver subprocess and a client that signs as surveysync does."""

    def __init__(self, root: Path, plan: dict[int, dict[str, Any]]) -> None:
        self.db = root / "receiver.sqlite"
        args = ["--fault-rate", "0"]
        if plan:
            (root / "plan.json").write_text(json.dumps({"faults": plan}), encoding="utf-8")
            args += ["--plan", str(root / "plan.json")]
        self.held = threading.Event()
        self.process = ReceiverProcess(self.db, args, on_hold=lambda event: self.held.set())
        self.process.start()

    def post(self, key: str, *addresses: str, secret: str = WEBHOOK_SECRET) -> httpx.Response:
        body, headers = _signed_call(key, addresses, secret)
        url = f"http://127.0.0.1:{self.process.port}{PATH}"
        return httpx.post(url, content=body, headers=headers, timeout=30.0)

    def post_and_give_up_once_held(self, key: str, *addresses: str) -> None:
        """Sends a call and hangs up only after the receiver says it holds the answer, so
        the test does not race a client timeout against the receiver's commit."""
        body, headers = _signed_call(key, addresses, WEBHOOK_SECRET)
        conn = http.client.HTTPConnection("127.0.0.1", self.process.port)
        try:
            conn.request("POST", PATH, body=body, headers=headers)
            # A safety net for a broken receiver, not a race: the hold is announced first.
            assert self.held.wait(120), "the receiver never announced that it holds the call"
        finally:
            conn.close()

    def delivered(self) -> list[tuple[str, str]]:
        """(request id, key) of every delivery the record holds."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return list(conn.execute("SELECT request_id, key FROM deliveries ORDER BY id"))


Start = Callable[..., Receiver]
PATH = "/hooks/surveys"


def _signed_call(key: str, addresses: tuple[str, ...], secret: str) -> tuple[bytes, dict[str, str]]:
    messages = [{"request_id": f"r-{a.split('@')[0]}", "to": a} for a in addresses]
    body = json.dumps({"type": "survey_requests", "messages": messages}).encode()
    stamp = str(int(time.time()))
    headers = {
        "Idempotency-Key": key,
        "Content-Type": "application/json",
        "X-Surveysync-Timestamp": stamp,
        "X-Surveysync-Signature": signature(secret, stamp, body),
    }
    return body, headers


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Starts a receiver with a plan of faults by call number; stops it afterwards."""
    running: list[Receiver] = []

    def started(plan: dict[int, dict[str, Any]] | None = None) -> Receiver:
        running.append(Receiver(tmp_path, plan or {}))
        return running[-1]

    yield started
    for receiver in running:
        receiver.process.stop()


@pytest.fixture
def receiver(start: Start) -> Receiver:
    return start()


def test_a_signed_batch_is_delivered_and_answered_per_message(receiver: Receiver) -> None:
    """A batch signed as surveysync signs it is taken, answered per request, and recorded."""
    answer = receiver.post("k1", "ann@example.com", "bob@example.com")
    assert answer.status_code == 200
    assert [r["status"] for r in answer.json()["results"]] == ["sent", "sent"]
    assert receiver.delivered() == [("r-ann", "k1"), ("r-bob", "k1")]


def test_a_wrong_signature_is_refused_and_delivers_nothing(receiver: Receiver) -> None:
    """A call signed with another secret gets 401 and nobody is emailed."""
    assert receiver.post("k1", "ann@example.com", secret="not-the-secret").status_code == 401
    assert receiver.delivered() == []


def test_a_repeated_key_gets_its_first_answer_and_another_body_409(receiver: Receiver) -> None:
    """The same key and body again is answered as before and delivers nothing new; the same
    key with another body is refused with 409."""
    first = receiver.post("k1", "ann@example.com")
    again = receiver.post("k1", "ann@example.com")
    other = receiver.post("k1", "ann@example.com", "bob@example.com")
    assert again.json() == first.json()
    assert other.status_code == 409
    assert receiver.delivered() == [("r-ann", "k1")]


def test_a_batch_naming_a_refused_address_is_refused_whole(receiver: Receiver) -> None:
    """One bounce address makes the whole batch a 400; alone, only that address is refused."""
    assert receiver.post("k1", "ann@example.com", "bounce7@example.com").status_code == 400
    assert receiver.post("k2", "bounce7@example.com").status_code == 400
    assert receiver.post("k3", "ann@example.com").status_code == 200
    assert receiver.delivered() == [("r-ann", "k3")]


def test_what_it_answered_survives_a_kill_of_the_receiver(receiver: Receiver) -> None:
    """After SIGKILL and a restart on the same port, a repeat of an answered call is still
    recognised: the record was committed before the answer."""
    receiver.post("k1", "ann@example.com")
    receiver.process.reconfigure(receiver.process.args)  # SIGKILL, then start again
    assert receiver.post("k1", "ann@example.com").status_code == 200
    assert receiver.delivered() == [("r-ann", "k1")]


def test_scripted_faults_meet_the_calls_they_name(start: Start) -> None:
    """Call 1 gets a 503 with Retry-After, call 2 a reset before handling; neither delivers."""
    receiver = start({1: {"kind": "503", "retry_after": 0}, 2: {"kind": "reset_before"}})
    first = receiver.post("k1", "ann@example.com")
    assert (first.status_code, first.headers["retry-after"]) == (503, "0")
    with pytest.raises(httpx.TransportError):
        receiver.post("k1", "ann@example.com")
    assert receiver.delivered() == []
    assert receiver.post("k1", "ann@example.com").status_code == 200


def test_a_held_answer_is_taken_and_waits_for_the_client_to_give_up(start: Start) -> None:
    """The receiver takes the batch and never answers; the client hangs up, and its repeat
    under the same key gets the answer without a second delivery."""
    receiver = start({1: {"kind": "handled_hold"}})
    receiver.post_and_give_up_once_held("k1", "ann@example.com")
    assert receiver.post("k1", "ann@example.com").status_code == 200
    assert receiver.delivered() == [("r-ann", "k1")]


def test_a_receiver_that_kills_itself_after_taking_a_call_comes_back(start: Start) -> None:
    """Killed right after committing a delivery, the receiver is started again on its port
    and answers the repeat from its record."""
    receiver = start({1: {"kind": "die_after", "down": 0.1}})
    with pytest.raises(httpx.TransportError):
        receiver.post("k1", "ann@example.com")
    receiver.process.wait_started(2)
    assert receiver.post("k1", "ann@example.com").status_code == 200
    assert receiver.delivered() == [("r-ann", "k1")]
