"""The SendGrid provider against a real HTTP server on 127.0.0.1 that answers as SendGrid's v3
API documents it: one Mail Send call per batch, a bad address found by sending alone,
unsubscribes synced, and the request bodies held against SendGrid's published schema
(faults, crashes, keys and check's plain answers: the contract suite, which drives
``SendGrid``)."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from structlog.testing import capture_logs

from surveysync.config import EmailSettings, HttpSettings, SendGridSettings, StoreSettings
from surveysync.providers import OutgoingEmail, SendGridProvider
from surveysync.providers.sendgrid import HTML_TAG, TEMPLATE_STAND_IN, TEXT_TAG, mail_body
from surveysync.render import Renderer
from surveysync.sync import SyncError
from tests.conftest import Store, local
from tests.http_fake import FakeProvider, Recorded, Reply, status
from tests.provider_kit import HttpService, request_ids, statuses, use_provider
from tests.provider_kit import customers as kit_customers

KEY = "SG.test-key.never-in-a-log-7f3a9c"
NIGHT = local(2026, 11, 20, 23)
NEXT_NIGHT = local(2026, 11, 21, 23)
# SendGrid takes no UTF-8 local part: "Does not contain a valid address."
BAD = "jürgen@example.com"
SPEC = Path(__file__).resolve().parent / "specs" / "sendgrid-v3-openapi.json"
SPEC_URI = "urn:sendgrid-v3-openapi"


pytestmark = pytest.mark.usefixtures("retries_without_waiting")


@functools.cache
def mail_send_schema() -> Draft4Validator:
    """The request body of ``POST /mail/send`` in SendGrid's OpenAPI (Swagger 2.0) file,
    its ``$ref``s resolved within that file."""
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    parameters = spec["paths"]["/mail/send"]["post"]["parameters"]
    index = next(i for i, p in enumerate(parameters) if p.get("in") == "body")
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, Resource(spec, DRAFT4))
    pointer = f"{SPEC_URI}#/paths/~1mail~1send/post/parameters/{index}/schema"
    return Draft4Validator(
        {"$ref": pointer}, registry=registry, format_checker=Draft4Validator.FORMAT_CHECKER
    )


def schema_errors(body: Any) -> list[str]:
    return sorted(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in mail_send_schema().iter_errors(body)
    )


class SendGrid(HttpService):
    """SendGrid's v3 API as documented: Bearer keys, Mail Send (202 and X-Message-Id, or a
    400 naming the field), scopes, and global unsubscribes with time range and paging."""

    kind = "sendgrid"
    secrets = (KEY,)
    bad_address = BAD
    ready_words = "the API key may send (mail.send)"
    send_call = ("POST", "/v3/mail/send")
    list_call = ("GET", "/v3/suppression/unsubscribes")

    def __init__(self) -> None:
        self.http = FakeProvider(
            {
                ("POST", "/v3/mail/send"): self.mail_send,
                ("GET", "/v3/scopes"): self.scopes_route,
                ("GET", "/v3/suppression/unsubscribes"): self.unsubscribes_route,
            }
        )
        self.http.idempotent = False  # SendGrid has no idempotency keys
        self.key = KEY
        self.echo_refused_key = False
        self.scopes = ["mail.send", "suppression.unsubscribes.read", "alerts.read"]
        self.unsubscribes: list[dict[str, Any]] = []
        self.mails: list[dict[str, Any]] = []  # every message, as its recipient gets it
        self.bodies: list[dict[str, Any]] = []  # every Mail Send body that was taken

    @property
    def url(self) -> str:
        return self.http.url

    def configure(
        self, store: Store, *, secret: str | None = None, reachable: bool = True, attempts: int = 8
    ) -> None:
        url = self.base_url(reachable)
        use_sendgrid(store, self, url, key=secret, retry_attempts=str(attempts))

    def suppress(self, address: str) -> None:
        self.unsubscribes.append({"created": 1_700_000_000, "email": address})

    def refused(self, request: Recorded) -> Reply | None:
        presented = request.headers.get("authorization", "")
        if presented == f"Bearer {self.key}":
            return None
        words = "The provided authorization grant is invalid, expired, or revoked"
        if self.echo_refused_key:
            words += f" ({presented})"
        return Reply(401, {"errors": [{"field": None, "message": words, "help": None}]})

    def mail_send(self, request: Recorded) -> Reply:
        if (refusal := self.refused(request)) is not None:
            return refusal
        body = request.json()
        errors = [{"message": e, "field": None} for e in schema_errors(body)]
        if not errors:
            errors = _send_errors(body)
        if errors:
            return Reply(400, {"errors": errors})
        self.bodies.append(body)
        for personalization in body["personalizations"]:
            self.mails.append(_as_received(body, personalization))
            self.http.deliver(personalization["custom_args"]["request_id"])
        return Reply(202, b"", {"X-Message-Id": uuid.uuid4().hex[:22]})

    def scopes_route(self, request: Recorded) -> Reply:
        return self.refused(request) or Reply(200, {"scopes": self.scopes})

    def unsubscribes_route(self, request: Recorded) -> Reply:
        if (refusal := self.refused(request)) is not None:
            return refusal
        query = {k: int(v[0]) for k, v in request.query.items()}
        chosen = sorted(
            (
                u
                for u in self.unsubscribes
                if query.get("start_time", 0) <= u["created"] <= query.get("end_time", 2**40)
            ),
            key=lambda u: u["created"],
        )
        offset, limit = query.get("offset", 0), query.get("limit", 500)
        return Reply(200, chosen[offset : offset + limit])

    def unsubscribe_queries(self) -> list[dict[str, list[str]]]:
        return [r.query for r in self.http.handled if r.path == "/v3/suppression/unsubscribes"]

    def mail_calls(self) -> list[Recorded]:
        return [r for r in self.http.requests if r.path == "/v3/mail/send"]


def _send_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What SendGrid refuses beyond the schema: a UTF-8 local part, substitutions over the
    limit, and content whose first part is not text/plain."""
    errors: list[dict[str, Any]] = []
    if body["content"][0]["type"] != "text/plain":
        errors.append({"message": "The text/plain content type must be first", "field": "content"})
    for i, personalization in enumerate(body["personalizations"]):
        if not personalization["to"][0]["email"].split("@")[0].isascii():
            errors.append(
                {
                    "message": "Does not contain a valid address.",
                    "field": f"personalizations.{i}.to.0.email",
                    "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html",
                }
            )
        substitutions = personalization.get("substitutions", {})
        if len(json.dumps(substitutions, ensure_ascii=False).encode()) > 10_000:
            errors.append(
                {
                    "message": "The total size of substitutions may not exceed 10000 bytes "
                    "per personalization object.",
                    "field": f"personalizations.{i}.substitutions",
                }
            )
    return errors


def _as_received(body: dict[str, Any], personalization: dict[str, Any]) -> dict[str, Any]:
    substitutions: dict[str, str] = personalization.get("substitutions", {})

    def filled(value: str) -> str:
        for tag, replacement in substitutions.items():
            value = value.replace(tag, replacement)
        return value

    parts = {c["type"]: filled(c["value"]) for c in body["content"]}
    return {
        "to": personalization["to"][0],
        "from": body["from"],
        "reply_to": body.get("reply_to"),
        "subject": filled(personalization.get("subject", body["subject"])),
        "text": parts.get("text/plain"),
        "html": parts.get("text/html"),
        "headers": personalization.get("headers", {}),
        "request_id": personalization["custom_args"]["request_id"],
        "substituted": bool(substitutions),
        "template_id": body.get("template_id"),
        "template_data": personalization.get("dynamic_template_data"),
    }


@pytest.fixture
def sendgrid() -> Iterator[SendGrid]:
    service = SendGrid()
    service.start()
    yield service
    service.stop()


def use_sendgrid(
    store: Store,
    sendgrid: SendGrid,
    base_url: str | None = None,
    *,
    key: str | None = None,
    **http: str,
) -> None:
    settings = {"api_key": f'"{key or KEY}"', "base_url": f'"{base_url or sendgrid.url}"'}
    use_provider(store, "sendgrid", 500, settings, **http)
    store.extra["email"] = {"reply_to": '"service@demo-cycles.example"'}


def customers(store: Store, count: int, day: int = 20, first: int = 0) -> list[str]:
    """The kit's customers, each with a first name of their own (Kim0, Kim1, …)."""
    return kit_customers(store, count, day, first, numbered_names=True)


def unsubscribe_url(mail: dict[str, Any]) -> str:
    found = re.match(r"<(https://[^>]+)>", mail["headers"]["List-Unsubscribe"])
    assert found, mail["headers"]
    return found.group(1)


# --- delivery ----------------------------------------------------------------------------------


def test_a_sync_delivers_each_survey_once_with_its_own_parts_and_headers(
    store: Store, sendgrid: SendGrid
) -> None:
    """Ten surveys go out in one Mail Send call; each recipient gets their own subject, text,
    HTML and List-Unsubscribe, and SendGrid carries our request id as a custom arg."""
    use_sendgrid(store, sendgrid)
    addresses = customers(store, 10)
    report = store.run(NIGHT)

    assert report.counts["sent"] == 10
    assert len(sendgrid.mail_calls()) == 1
    assert set(sendgrid.http.delivered) == set(request_ids(store))
    assert set(sendgrid.http.delivered.values()) == {1}
    assert sorted(m["to"]["email"] for m in sendgrid.mails) == sorted(addresses)
    for mail in sendgrid.mails:
        n = mail["to"]["email"][1:].split("@")[0]
        assert mail["to"]["name"] == f"Kim{n} Jansen"
        assert mail["from"] == {"email": "feedback@demo-cycles.example", "name": "Demo Cycles"}
        assert mail["reply_to"] == {"email": "service@demo-cycles.example"}
        assert mail["subject"].startswith(f"Kim{n}, how was your visit")
        assert f"Hi Kim{n}," in mail["text"] and f"Kim{n}" in mail["html"]
        link = unsubscribe_url(mail)
        assert link in mail["text"] and link in mail["html"]
        assert "https://survey.example/s/" in mail["text"]
        assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mail["headers"]["X-Surveysync-Request"] == mail["request_id"]
        assert mail["substituted"] and TEXT_TAG not in mail["text"] + mail["html"]
    links = [unsubscribe_url(m) for m in sendgrid.mails]
    assert len(set(links)) == 10
    [(call_id,)] = store.ledger_rows("SELECT DISTINCT provider_message_id FROM requests")
    assert call_id and len(call_id) == 22


def test_the_bodies_sent_follow_the_published_mail_send_schema(
    store: Store, sendgrid: SendGrid
) -> None:
    """A plain batch and a template batch, as taken off the wire, validate against the
    /mail/send request schema in SendGrid's OpenAPI file."""
    use_sendgrid(store, sendgrid)
    customers(store, 3)
    store.run(NIGHT)
    store.extra["email"]["provider_templates"] = '{ "*" = "d-0123456789abcdef" }'
    customers(store, 2, day=21, first=3)
    store.run(NEXT_NIGHT)

    bodies = [r.json() for r in sendgrid.mail_calls()]
    assert [("template_id" in b, len(b["personalizations"])) for b in bodies] == [
        (False, 3),
        (True, 2),
    ]
    for body in bodies:
        assert schema_errors(body) == []


def test_the_schema_check_catches_a_broken_body() -> None:
    """A body without a recipient, with an empty part and a number as a name is refused by
    the same validator, so a passing body means something."""
    message = _renderer().render(uuid.uuid4().hex, "kim@example.com", {"first_name": "Kim"}, NIGHT)
    body = mail_body([OutgoingEmail(message.request_id, message.request_id, message, "k")])
    assert schema_errors(body) == []
    del body["personalizations"][0]["to"]
    body["content"][1]["value"] = ""
    body["from"]["name"] = 7
    assert schema_errors(body) == [
        "content.1.value: '' should be non-empty",
        "from.name: 7 is not of type 'string'",
        "personalizations.0: 'to' is a required property",
    ]


def _renderer(**email: Any) -> Renderer:
    return Renderer(StoreSettings(name="Test Cycles"), EmailSettings(**email))


def _survey(renderer: Renderer, n: int, **changes: Any) -> OutgoingEmail:
    payload = {"first_name": f"Kim{n}", "language": "en"}
    message = renderer.render(uuid.uuid4().hex, f"c{n}@example.com", payload, NIGHT)
    message = dataclasses.replace(message, **changes)
    return OutgoingEmail(message.request_id, message.request_id, message, "batch-key")


def test_a_survey_too_large_for_substitutions_goes_alone_with_plain_content(
    sendgrid: SendGrid,
) -> None:
    """The docs cap a personalization's substitutions at 10,000 bytes: a survey with a
    larger HTML part goes in a call of its own, with its parts as plain content."""
    renderer = _renderer()
    big_html = "<p>" + "Thank you for riding with us. " * 400 + "</p>"
    batch = [_survey(renderer, 0), _survey(renderer, 1, html=big_html), _survey(renderer, 2)]
    provider = SendGridProvider(
        SendGridSettings(api_key=KEY, base_url=sendgrid.url), HttpSettings()
    )
    try:
        results = provider.send(batch)
    finally:
        provider.close()

    assert [r.status for r in results] == ["sent"] * 3
    calls = [r.json() for r in sendgrid.mail_calls()]
    assert [len(c["personalizations"]) for c in calls] == [2, 1]
    assert calls[0]["content"][1]["value"] == HTML_TAG
    assert calls[1]["content"][1]["value"] == big_html
    assert "substitutions" not in calls[1]["personalizations"][0]
    received = {m["request_id"]: m["html"] for m in sendgrid.mails}
    assert received == {e.request_id: e.message.html for e in batch}


# --- a refusal ----------------------------------------------------------------------------------


def test_an_address_sendgrid_refuses_is_rejected_with_its_words_and_the_rest_go_through(
    store: Store, sendgrid: SendGrid
) -> None:
    """SendGrid refuses a whole call for one bad address (400 naming the field); each survey
    is then sent alone, so only that one is rejected, with SendGrid's words."""
    use_sendgrid(store, sendgrid)
    customers(store, 3)
    store.customer("BAD", BAD)
    store.pos.sale("BAD", datetime(2026, 11, 20, 12, 0))
    report = store.run(NIGHT)

    assert (report.counts["sent"], report.counts["rejected"]) == (3, 1)
    assert set(sendgrid.http.delivered.values()) == {1} and len(sendgrid.http.delivered) == 3
    [(error,)] = store.ledger_rows("SELECT error FROM requests WHERE status = 'rejected'")
    assert error.startswith("HTTP 400") and "Does not contain a valid address." in error
    assert "personalizations.0.to.0.email" in error and BAD not in error


# --- suppressions -------------------------------------------------------------------------------


def test_an_unsubscribe_at_sendgrid_blocks_the_next_sale_and_later_syncs_ask_only_for_new_ones(
    store: Store, sendgrid: SendGrid
) -> None:
    """A person on SendGrid's global unsubscribe list is skipped as unsubscribed; the next
    run asks from the newest unsubscribe it already has (start_time), not from the start."""
    use_sendgrid(store, sendgrid)
    sendgrid.unsubscribes = [
        {"created": 1_700_000_100, "email": "C1@Example.com"},
        {"created": 1_700_000_000, "email": "someone@elsewhere.example"},
    ]
    customers(store, 3)
    store.run(NIGHT)
    assert store.decisions()["2"] == "unsubscribed"
    assert sorted(m["to"]["email"] for m in sendgrid.mails) == ["c0@example.com", "c2@example.com"]

    sendgrid.unsubscribes.append({"created": 1_700_000_500, "email": "c5@example.com"})
    customers(store, 2, day=21, first=4)
    store.run(NEXT_NIGHT)

    first, second = sendgrid.unsubscribe_queries()
    assert "start_time" not in first and second["start_time"] == ["1700000100"]
    assert store.decisions()["5"] == "unsubscribed"
    assert "c5@example.com" not in [m["to"]["email"] for m in sendgrid.mails]


def test_a_long_unsubscribe_list_is_read_page_by_page(store: Store, sendgrid: SendGrid) -> None:
    """More unsubscribes than one page holds are all read, with limit and offset."""
    use_sendgrid(store, sendgrid)
    sendgrid.unsubscribes = [
        {"created": 1_700_000_000 + n, "email": f"gone{n}@example.com"} for n in range(501)
    ]
    sendgrid.unsubscribes.append({"created": 1_700_000_999, "email": "c0@example.com"})
    customers(store, 1)
    store.run(NIGHT)

    assert [q["offset"] for q in sendgrid.unsubscribe_queries()] == [["0"], ["500"]]
    assert store.decisions()["1"] == "unsubscribed"
    [(count,)] = store.ledger_rows("SELECT COUNT(*) FROM suppressions")
    assert count == 502


# --- check and secrets --------------------------------------------------------------------------


def test_check_names_a_key_without_the_send_permission_and_a_wrong_region(
    store: Store, sendgrid: SendGrid
) -> None:
    """check reads the key's scopes: a key that may not send, and a base_url SendGrid does
    not know, are each said plainly (ready, refused and unreachable: the contract suite)."""
    sendgrid.scopes = ["alerts.read"]
    use_sendgrid(store, sendgrid)
    lacking = store.cli("check")
    assert lacking.exit_code == 1 and "lacks the mail.send permission" in lacking.output

    sendgrid.scopes = ["mail.send"]
    use_sendgrid(store, sendgrid, base_url=f"{sendgrid.url}/eu")
    wrong = store.cli("check")
    assert wrong.exit_code == 1 and "404" in wrong.output
    assert "wrong region, domain or base_url" in wrong.output


def test_the_api_key_never_reaches_logs_the_ledger_or_status(
    store: Store, sendgrid: SendGrid
) -> None:
    """When SendGrid echoes the refused key in its answer, the key is in no log event, no
    ledger error, no error message and no status output: it is masked as Bearer ***."""
    use_sendgrid(store, sendgrid)
    sendgrid.key = "SG.the-key-sendgrid-expects"
    sendgrid.echo_refused_key = True
    customers(store, 2)
    store.customer("BAD", BAD)
    store.pos.sale("BAD", datetime(2026, 11, 20, 12, 0))
    with capture_logs() as logs:
        with pytest.raises(SyncError) as refused:
            store.run(NIGHT)
        sendgrid.key = KEY
        sendgrid.http.fail(*sendgrid.send_call, status(500), status(429, Retry_After="1"))
        store.run(NEXT_NIGHT)

    assert "refused the API key" in str(refused.value) and KEY not in str(refused.value)
    assert "(Bearer ***" in str(refused.value)
    assert statuses(store) == ["rejected", "sent", "sent"]
    texts = [json.dumps(logs, default=str), store.cli("status").output]
    texts += [e for (e,) in store.ledger_rows("SELECT error FROM requests") if e]
    assert all(KEY not in text for text in texts)
    assert any("***" in text for text in texts)


# --- templates ----------------------------------------------------------------------------------


def test_with_provider_templates_the_template_id_and_data_are_sent_not_rendered_parts(
    store: Store, sendgrid: SendGrid
) -> None:
    """With email.provider_templates set, each call names one dynamic template and each
    person gets its data (names, score links, unsubscribe link); no rendered part is sent."""
    use_sendgrid(store, sendgrid)
    store.extra["email"]["provider_templates"] = '{ "*" = "d-everyone", nl = "d-nederlands" }'
    customers(store, 2)
    store.customer("NL", "nl@example.com", first="Sanne", language="nl")
    store.pos.sale("NL", datetime(2026, 11, 20, 12, 0))
    store.run(NIGHT)

    bodies = sorted((r.json() for r in sendgrid.mail_calls()), key=lambda b: b["template_id"])
    assert [(b["template_id"], len(b["personalizations"])) for b in bodies] == [
        ("d-everyone", 2),
        ("d-nederlands", 1),
    ]
    wire = json.dumps(bodies, ensure_ascii=False)
    assert "Hi Kim" not in wire and "How likely are you to recommend" not in wire
    assert TEXT_TAG not in wire and "substitutions" not in wire
    for body in bodies:
        assert body["content"] == [{"type": "text/plain", "value": TEMPLATE_STAND_IN}]
    for mail in sendgrid.mails:
        data = mail["template_data"]
        assert data["unsubscribe_url"] == unsubscribe_url(mail)
        assert [s["score"] for s in data["scores"]] == list(range(11))
        assert data["first_name"] in mail["to"]["name"]
    assert {m["template_data"]["locale"] for m in sendgrid.mails} == {"en", "nl"}
    assert set(sendgrid.http.delivered.values()) == {1} and len(sendgrid.http.delivered) == 3
