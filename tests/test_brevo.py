"""The Brevo provider against a local server that answers as Brevo documents: message
versions in one JSON call, an idempotency key in the body that lives 30 minutes and is
refused when repeated, blocked contacts by date range and offset, and the account check
(faults at random, crashes, keys and check's plain answers: the contract suite)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from surveysync.config import HttpSettings
from surveysync.providers import BrevoProvider
from surveysync.providers.brevo import KEY_LIFETIME_SECONDS, within_key_lifetime
from surveysync.sync import RunReport, SyncRequest, run_sync
from tests.conftest import Store, local
from tests.http_fake import HOLD, RESET_AFTER, RESET_BEFORE, FakeProvider, Recorded, Reply, status
from tests.provider_kit import (
    HttpService,
    crash_after_send,
    customers,
    request_ids,
    run,
    statuses,
    use_provider,
)

API_KEY = "xkeysib-4f0c9b1e2d7a6c5b8e3f1a0d9c7b6e5a-Nv3rInAL0g"
NIGHT = local(2026, 11, 20, 23)
TODAY = date(2026, 11, 21)  # Brevo's UTC date in the cursor test: no midnight can move it
BAD = "refuse.me@example.com"
BREVO_REFUSAL = f"email {BAD} is not valid in messageVersions"
KEY_TTL = 30 * 60  # the guide's lifetime; the fake keeps keys this long
TOP_LEVEL = {
    "sender", "to", "bcc", "cc", "htmlContent", "textContent", "subject", "replyTo",
    "attachment", "headers", "templateId", "params", "messageVersions", "tags",
    "scheduledAt", "batchId",
}  # fmt: skip
VERSION = {"to", "params", "bcc", "cc", "replyTo", "subject", "htmlContent", "textContent",
           "headers"}  # fmt: skip


pytestmark = pytest.mark.usefixtures("retries_without_waiting")


# --- a local Brevo ---------------------------------------------------------------------------


def error(status_code: int, code: str, message: str) -> Reply:
    return Reply(status_code, {"code": code, "message": message})


def body_errors(body: Any) -> list[str]:
    """What Brevo's reference says a send body must be, for the fields we use."""
    if not isinstance(body, dict):
        return ["body must be an object"]
    problems = [f"{k} is not a parameter" for k in body.keys() - TOP_LEVEL]
    templated = "templateId" in body
    if templated and not isinstance(body["templateId"], int):
        problems.append("templateId must be an integer")
    if not templated:
        problems += [
            f"{k} is missing" for k in ("sender", "subject", "htmlContent") if k not in body
        ]
    versions = body.get("messageVersions")
    if not isinstance(versions, list) or not 1 <= len(versions) <= 1000:
        return [*problems, "messageVersions must hold 1 to 1000 versions"]
    for n, version in enumerate(versions):
        problems += [
            f"messageVersions[{n}].{k} is not a parameter" for k in version.keys() - VERSION
        ]
        to = version.get("to")
        if not isinstance(to, list) or not 1 <= len(to) <= 99 or not all("email" in t for t in to):
            problems.append(f"messageVersions[{n}].to must hold 1 to 99 recipients")
    return problems


class Brevo(HttpService):
    """Brevo's transactional email, blocked contacts and account endpoints."""

    kind = "brevo"
    secrets = (API_KEY,)
    bad_address = BAD
    ready_words = "brevo answered for the account of Demo Cycles"
    retries_lost_answers = True  # the call's own idempotencyKey; not across a crash
    send_call = ("POST", "/v3/smtp/email")
    list_call = ("GET", "/v3/smtp/blockedContacts")

    def __init__(self, fake: FakeProvider, page_size: int = 2) -> None:
        self.http = fake
        self.page_size = page_size  # fewer than asked for is allowed
        self.today = datetime.now(UTC).date()  # Brevo refuses dates after its today
        self.now = 0.0  # the key clock, in seconds; tests move it
        self.keys: dict[str, float] = {}
        self.calls: list[dict[str, Any]] = []  # bodies taken (201)
        self.blocked: list[dict[str, Any]] = []
        self.list_requests: list[Recorded] = []
        fake.idempotent = False  # Brevo's key is in the body; handled below as documented
        fake.routes.update(
            {
                ("POST", "/v3/smtp/email"): self.send,
                ("GET", "/v3/smtp/blockedContacts"): self.blocked_contacts,
                ("GET", "/v3/account"): self.account,
            }
        )

    @staticmethod
    def refused_key(request: Recorded) -> Reply | None:
        if request.headers.get("api-key") != API_KEY:
            return error(401, "unauthorized", "Key not found")
        return None

    def send(self, request: Recorded) -> Reply:
        if (refused := self.refused_key(request)) is not None:
            return refused
        body = request.json()
        if problems := body_errors(body):
            return error(400, "missing_parameter", "; ".join(problems))
        key = body.get("headers", {}).get("idempotencyKey")
        if key is not None:
            try:
                uuid.UUID(key)
            except ValueError:
                return error(400, "invalid_parameter", "idempotencyKey must be a UUID")
            if key in self.keys and self.now - self.keys[key] < KEY_TTL:
                return error(400, "duplicate_parameter", "Duplicate idempotencyKey")
        recipients = [t["email"] for v in body["messageVersions"] for t in v["to"]]
        if BAD in recipients:
            return error(400, "invalid_parameter", BREVO_REFUSAL)
        if key is not None:
            self.keys[key] = self.now
        self.calls.append(body)
        self.http.deliver(*(v["headers"]["X-Mailin-custom"] for v in body["messageVersions"]))
        ids = [f"<{uuid.uuid4().hex}@smtp-relay.mailin.fr>" for _ in body["messageVersions"]]
        return Reply(201, {"messageIds": ids})

    def blocked_contacts(self, request: Recorded) -> Reply:
        if (refused := self.refused_key(request)) is not None:
            return refused
        self.list_requests.append(request)
        query = {k: v[0] for k, v in request.query.items()}
        limit, offset = int(query.get("limit", "50")), int(query.get("offset", "0"))
        if limit > 100:
            return error(400, "invalid_parameter", "limit must be at most 100")
        if ("startDate" in query) != ("endDate" in query):
            return error(400, "invalid_parameter", "startDate and endDate go together")
        if max(query.get("startDate", ""), query.get("endDate", "")) > self.today.isoformat():
            return error(400, "invalid_parameter", "dates cannot be in the future")
        chosen = [
            c
            for c in self.blocked
            if query.get("startDate", "") <= c["blockedAt"][:10] <= query.get("endDate", "9999")
        ]
        chosen.sort(key=lambda c: str(c["blockedAt"]), reverse=query.get("sort") != "asc")
        page = chosen[offset : offset + min(limit, self.page_size)]
        return Reply(200, {"count": len(chosen), "contacts": page})

    def account(self, request: Recorded) -> Reply:
        if (refused := self.refused_key(request)) is not None:
            return refused
        return Reply(200, {"email": "owner@demo-cycles.example", "companyName": "Demo Cycles"})

    def configure(
        self, store: Store, *, secret: str | None = None, reachable: bool = True, attempts: int = 8
    ) -> None:
        use_brevo(store, self.http, retry_attempts=str(attempts))
        settings = store.extra["provider.brevo"]
        settings["base_url"] = f'"{self.base_url(reachable)}"'
        settings["api_key"] = f'"{secret or API_KEY}"'

    def suppress(self, address: str) -> None:
        self.block(address, date(2026, 3, 1))

    def block(self, address: str, day: date, code: str = "unsubscribedViaEmail") -> None:
        self.blocked.append(
            {
                "email": address,
                "senderEmail": "feedback@demo-cycles.example",
                "reason": {"code": code, "message": "Contact unsubscribed via email"},
                "blockedAt": f"{day.isoformat()}T10:00:00Z",
            }
        )


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    service = FakeProvider({})
    service.start()
    yield service
    service.stop()


@pytest.fixture
def brevo(fake: FakeProvider) -> Brevo:
    return Brevo(fake)


def use_brevo(store: Store, fake: FakeProvider, **http: str) -> None:
    settings = {"api_key": f'"{API_KEY}"', "base_url": f'"{fake.url}"'}
    use_provider(store, "brevo", 4, settings, **http)


def sends(fake: FakeProvider) -> list[Recorded]:
    return [r for r in fake.requests if r.path == "/v3/smtp/email"]


def run_on(store: Store, today: date, now: datetime) -> RunReport:
    """A run whose Brevo adapter takes ``today`` as the UTC date (its suppression cursor)."""
    settings = store.settings()
    provider = BrevoProvider(
        settings.provider.brevo, settings.provider.http, batch_size=4, today=lambda: today
    )
    try:
        return run_sync(settings, SyncRequest(now=now), provider=provider)
    finally:
        provider.close()


# --- sending ---------------------------------------------------------------------------------


def test_a_batch_is_one_call_with_a_version_per_survey(
    store: Store, fake: FakeProvider, brevo: Brevo
) -> None:
    """Six surveys go out as two calls of at most four versions; each version holds one
    person with their own subject, both parts, unsubscribe headers and request id."""
    use_brevo(store, fake)
    addresses = customers(store, 6)
    report = store.run(NIGHT)

    assert report.counts["sent"] == 6
    assert sorted(fake.delivered) == request_ids(store, status=None)
    assert set(fake.delivered.values()) == {1}
    assert [len(call["messageVersions"]) for call in brevo.calls] == [4, 2]
    for call in brevo.calls:
        assert call["sender"] == {"email": "feedback@demo-cycles.example", "name": "Demo Cycles"}
        assert uuid.UUID(call["headers"]["idempotencyKey"])
        for version in call["messageVersions"]:
            [to] = version["to"]
            assert to["email"] in addresses and to["name"] == "Kim Jansen"
            assert version["subject"] and "https://survey.example/s/" in version["textContent"]
            headers = version["headers"]
            link = headers["List-Unsubscribe"].split(">")[0][1:]
            assert link.startswith("https://survey.example/u/") and link in version["htmlContent"]
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert headers["X-Surveysync-Request"] == headers["X-Mailin-custom"]
            assert "Message-ID" not in headers
    ids = [mid for (mid,) in store.ledger_rows("SELECT provider_message_id FROM requests")]
    assert all(i.endswith("@smtp-relay.mailin.fr>") for i in ids) and len(set(ids)) == 6


def test_faults_are_retried_under_the_same_key_and_every_survey_goes_out_once(
    store: Store, fake: FakeProvider, brevo: Brevo
) -> None:
    """429 (Retry-After honoured), 500, 502, 503, a reset before Brevo read the call, one
    after it sent it, and an answer held until the client gave up: the call is repeated
    under its key, Brevo refuses the repeats of what it took, and each survey arrives once
    and is settled as sent."""
    use_brevo(store, fake)
    fake.fail(*brevo.send_call, status(429, Retry_After="7"), status(500), status(502))
    fake.fail(*brevo.send_call, status(503), RESET_BEFORE, RESET_AFTER)
    fake.fail(*brevo.send_call, None, HOLD)  # the repeat (refused as taken); the second call
    customers(store, 8)
    with capture_logs() as logs:
        report = run(store, fake, NIGHT)

    assert report.counts["sent"] == 8 and statuses(store) == ["sent"] * 8
    assert set(fake.delivered.values()) == {1} and len(fake.delivered) == 8
    keys = [r.json()["headers"]["idempotencyKey"] for r in sends(fake)]
    assert len(keys) == 7 + 2 and len(set(keys)) == 2  # 7 attempts of one call, 2 of the other
    assert next(e["wait_s"] for e in logs if e["event"] == "http.retry") == 7.0
    assert sum(e["event"] == "brevo.repeat_refused" for e in logs) == 2


def test_retries_of_a_call_end_before_its_key_expires() -> None:
    """However long provider.http allows retrying, a Brevo call stops retrying in time for
    its last attempt to end within the shortest documented key lifetime."""
    patient = HttpSettings(retry_seconds=3600, timeout_seconds=600, connect_timeout_seconds=120)
    cut = within_key_lifetime(patient)
    assert cut.retry_seconds > 0
    assert (
        cut.retry_seconds + cut.timeout_seconds + cut.connect_timeout_seconds < KEY_LIFETIME_SECONDS
    )
    assert within_key_lifetime(HttpSettings(retry_seconds=60)).retry_seconds == 60


def test_with_the_resend_policy_brevo_refuses_a_repeat_inside_the_keys_lifetime(
    store: Store, fake: FakeProvider, brevo: Brevo
) -> None:
    """sync.in_doubt = "resend" repeats the call under its old key: ten minutes after the
    crash Brevo refuses the repeat as a duplicate, so the surveys are sent, once."""
    use_brevo(store, fake)
    store.extra["sync"] = {"in_doubt": '"resend"'}
    customers(store, 3)
    crash_after_send(store, NIGHT, BrevoProvider)
    first_key = sends(fake)[-1].json()["headers"]["idempotencyKey"]
    brevo.now += 10 * 60

    store.run(NIGHT + timedelta(minutes=10))

    assert sends(fake)[-1].json()["headers"]["idempotencyKey"] == first_key
    assert statuses(store) == ["sent"] * 3
    assert set(fake.delivered.values()) == {1} and len(fake.delivered) == 3


def test_with_the_resend_policy_a_repeat_after_the_key_expired_goes_out_again(
    store: Store, fake: FakeProvider, brevo: Brevo
) -> None:
    """After the key's 30 minutes Brevo takes the repeat as new: "resend" is the operator's
    choice of a possible duplicate over a lost survey, and here it makes one."""
    use_brevo(store, fake)
    store.extra["sync"] = {"in_doubt": '"resend"'}
    customers(store, 3)
    crash_after_send(store, NIGHT, BrevoProvider)
    brevo.now += 31 * 60

    store.run(NIGHT + timedelta(hours=8))

    assert statuses(store) == ["sent"] * 3
    assert set(fake.delivered.values()) == {2}


def test_a_refused_address_is_rejected_in_brevos_words_and_the_rest_go_out(
    store: Store, fake: FakeProvider, brevo: Brevo
) -> None:
    """Brevo refuses the whole call for one bad address: each survey is then sent alone, so
    only that one is rejected, with Brevo's message (the address masked)."""
    use_brevo(store, fake)
    customers(store, 3)
    store.customer("BAD", BAD)
    store.pos.sale("BAD", datetime(2026, 11, 20, 12, 0))
    report = store.run(NIGHT)

    assert (report.counts["sent"], report.counts["rejected"]) == (3, 1)
    [(error_text,)] = store.ledger_rows("SELECT error FROM requests WHERE status = 'rejected'")
    assert error_text.startswith("HTTP 400") and "invalid_parameter" in error_text
    assert "is not valid in messageVersions" in error_text and BAD not in error_text
    assert set(fake.delivered.values()) == {1} and len(fake.delivered) == 3


def test_a_template_stored_at_brevo_gets_its_id_and_each_persons_params(
    store: Store, fake: FakeProvider, brevo: Brevo
) -> None:
    """With email.provider_templates set, the call carries the template's number on top and
    each person's data as params, not the locally rendered subject and parts."""
    use_brevo(store, fake)
    store.extra["email"] = {"provider_templates": '{ "*" = "12" }'}
    customers(store, 2)
    store.run(NIGHT)

    [call] = brevo.calls
    assert call["templateId"] == 12
    assert not {"subject", "htmlContent", "textContent"} & call.keys()
    for version in call["messageVersions"]:
        assert not {"subject", "htmlContent", "textContent"} & version.keys()
        params = version["params"]
        assert params["first_name"] == "Kim" and len(params["scores"]) == 11
        assert params["unsubscribe_url"] in version["headers"]["List-Unsubscribe"]
    assert len(fake.delivered) == 2


def test_a_batch_with_and_without_a_template_is_one_call_for_each(
    store: Store, fake: FakeProvider, brevo: Brevo
) -> None:
    """A template only for Dutch: one call carries templateId and the Dutch customers'
    params, another the rendered English surveys, each under a key of its own."""
    use_brevo(store, fake)
    store.extra["email"] = {"provider_templates": '{ nl = "7" }'}
    customers(store, 2)
    for n in range(2):
        store.customer(f"NL{n}", language="nl")
        store.pos.sale(f"NL{n}", datetime(2026, 11, 20, 10, n))
    report = store.run(NIGHT)

    assert report.counts["sent"] == 4 and len(fake.delivered) == 4
    templated = [c for c in brevo.calls if "templateId" in c]
    rendered = [c for c in brevo.calls if "templateId" not in c]
    assert len(templated) == len(rendered) == 1
    assert templated[0]["templateId"] == 7
    assert {v["to"][0]["email"] for v in templated[0]["messageVersions"]} == {
        "nl0@example.com",
        "nl1@example.com",
    }
    assert all("htmlContent" in v for v in rendered[0]["messageVersions"])
    keys = {c["headers"]["idempotencyKey"] for c in brevo.calls}
    assert len(keys) == 2


def test_a_provider_lost_while_a_refused_batch_goes_out_one_by_one_keeps_what_went_out(
    store: Store, fake: FakeProvider, brevo: Brevo
) -> None:
    """A batch refused for one address is sent one by one; if Brevo then stays unavailable,
    the survey already sent alone is recorded as settled, not handed back as pending to be
    sent again by the next run."""
    use_brevo(store, fake, retry_attempts="2")
    customers(store, 3)
    store.customer("BAD", BAD)
    store.pos.sale("BAD", datetime(2026, 11, 20, 12, 0))
    # the batch (refused), the first alone (taken), then 503s
    fake.fail(*brevo.send_call, None, None, status(503), status(503))
    failed = store.cli("sync")

    assert failed.exit_code != 0 and "HTTP 503" in failed.output
    settled = statuses(store)
    assert settled.count("pending") == 3 and len(settled) == 4

    store.run(NIGHT + timedelta(hours=1))
    assert set(fake.delivered.values()) == {1} and len(fake.delivered) == 3
    assert sorted(statuses(store)) == ["rejected", "sent", "sent", "sent"]


# --- suppressions ----------------------------------------------------------------------------


def test_a_contact_blocked_at_brevo_is_skipped_and_the_next_sync_asks_only_what_is_new(
    store: Store, fake: FakeProvider, brevo: Brevo
) -> None:
    """The first sync pulls every blocked contact (two pages here) and the unsubscribed
    person's sale is skipped; the next sync asks from the day of the last one onwards."""
    use_brevo(store, fake)
    brevo.today = TODAY
    brevo.block("a.earlier@example.com", date(2026, 1, 5), "hardBounce")
    brevo.block("c1@example.com", date(2026, 3, 1))
    brevo.block("z.other@example.com", date(2026, 6, 1), "contactFlaggedAsSpam")
    customers(store, 3)
    report = run_on(store, TODAY, NIGHT)

    assert report.counts["sent"] == 2 and report.skipped == {"unsubscribed": 1}
    first = [r.query for r in brevo.list_requests]
    assert [q["offset"] for q in first] == [["0"], ["2"]]
    assert all("startDate" not in q and q["sort"] == ["asc"] for q in first)

    brevo.block("new@example.com", TODAY)
    brevo.list_requests.clear()
    store.customer("NEW")
    store.pos.sale("NEW", datetime(2026, 11, 21, 9, 0))
    with capture_logs() as logs:
        later = run_on(store, TODAY, NIGHT + timedelta(days=1))

    [asked] = [r.query for r in brevo.list_requests]
    assert asked["startDate"] == asked["endDate"] == [TODAY.isoformat()]
    [synced] = [e for e in logs if e["event"] == "suppressions.synced"]
    assert (synced["fetched"], synced["added"]) == (1, 1)
    assert later.skipped.get("unsubscribed") == 1 and later.counts["sent"] == 0


# --- check -----------------------------------------------------------------------------------


def test_check_gives_brevos_words_for_a_refused_key_and_names_a_wrong_base_url(
    store: Store, fake: FakeProvider, brevo: Brevo
) -> None:
    """`surveysync check` reads Brevo's account: a refused key comes with Brevo's own words,
    and a base URL without the API is named (ready and unreachable: the contract suite)."""
    use_brevo(store, fake)
    store.extra["provider.brevo"]["api_key"] = '"xkeysib-the-wrong-one"'
    refused = store.cli("check")
    assert refused.exit_code == 1 and "Key not found" in refused.output

    store.extra["provider.brevo"] = {"api_key": f'"{API_KEY}"', "base_url": f'"{fake.url}/v2"'}
    wrong = store.cli("check")
    assert wrong.exit_code == 1 and "404" in wrong.output and "base_url" in wrong.output
