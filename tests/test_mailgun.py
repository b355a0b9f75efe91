"""The Mailgun provider against a local server that answers as Mailgun documents: multipart
messages with basic auth, one id per call, alphabetical unsubscribes with paging links, and
no idempotency keys, so a lost answer leaves a request in doubt and never sends it twice."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from structlog.testing import capture_logs

from surveysync.config import HttpSettings, MailgunRegion, MailgunSettings
from surveysync.providers import MailgunProvider
from surveysync.providers.base import ProviderUnavailable
from tests.conftest import Store, local
from tests.http_fake import (
    RESET_AFTER,
    RESET_BEFORE,
    FakeProvider,
    Recorded,
    Reply,
    slow,
    status,
)
from tests.provider_kit import (
    FAULTS,
    closed_port,
    crash_after_send,
    customers,
    request_ids,
    statuses,
    use_provider,
)

API_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
DOMAIN = "mg.demo-cycles.example"
NIGHT = local(2026, 11, 20, 23)
BAD = "refuse.me@example.com"
MAILGUN_REFUSAL = "'to' parameter is not a valid address. please check documentation"
REAL_API = "https://api.mailgun.net"  # where Mailgun's own paging links point


pytestmark = pytest.mark.usefixtures("retries_without_waiting")


# --- a local Mailgun -------------------------------------------------------------------------


def multipart_fields(request: Recorded) -> dict[str, list[str]] | None:
    """The form fields of a multipart/form-data body; None for any other encoding."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return None
    head = f"Content-Type: {content_type}\r\n\r\n".encode("ascii")
    parsed = email.message_from_bytes(head + request.body, policy=email.policy.HTTP)
    fields: dict[str, list[str]] = {}
    for part in parsed.iter_parts():
        name = str(part.get_param("name", header="content-disposition"))
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        fields.setdefault(name, []).append(payload.decode("utf-8"))
    return fields


class Mailgun:
    """Mailgun's Messages, Domains and Unsubscribes endpoints for one sending domain."""

    def __init__(self, fake: FakeProvider, page_size: int = 2) -> None:
        self.fake = fake
        self.page_size = page_size  # Mailgun may return fewer than the limit asked for
        self.messages: list[dict[str, list[str]]] = []
        self.unsubscribed: dict[str, str] = {}  # address -> created_at
        self.list_requests: list[Recorded] = []
        fake.idempotent = False  # Mailgun has no idempotency keys
        fake.routes.update(
            {
                ("POST", f"/v3/{DOMAIN}/messages"): self.send,
                ("GET", f"/v3/{DOMAIN}/unsubscribes"): self.unsubscribes,
                ("GET", "/v3/domains/"): self.domain,
            }
        )

    @staticmethod
    def authorized(request: Recorded) -> bool:
        expected = base64.b64encode(f"api:{API_KEY}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def send(self, request: Recorded) -> Reply:
        if not self.authorized(request):
            return Reply(401, b"Forbidden")
        fields = multipart_fields(request)
        if fields is None:
            return Reply(400, {"message": "expected multipart/form-data"})
        required = ["from", "to"] + ([] if "template" in fields else ["subject"])
        missing = [name for name in required if not fields.get(name)]
        if missing:
            return Reply(400, {"message": f"'{missing[0]}' parameter is missing"})
        if not any(k in fields for k in ("text", "html", "template")):
            return Reply(400, {"message": "Need at least one of 'text', 'html' or 'template'"})
        if any(parseaddr(to)[1] == BAD for to in fields["to"]):
            return Reply(400, {"message": MAILGUN_REFUSAL})
        self.messages.append(fields)
        self.fake.deliver(*fields["v:request_id"])
        return Reply(200, {"id": f"<{uuid.uuid4().hex}@{DOMAIN}>", "message": "Queued. Thank you."})

    def domain(self, request: Recorded) -> Reply:
        if not self.authorized(request):
            return Reply(401, b"Forbidden")
        if request.path != f"/v3/domains/{DOMAIN}":
            return Reply(404, {"message": "Domain not found"})
        return Reply(200, {"domain": {"name": DOMAIN, "state": "active"}})

    def unsubscribes(self, request: Recorded) -> Reply:
        if not self.authorized(request):
            return Reply(401, b"Forbidden")
        self.list_requests.append(request)
        limit = int(request.query.get("limit", ["100"])[0])
        if limit > 1000:
            return Reply(400, {"message": "limit must be at most 1000"})
        pivot = request.query.get("address", [""])[0]
        after = request.query.get("page", [""])[0] == "next"
        ordered = sorted(a for a in self.unsubscribed if not after or a > pivot)
        items = ordered[: min(limit, self.page_size)]
        link = f"{REAL_API}/v3/{DOMAIN}/unsubscribes"
        return Reply(
            200,
            {
                "items": [
                    {"address": a, "tags": ["*"], "created_at": self.unsubscribed[a]} for a in items
                ],
                "paging": {
                    "first": f"{link}?limit={limit}",
                    "next": f"{link}?page=next&address={quote(items[-1] if items else pivot)}"
                    f"&limit={limit}",
                    "previous": f"{link}?page=previous&address={quote(pivot)}&limit={limit}",
                    "last": f"{link}?page=last&limit={limit}",
                },
            },
        )


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    service = FakeProvider({})
    service.start()
    yield service
    service.stop()


@pytest.fixture
def mailgun(fake: FakeProvider) -> Mailgun:
    return Mailgun(fake)


def use_mailgun(store: Store, fake: FakeProvider, **http: str) -> None:
    settings = {"api_key": f'"{API_KEY}"', "domain": f'"{DOMAIN}"', "base_url": f'"{fake.url}"'}
    use_provider(store, "mailgun", 50, settings, **http)


def unsettled(store: Store) -> list[dict[str, Any]]:
    shown = store.cli("status", "--json")
    listed: list[dict[str, Any]] = json.loads(shown.output)["unsettled"]
    return listed


# --- sending ---------------------------------------------------------------------------------


def test_each_request_is_one_multipart_call_with_its_own_parts_and_headers(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """Three surveys are three calls, each to one person, with that person's subject, text,
    HTML, signed unsubscribe link, and the request id as a Mailgun variable."""
    use_mailgun(store, fake)
    addresses = customers(store, 3)
    report = store.run(NIGHT)

    assert report.counts["sent"] == 3
    assert sorted(fake.delivered) == request_ids(store) and set(fake.delivered.values()) == {1}
    by_request = {m["v:request_id"][0]: m for m in mailgun.messages}
    rows = store.ledger_rows("SELECT id, provider_message_id FROM requests")
    for request_id, message_id in rows:
        sent = by_request[request_id]
        assert message_id.endswith(f"@{DOMAIN}>")
        assert len(sent["to"]) == 1 and "recipient-variables" not in sent
        assert parseaddr(sent["to"][0])[1] in addresses
        assert parseaddr(sent["from"][0])[1] == "feedback@demo-cycles.example"
        assert sent["subject"][0] and "https://survey.example/s/" in sent["text"][0]
        assert "https://survey.example/s/" in sent["html"][0]
        unsubscribe = sent["h:List-Unsubscribe"][0]
        assert unsubscribe.startswith("<https://survey.example/u/") and "mailto:" in unsubscribe
        assert unsubscribe.split(">")[0][1:] in sent["html"][0]  # this person's own link
        assert sent["h:List-Unsubscribe-Post"] == ["List-Unsubscribe=One-Click"]
        assert sent["h:X-Surveysync-Request"] == [request_id]
        assert sent["h:Message-ID"] == [f"<{request_id}@demo-cycles.example>"]
    links = {m["h:List-Unsubscribe"][0] for m in mailgun.messages}
    assert len(links) == 3


def test_429_and_5xx_are_retried_and_every_survey_goes_out_once(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """Mailgun's 429 (its Retry-After is the wait used), 500, 502 and 503 come before any
    work is done: they are retried and every survey goes out exactly once."""
    use_mailgun(store, fake)
    fake.plan = [None]  # the unsubscribe list, read before sending
    fake.plan += [status(429, Retry_After="7"), status(500), status(502), status(503)]
    customers(store, 2)
    with capture_logs() as logs:
        report = store.run(NIGHT)

    assert report.counts["sent"] == 2
    assert set(fake.delivered.values()) == {1} and len(fake.delivered) == 2
    assert next(e["wait_s"] for e in logs if e["event"] == "http.retry") == 7.0
    assert sum(r.path.endswith("/messages") for r in fake.requests) == 2 + 4


def test_a_lost_answer_leaves_the_request_in_doubt_and_it_is_never_sent_again(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """A reset after Mailgun queued the message, a read timeout, and a reset before Mailgun
    read it (which looks the same from here): those three surveys are in doubt, listed by
    `status`, and later runs do not send them again."""
    use_mailgun(store, fake)
    fake.plan = [None, RESET_AFTER, slow(0.6), RESET_BEFORE]  # None: the unsubscribe list
    customers(store, 4)
    report = store.run(NIGHT)

    assert (report.counts["sent"], report.counts["in_doubt"]) == (1, 3)
    assert statuses(store) == ["in_doubt", "in_doubt", "in_doubt", "sent"]
    assert sorted(fake.delivered.values()) == [1, 1, 1]  # the reset before: never arrived
    assert sorted(u["request_id"] for u in unsettled(store)) == request_ids(store, "in_doubt")

    store.run(NIGHT + timedelta(hours=1))
    assert sorted(fake.delivered.values()) == [1, 1, 1]
    assert statuses(store) == ["in_doubt", "in_doubt", "in_doubt", "sent"]


def test_no_survey_is_sent_twice_under_a_30_percent_fault_rate(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """429s, 5xx, resets before and after handling and read timeouts on 30 % of calls: no
    one gets two surveys; what Mailgun may have queued without saying so is in doubt."""
    use_mailgun(store, fake)
    fake.fault_rate = 0.3
    fake.random_faults = list(FAULTS)
    customers(store, 40)
    report = store.run(NIGHT)
    store.run(NIGHT + timedelta(hours=1))

    assert set(fake.delivered.values()) == {1}
    assert report.counts["sent"] + report.counts["in_doubt"] == 40
    assert set(request_ids(store)) <= set(fake.delivered)  # every one counted sent arrived
    assert set(fake.delivered) <= set(request_ids(store) + request_ids(store, "in_doubt"))
    assert fake.faults_injected["reset_after"] + fake.faults_injected["slow"] >= 1
    assert report.counts["in_doubt"] >= 1


def test_after_a_crash_between_send_and_settle_the_call_in_flight_is_in_doubt(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """Mailgun took the survey, then the power went: on restart (sync.in_doubt = "skip", the
    default) it is in doubt and listed by `status`; the others go out; nobody gets two."""
    use_mailgun(store, fake)
    customers(store, 3)
    crash_after_send(store, NIGHT, MailgunProvider)
    assert statuses(store) == ["sending"]

    store.run(NIGHT + timedelta(minutes=5))

    assert statuses(store) == ["in_doubt", "sent", "sent"]
    assert set(fake.delivered.values()) == {1} and len(fake.delivered) == 3
    [listed] = unsettled(store)
    assert listed["status"] == "in_doubt" and listed["email"].endswith("@example.com")


def test_with_the_resend_policy_the_call_in_flight_goes_out_again(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """sync.in_doubt = "resend" is the operator's choice of a possible duplicate over a
    lost survey: Mailgun has no idempotency key, so the survey in flight is sent again."""
    use_mailgun(store, fake)
    store.extra["sync"] = {"in_doubt": '"resend"'}
    customers(store, 3)
    crash_after_send(store, NIGHT, MailgunProvider)

    store.run(NIGHT + timedelta(minutes=5))

    assert statuses(store) == ["sent", "sent", "sent"]
    assert sorted(fake.delivered.values()) == [1, 1, 2]


def test_a_refused_address_is_rejected_in_mailguns_words_and_the_rest_go_out(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """Mailgun's 400 for one address settles that survey as rejected with Mailgun's message
    (the address masked); the other surveys of the run are sent."""
    use_mailgun(store, fake)
    customers(store, 3)
    store.customer("BAD", BAD)
    store.pos.sale("BAD", datetime(2026, 11, 20, 12, 0))
    report = store.run(NIGHT)

    assert (report.counts["sent"], report.counts["rejected"]) == (3, 1)
    [(error,)] = store.ledger_rows("SELECT error FROM requests WHERE status = 'rejected'")
    assert error.startswith("HTTP 400") and MAILGUN_REFUSAL in error and BAD not in error
    assert set(fake.delivered.values()) == {1} and len(fake.delivered) == 3


def test_a_200_without_a_message_id_sends_nothing_and_says_what_to_check(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """Mailgun answers a wrong endpoint with 200 and no id: the run fails in plain words and
    the survey waits as pending instead of being counted as sent."""
    use_mailgun(store, fake)
    fake.routes[("POST", f"/v3/{DOMAIN}/messages")] = lambda r: Reply(
        200, b"Mailgun Magnificent API"
    )
    customers(store, 1)
    result = store.cli("sync")

    assert result.exit_code != 0 and "without a message id" in result.output
    assert statuses(store) == ["pending"]


def test_a_template_stored_at_mailgun_gets_its_name_and_variables(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """With email.provider_templates set, the call names the template and carries its data
    (scores, links, names) as t:variables, not the locally rendered parts."""
    use_mailgun(store, fake)
    store.extra["email"] = {"provider_templates": '{ "*" = "nps-survey" }'}
    customers(store, 1)
    store.run(NIGHT)

    [sent] = mailgun.messages
    assert sent["template"] == ["nps-survey"] and sent["t:text"] == ["yes"]
    assert not {"subject", "text", "html"} & sent.keys()
    variables = json.loads(sent["t:variables"][0])
    assert variables["first_name"] == "Kim" and len(variables["scores"]) == 11
    assert variables["unsubscribe_url"] in sent["h:List-Unsubscribe"][0]


# --- suppressions ----------------------------------------------------------------------------


def test_an_unsubscribe_at_mailgun_skips_the_next_sale(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """Addresses on Mailgun's unsubscribe list (three pages here) are pulled before the run:
    the next sale of such a person is skipped as unsubscribed."""
    use_mailgun(store, fake)
    mailgun.unsubscribed = {
        "a.earlier@example.com": "Mon, 02 Nov 2026 10:00:00 UTC",
        "c1@example.com": "Tue, 10 Nov 2026 08:30:00 UTC",
        "z.other@example.com": "Wed, 11 Nov 2026 09:00:00 UTC",
    }
    customers(store, 3)
    report = store.run(NIGHT)

    assert report.counts["sent"] == 2 and report.skipped == {"unsubscribed": 1}
    assert len(mailgun.list_requests) == 3  # two pages of two items, then the empty page
    assert all(r.query["limit"] == ["1000"] for r in mailgun.list_requests)
    assert "c1@example.com" not in {parseaddr(m["to"][0])[1] for m in mailgun.messages}


def test_every_sync_reads_the_whole_list_and_keeps_only_what_is_new(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """Mailgun's list is alphabetical with no date filter, so no cursor can narrow it: the
    second sync reads it from the start again and adds only the one new address."""
    use_mailgun(store, fake)
    mailgun.unsubscribed = {"b@example.com": "Mon, 02 Nov 2026 10:00:00 UTC"}
    store.run(NIGHT)
    mailgun.unsubscribed["a@example.com"] = "Sat, 21 Nov 2026 10:00:00 UTC"
    mailgun.list_requests.clear()
    with capture_logs() as logs:
        store.run(NIGHT + timedelta(days=1))

    assert "address" not in mailgun.list_requests[0].query  # from the first page
    [synced] = [e for e in logs if e["event"] == "suppressions.synced"]
    assert (synced["fetched"], synced["added"]) == (2, 1)
    assert store.ledger_rows("SELECT count(*) FROM suppressions") == [(2,)]


# --- check -----------------------------------------------------------------------------------


def test_check_names_a_good_key_a_bad_key_a_wrong_domain_and_an_unreachable_host(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """`surveysync check` asks Mailgun about the sending domain and says in plain words
    whether the key works, is refused, the domain is unknown, or the host is unreachable."""
    use_mailgun(store, fake)
    ok = store.cli("check")
    assert f"provider  ok      mailgun: domain {DOMAIN} is active" in ok.output

    store.extra["provider.mailgun"]["api_key"] = '"key-the-wrong-one"'
    refused = store.cli("check")
    assert refused.exit_code == 1 and "refused the API key (HTTP 401" in refused.output

    store.extra["provider.mailgun"]["api_key"] = f'"{API_KEY}"'
    store.extra["provider.mailgun"]["domain"] = '"mg.elsewhere.example"'
    wrong = store.cli("check")
    assert wrong.exit_code == 1
    assert "mailgun has no domain 'mg.elsewhere.example'" in wrong.output
    assert "Domain not found" in wrong.output and "provider.mailgun.region" in wrong.output

    store.extra["provider.mailgun"]["base_url"] = f'"http://127.0.0.1:{closed_port()}"'
    unreachable = store.cli("check")
    assert unreachable.exit_code == 1 and "cannot reach 127.0.0.1" in unreachable.output


def test_a_domain_unknown_in_the_region_names_the_region() -> None:
    """A domain kept in Mailgun's EU region but configured for the US (or the reverse)
    answers 404: check names the region it asked and the setting to change."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "api.eu.mailgun.net"
        return httpx.Response(404, json={"message": "Domain not found"})

    settings = MailgunSettings(api_key=API_KEY, domain=DOMAIN, region=MailgunRegion.EU)
    client = httpx.Client(transport=httpx.MockTransport(handler))
    provider = MailgunProvider(settings, HttpSettings(), client=client)
    with pytest.raises(ProviderUnavailable, match="in Mailgun's EU region") as raised:
        provider.check()
    assert "https://api.eu.mailgun.net" in str(raised.value)
    assert "provider.mailgun.region" in str(raised.value)


# --- secrets ---------------------------------------------------------------------------------


def test_the_api_key_is_never_in_logs_the_ledger_or_status(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """Through faults, a rejection, an in-doubt call and a refused key, the API key (plain or
    as basic-auth credentials) is in no log event, no ledger error and no `status` output."""
    use_mailgun(store, fake)
    fake.plan = [status(500), RESET_BEFORE, RESET_AFTER]
    mailgun.unsubscribed = {"c0@example.com": "Mon, 02 Nov 2026 10:00:00 UTC"}
    customers(store, 3)
    store.customer("BAD", BAD)
    store.pos.sale("BAD", datetime(2026, 11, 20, 12, 0))
    with capture_logs() as logs:
        store.run(NIGHT)
        store.extra["provider.mailgun"]["api_key"] = f'"{API_KEY}-revoked"'
        store.customer("LATE")
        store.pos.sale("LATE", datetime(2026, 11, 21, 9, 0))
        failed = store.cli("sync")
    assert failed.exit_code != 0

    credentials = base64.b64encode(f"api:{API_KEY}".encode()).decode()
    logged = json.dumps(logs, default=str)
    errors = json.dumps(store.ledger_rows("SELECT error FROM requests"))
    shown = store.cli("status").output + store.cli("status", "--json").output
    for text in (logged, errors, shown, failed.output):
        assert API_KEY not in text and credentials not in text
    assert "@example.com" not in logged.replace("***@example.com", "")
