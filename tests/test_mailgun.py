"""The Mailgun provider against a local server that answers as Mailgun documents: multipart
messages with basic auth, one id per call, alphabetical unsubscribes with paging links, and
no idempotency keys (faults, crashes, keys and check: the contract suite)."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import parseaddr
from urllib.parse import quote

import httpx
import pytest
from structlog.testing import capture_logs

from surveysync.config import HttpSettings, MailgunRegion, MailgunSettings
from surveysync.providers import MailgunProvider
from surveysync.providers.base import ProviderUnavailable
from tests.conftest import Store, local
from tests.http_fake import FakeProvider, Recorded, Reply
from tests.provider_kit import HttpService, customers, request_ids, statuses, use_provider

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


CREDENTIALS = base64.b64encode(f"api:{API_KEY}".encode()).decode()  # the key as sent


class Mailgun(HttpService):
    """Mailgun's Messages, Domains and Unsubscribes endpoints for one sending domain."""

    kind = "mailgun"
    secrets = (API_KEY, CREDENTIALS)
    bad_address = BAD
    ready_words = f"domain {DOMAIN} is active"
    send_call = ("POST", f"/v3/{DOMAIN}/messages")
    list_call = ("GET", f"/v3/{DOMAIN}/unsubscribes")

    def __init__(self, fake: FakeProvider, page_size: int = 2) -> None:
        self.http = fake
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

    def configure(
        self, store: Store, *, secret: str | None = None, reachable: bool = True, attempts: int = 8
    ) -> None:
        use_mailgun(store, self.http, retry_attempts=str(attempts))
        settings = store.extra["provider.mailgun"]
        settings["base_url"] = f'"{self.base_url(reachable)}"'
        settings["api_key"] = f'"{secret or API_KEY}"'

    def suppress(self, address: str) -> None:
        self.unsubscribed[address] = "Tue, 10 Nov 2026 08:30:00 UTC"

    @staticmethod
    def authorized(request: Recorded) -> bool:
        return request.headers.get("authorization") == f"Basic {CREDENTIALS}"

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
        self.http.deliver(*fields["v:request_id"])
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


def test_check_names_a_domain_mailgun_does_not_know(
    store: Store, fake: FakeProvider, mailgun: Mailgun
) -> None:
    """`surveysync check` asks Mailgun about the sending domain: one it does not know is
    named, with Mailgun's words and the setting to look at (ready, refused and unreachable:
    the contract suite)."""
    use_mailgun(store, fake)
    store.extra["provider.mailgun"]["domain"] = '"mg.elsewhere.example"'
    wrong = store.cli("check")
    assert wrong.exit_code == 1
    assert "mailgun has no domain 'mg.elsewhere.example'" in wrong.output
    assert "Domain not found" in wrong.output and "provider.mailgun.region" in wrong.output


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


