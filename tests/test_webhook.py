"""The webhook provider against a real HTTP server on 127.0.0.1: signed, batched, retried
as the endpoint asks (faults at random, crashes, secrets and check: the contract suite)."""

from __future__ import annotations

import hmac
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from structlog.testing import capture_logs

from surveysync.providers import WebhookProvider
from surveysync.providers.http import retry_after
from surveysync.providers.webhook import signature
from surveysync.sync import SyncError, SyncRequest, run_sync
from tests.conftest import Store, local
from tests.http_fake import RESET_AFTER, FakeProvider, Recorded, Reply, status
from tests.provider_kit import FakeTime, HttpService, customers, request_ids, statuses, use_provider

SECRET = "whsec-never-in-a-log"
NIGHT = local(2026, 11, 20, 23)
BAD = "refuse.me@example.com"


pytestmark = pytest.mark.usefixtures("retries_without_waiting")


def receive(fake: FakeProvider) -> Callable[[Recorded], Reply]:
    """The store's own endpoint: checks the signature, refuses one address, counts the rest."""

    def route(request: Recorded) -> Reply:
        stamp = request.headers["x-surveysync-timestamp"]
        expected = signature(SECRET, stamp, request.body)
        if not hmac.compare_digest(expected, request.headers["x-surveysync-signature"]):
            return Reply(401, {"message": "bad signature"})
        body = request.json()
        if body["type"] == "ping":
            return Reply(200, {"ok": True})
        results = []
        for message in body["messages"]:
            if message["to"] == BAD:
                results.append({"request_id": message["request_id"], "status": "rejected",
                                "error": f"{BAD} is on our do-not-mail list"})  # fmt: skip
            else:
                fake.deliver(message["request_id"])
                results.append({"request_id": message["request_id"], "status": "sent"})
        return Reply(200, {"results": results})

    return route


class Webhook(HttpService):
    """The store's endpoint, for the contract suite: it drops repeats by Idempotency-Key."""

    kind = "webhook"
    secrets = (SECRET,)
    bad_address = BAD
    ready_words = "accepted a signed ping"
    retries_lost_answers = True
    repeats_after_crash = True
    send_call = ("POST", "/hooks/surveys")

    def __init__(self) -> None:
        self.http = FakeProvider({})
        self.http.routes[self.send_call] = receive(self.http)

    def configure(
        self, store: Store, *, secret: str | None = None, reachable: bool = True, attempts: int = 8
    ) -> None:
        use_webhook(store, self.http, retry_attempts=str(attempts))
        settings = store.extra["provider.webhook"]
        settings["url"] = f'"{self.base_url(reachable)}/hooks/surveys"'
        settings["secret"] = f'"{secret or SECRET}"'


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    service = Webhook()
    service.start()
    yield service.http
    service.stop()


def use_webhook(store: Store, fake: FakeProvider, **http: str) -> None:
    settings = {"url": f'"{fake.url}/hooks/surveys"', "secret": f'"{SECRET}"'}
    use_provider(store, "webhook", 4, settings, **http)


def test_each_batch_is_one_signed_post_with_every_message(store: Store, fake: FakeProvider) -> None:
    """Ten requests go out as three signed POSTs of at most four, each with an
    Idempotency-Key, the rendered parts and the unsubscribe headers."""
    use_webhook(store, fake)
    customers(store, 10)
    report = store.run(NIGHT)

    assert report.counts["sent"] == 10
    assert sorted(fake.delivered) == request_ids(store, status=None)
    assert len(fake.handled) == 3
    for request in fake.handled:
        assert len(request.headers["idempotency-key"]) == 40
        for message in request.json()["messages"]:
            assert message["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert message["subject"] and "https://survey.example/s/" in message["text"]
    assert statuses(store) == ["sent"] * 10


def test_retry_after_is_honoured_in_seconds_and_as_a_date(store: Store, fake: FakeProvider) -> None:
    """The wait asked for by 429 (seconds) and 503 (an HTTP date) is the wait used."""
    use_webhook(store, fake)
    fake.fail(
        "POST",
        "/hooks/surveys",
        status(429, Retry_After="7"),
        status(503, Retry_After="Fri, 20 Nov 2026 22:00:30 GMT"),
    )
    customers(store, 1)
    with capture_logs() as logs:
        store.run(NIGHT)
    waits = [e["wait_s"] for e in logs if e["event"] == "http.retry"]
    assert waits[0] == 7.0
    assert waits[1] is not None and waits[1] >= 0
    assert len(fake.delivered) == 1


def test_a_wait_longer_than_the_retry_time_gives_up_and_keeps_the_requests(
    store: Store, fake: FakeProvider
) -> None:
    """A Retry-After of an hour with 300 s to spend: the run fails at once, the requests
    wait as pending, and the next run sends them."""
    use_webhook(store, fake)
    fake.fail("POST", "/hooks/surveys", status(429, Retry_After="3600"))
    customers(store, 2)
    with pytest.raises(SyncError, match="HTTP 429"):
        store.run(NIGHT)
    assert statuses(store) == ["pending", "pending"]
    store.run(NIGHT + timedelta(hours=1))
    assert statuses(store) == ["sent", "sent"] and len(fake.delivered) == 2


def test_a_refused_address_is_rejected_and_the_rest_go_through(
    store: Store, fake: FakeProvider
) -> None:
    """The endpoint's 'rejected' for one message settles it with its words, masked."""
    use_webhook(store, fake)
    customers(store, 3)
    store.customer("BAD", BAD)
    store.pos.sale("BAD", datetime(2026, 11, 20, 12, 0))
    report = store.run(NIGHT)

    assert (report.counts["sent"], report.counts["rejected"]) == (3, 1)
    [(error,)] = store.ledger_rows("SELECT error FROM requests WHERE status = 'rejected'")
    assert "do-not-mail" in error and BAD not in error


def test_a_batch_refused_whole_is_split_to_find_the_one_at_fault(
    store: Store, fake: FakeProvider
) -> None:
    """A 422 for a batch sends its messages one by one: only the bad one is rejected."""
    use_webhook(store, fake)
    handled = receive(fake)

    def strict(request: Recorded) -> Reply:
        if any(m["to"] == BAD for m in request.json().get("messages", [])):
            return Reply(422, {"message": "invalid recipient in batch"})
        return handled(request)

    fake.routes[("POST", "/hooks/surveys")] = strict
    customers(store, 3)
    store.customer("BAD", BAD)
    store.pos.sale("BAD", datetime(2026, 11, 20, 12, 0))
    report = store.run(NIGHT)
    assert (report.counts["sent"], report.counts["rejected"]) == (3, 1)
    assert set(fake.delivered.values()) == {1}


def test_a_message_lost_after_going_out_alone_is_repeated_alone_under_its_own_key(
    store: Store, fake: FakeProvider
) -> None:
    """A batch refused (422) for one address is sent message by message; one of them is
    taken but its answer is lost, and the endpoint answers 503 until the retries run out.
    That message stays `sending` under its own key (back to pending, it would go out again
    in a new batch under a new key); the untried ones wait as pending; the next night each
    survey arrives once and only the bad address is rejected."""
    use_webhook(store, fake, retry_attempts="3")
    handled = receive(fake)

    def strict(request: Recorded) -> Reply:
        messages = request.json()["messages"]
        if len(messages) > 1 and any(m["to"] == BAD for m in messages):
            return Reply(422, {"message": "invalid recipient in batch"})
        return handled(request)

    fake.routes[("POST", "/hooks/surveys")] = strict
    customers(store, 3)
    store.customer("BAD", BAD)
    store.pos.sale("BAD", datetime(2026, 11, 20, 12, 0))

    def alone(request: Recorded) -> bool:
        messages = request.json()["messages"]
        return len(messages) == 1 and messages[0]["to"] != BAD

    fake.fail("POST", "/hooks/surveys", RESET_AFTER, status(503), status(503), when=alone)
    with pytest.raises(SyncError, match="HTTP 503"):
        store.run(NIGHT)

    [lost] = fake.delivered
    rows = dict(store.ledger_rows("SELECT id, status || ' ' || batch_key FROM requests"))
    assert rows.pop(lost) == f"sending {lost}"
    assert {row.split()[0] for row in rows.values()} <= {"pending", "rejected"}
    report = store.run(NIGHT + timedelta(days=1))

    assert statuses(store).count("sent") == 3 and statuses(store).count("rejected") == 1
    assert set(fake.delivered.values()) == {1} and len(fake.delivered) == 3
    assert report.counts["sent"] == 3


def test_a_refused_secret_fails_the_run_in_plain_words_and_loses_nothing(
    store: Store, fake: FakeProvider
) -> None:
    """A 401 is about the key, not the customers: nobody is rejected, all wait as pending."""
    use_webhook(store, fake)
    store.extra["provider.webhook"]["secret"] = '"the-wrong-secret"'
    customers(store, 2)
    with pytest.raises(SyncError, match="refused the API key"):
        store.run(NIGHT)
    assert statuses(store) == ["pending", "pending"]


def test_check_names_a_wrong_url(store: Store, fake: FakeProvider) -> None:
    """check's signed ping to a URL the server does not know is reported as such (ready,
    refused and unreachable: the contract suite)."""
    use_webhook(store, fake)
    store.extra["provider.webhook"]["url"] = f'"{fake.url}/wrong/path"'
    wrong = store.cli("check")
    assert wrong.exit_code == 1
    assert "404" in wrong.output and "wrong region, domain or base_url" in wrong.output


def test_calls_never_exceed_max_per_second(store: Store, fake: FakeProvider) -> None:
    """At 2 calls a second, five batches take at least two seconds of (fake) time, and no
    two calls come closer than half a second."""
    use_webhook(store, fake, max_per_second="2")
    customers(store, 20)
    settings = store.settings()
    time = FakeTime()
    started: list[float] = []
    provider = WebhookProvider(
        settings.provider.webhook, settings.provider.http, batch_size=4,
        clock=time.clock, sleep=time.sleep,
    )  # fmt: skip
    provider.caller.client.event_hooks["request"].append(lambda _: started.append(time.now))
    try:
        run_sync(settings, SyncRequest(now=NIGHT), provider=provider)
    finally:
        provider.close()
    assert len(started) == 5 and len(fake.delivered) == 20
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert min(gaps) >= 0.5 - 1e-9 and started[-1] - started[0] >= 2.0 - 1e-9


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "12"}, 12.0),
        ({"Retry-After": "Fri, 20 Nov 2026 22:01:00 GMT"}, 60.0),
        ({"Retry-After": "soon"}, None),
        ({"X-RateLimit-Reset": "30"}, 30.0),
        (
            {
                "RateLimit-Reset": str(
                    int(datetime(2026, 11, 20, 22, 0, 45, tzinfo=UTC).timestamp())
                )
            },
            45.0,
        ),
        ({}, None),
    ],
)
def test_the_wait_a_provider_asks_for_is_read_from_its_headers(
    headers: dict[str, str], expected: float | None
) -> None:
    """Retry-After in seconds or as a date, and rate-limit reset headers in seconds or as a
    Unix time, all become the number of seconds to wait."""
    response = httpx.Response(429, headers=headers)
    assert retry_after(response, datetime(2026, 11, 20, 22, 0, tzinfo=UTC)) == expected
