"""The Postmark provider against a real HTTP server on 127.0.0.1 that answers as Postmark's API
documents it: batches with a result per message, whose ErrorCode is always read,
suppressions synced, templates sent by id or alias (faults, crashes, keys and check's plain
answers: the contract suite, which drives ``Postmark``)."""

from __future__ import annotations

import email.utils
import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from surveysync.sync import SyncError
from tests.conftest import Store, local
from tests.http_fake import FakeProvider, Recorded, Reply, status
from tests.provider_kit import HttpService, request_ids, statuses, use_provider
from tests.provider_kit import customers as kit_customers

TOKEN = "pm-server-token-never-in-a-log-5d2e"
STREAM = "surveys"
NIGHT = local(2026, 11, 20, 23)
NEXT_NIGHT = local(2026, 11, 21, 23)
INACTIVE = "bounced@example.com"
INVALID = "jürgen@example.com"  # Postmark answers ErrorCode 300 for a UTF-8 local part


pytestmark = pytest.mark.usefixtures("retries_without_waiting")


class Postmark(HttpService):
    """Postmark's API as documented: the server token header; /email/batch and
    /email/batchWithTemplates answering 200 with one result per message, in order; /server;
    and the suppression dump of a message stream, filtered by day."""

    kind = "postmark"
    secrets = (TOKEN,)
    bad_address = INACTIVE
    ready_words = "server 'Demo Cycles surveys' accepted the token"
    send_call = ("POST", "/email/batch")
    list_call = ("GET", f"/message-streams/{STREAM}/suppressions/dump")

    def __init__(self) -> None:
        self.http = FakeProvider(
            {
                ("POST", "/email/batchWithTemplates"): self.batch_with_templates,
                ("POST", "/email/batch"): self.batch,
                ("GET", "/server"): self.server,
                ("GET", "/message-streams/"): self.dump,
            }
        )
        self.http.idempotent = False  # Postmark has no idempotency keys
        self.token = TOKEN
        self.echo_refused_token = False
        self.inactive = {INACTIVE}
        self.codes: dict[str, tuple[int, str]] = {}  # address -> ErrorCode and Message
        self.every_message: tuple[int, str] | None = None  # e.g. the account may not send
        self.suppressions: list[dict[str, str]] = []
        self.messages: list[dict[str, Any]] = []  # every message Postmark took

    @property
    def url(self) -> str:
        return self.http.url

    def configure(
        self, store: Store, *, secret: str | None = None, reachable: bool = True, attempts: int = 8
    ) -> None:
        url = self.base_url(reachable)
        use_postmark(store, self, url, token=secret, retry_attempts=str(attempts))

    def suppress(self, address: str) -> None:
        self.suppressions.append(
            {
                "EmailAddress": address,
                "SuppressionReason": "ManualSuppression",
                "Origin": "Recipient",
                "CreatedAt": "2026-11-18T08:58:33-05:00",
            }
        )

    def refused(self, request: Recorded) -> Reply | None:
        presented = request.headers.get("x-postmark-server-token", "")
        if presented == self.token:
            return None
        words = "The Server Token you provided in the X-Postmark-Server-Token header was invalid"
        if self.echo_refused_token:
            words += f": {presented!r}"
        return Reply(401, {"ErrorCode": 10, "Message": words})

    def batch(self, request: Recorded) -> Reply:
        if (refusal := self.refused(request)) is not None:
            return refusal
        messages = request.json()
        if not isinstance(messages, list):
            return Reply(422, {"ErrorCode": 403, "Message": "Incompatible JSON"})
        return self.answer(messages, templated=False)

    def batch_with_templates(self, request: Recorded) -> Reply:
        if (refusal := self.refused(request)) is not None:
            return refusal
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("Messages"), list):
            return Reply(422, {"ErrorCode": 403, "Message": "Incompatible JSON"})
        return self.answer(body["Messages"], templated=True)

    def answer(self, messages: list[dict[str, Any]], templated: bool) -> Reply:
        if len(messages) > 500:
            return Reply(422, {"ErrorCode": 410, "Message": "Too many batch messages"})
        return Reply(200, [self.one(m, templated) for m in messages])

    def one(self, message: dict[str, Any], templated: bool) -> dict[str, Any]:
        address = email.utils.parseaddr(message["To"])[1]
        has_template = "TemplateId" in message or "TemplateAlias" in message
        if has_template != templated or ("Subject" in message) == templated:
            return {"ErrorCode": 300, "Message": "Invalid email request", "To": message["To"]}
        if not address.split("@")[0].isascii():
            return {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{address}'."}
        if address in self.inactive:
            return {
                "ErrorCode": 406,
                "Message": "You tried to send to recipient(s) that have been marked as "
                f"inactive. Found inactive addresses: {address}. Inactive recipients are ones "
                "that have generated a hard bounce, a spam complaint, or a manual suppression.",
            }
        code = self.every_message or self.codes.get(address)
        if code is not None:
            return {"ErrorCode": code[0], "Message": code[1]}
        self.messages.append(message)
        self.http.deliver(message["Metadata"]["request_id"])
        return {
            "ErrorCode": 0,
            "Message": "OK",
            "MessageID": str(uuid.uuid4()),
            "SubmittedAt": "2026-11-20T17:00:00.0000000-05:00",
            "To": message["To"],
        }

    def server(self, request: Recorded) -> Reply:
        return self.refused(request) or Reply(
            200, {"ID": 4711, "Name": "Demo Cycles surveys", "Color": "Blue"}
        )

    def dump(self, request: Recorded) -> Reply:
        if (refusal := self.refused(request)) is not None:
            return refusal
        if request.path != f"/message-streams/{STREAM}/suppressions/dump":
            return Reply(404, {"ErrorCode": 1226, "Message": "The message stream was not found."})
        since = request.query.get("fromdate", [""])[0]
        chosen = [s for s in self.suppressions if s["CreatedAt"][:10] >= since]
        return Reply(200, {"Suppressions": chosen})

    def dump_queries(self) -> list[dict[str, list[str]]]:
        return [r.query for r in self.http.handled if r.path.endswith("/suppressions/dump")]

    def batch_calls(self) -> list[Recorded]:
        return [r for r in self.http.requests if r.path.startswith("/email/")]


@pytest.fixture
def postmark() -> Iterator[Postmark]:
    service = Postmark()
    service.start()
    yield service
    service.stop()


def use_postmark(
    store: Store,
    postmark: Postmark,
    base_url: str | None = None,
    *,
    token: str | None = None,
    **http: str,
) -> None:
    settings = {
        "api_key": f'"{token or TOKEN}"',
        "base_url": f'"{base_url or postmark.url}"',
        "message_stream": f'"{STREAM}"',
    }
    use_provider(store, "postmark", 500, settings, **http)
    store.extra["email"] = {"reply_to": '"service@demo-cycles.example"'}


def customers(store: Store, count: int, day: int = 20, first: int = 0) -> list[str]:
    """The kit's customers, each with a first name of their own (Kim0, Kim1, …)."""
    return kit_customers(store, count, day, first, numbered_names=True)


def customer(store: Store, customer_id: str, address: str, hour: int = 12) -> None:
    store.customer(customer_id, address)
    store.pos.sale(customer_id, datetime(2026, 11, 20, hour, 0))


def delivered_once(postmark: Postmark, count: int) -> bool:
    delivered = postmark.http.delivered
    return set(delivered.values()) == {1} and len(delivered) == count


def headers(message: dict[str, Any]) -> dict[str, str]:
    return {h["Name"]: h["Value"] for h in message["Headers"]}


def unsubscribe_url(message: dict[str, Any]) -> str:
    found = re.match(r"<(https://[^>]+)>", headers(message)["List-Unsubscribe"])
    assert found, message["Headers"]
    return found.group(1)


# --- delivery ----------------------------------------------------------------------------------


def test_a_sync_delivers_each_survey_once_with_the_documented_fields(
    store: Store, postmark: Postmark
) -> None:
    """Ten surveys go out in one /email/batch call on the configured stream, each with its
    own addresses, subject, both parts, unsubscribe headers and our request id as metadata."""
    use_postmark(store, postmark)
    addresses = customers(store, 10)
    report = store.run(NIGHT)

    assert report.counts["sent"] == 10
    assert [r.path for r in postmark.batch_calls()] == ["/email/batch"]
    assert postmark.batch_calls()[0].headers["accept"] == "application/json"
    assert set(postmark.http.delivered) == set(request_ids(store)) and delivered_once(postmark, 10)
    assert sorted(email.utils.parseaddr(m["To"])[1] for m in postmark.messages) == addresses
    for message in postmark.messages:
        n = email.utils.parseaddr(message["To"])[1][1:].split("@")[0]
        assert message["To"] == f"Kim{n} Jansen <c{n}@example.com>"
        assert message["From"] == "Demo Cycles <feedback@demo-cycles.example>"
        assert message["ReplyTo"] == "service@demo-cycles.example"
        assert message["MessageStream"] == STREAM
        assert message["Subject"].startswith(f"Kim{n}, how was your visit")
        assert f"Hi Kim{n}," in message["TextBody"] and f"Kim{n}" in message["HtmlBody"]
        link = unsubscribe_url(message)
        assert link in message["TextBody"] and link in message["HtmlBody"]
        assert headers(message)["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert headers(message)["X-Surveysync-Request"] == message["Metadata"]["request_id"]
    ids = store.ledger_rows("SELECT provider_message_id FROM requests")
    assert len({i for (i,) in ids if i and len(i) == 36}) == 10


def test_every_result_s_error_code_is_read(store: Store, postmark: Postmark) -> None:
    """Postmark answers 200 for the batch and a code per message: an inactive recipient
    (406) and an invalid request (300) are rejected with Postmark's words (addresses
    masked), a rate-limited one (429) is deferred and goes once with the next run."""
    use_postmark(store, postmark)
    customers(store, 3)
    customer(store, "GONE", INACTIVE)
    customer(store, "BAD", INVALID, hour=13)
    postmark.codes["c2@example.com"] = (429, "Rate limit exceeded")
    report = store.run(NIGHT)

    assert (report.counts["sent"], report.counts["rejected"], report.counts["pending"]) == (
        2,
        2,
        1,
    )
    errors = dict(store.ledger_rows("SELECT email_masked, error FROM requests"))
    assert errors["b***@example.com"].startswith("ErrorCode 406: You tried to send to recipient")
    assert INACTIVE not in errors["b***@example.com"]
    assert errors["j***@example.com"].startswith("ErrorCode 300: Invalid 'To' address")
    assert "jürgen" not in errors["j***@example.com"]
    assert statuses(store) == ["pending", "rejected", "rejected", "sent", "sent"]
    # Only the inactive recipient is refused as an address: suppressed, never tried again.
    listed = store.ledger_rows("SELECT display, source, reason FROM suppressions")
    assert listed == [("b***@example.com", "provider", "rejected")]

    del postmark.codes["c2@example.com"]
    store.run(NEXT_NIGHT)
    assert statuses(store) == ["rejected", "rejected", "sent", "sent", "sent"]
    assert delivered_once(postmark, 3)


def test_a_server_that_may_not_send_stops_the_run_and_loses_nothing(
    store: Store, postmark: Postmark
) -> None:
    """A code about the server, not the person (405: not allowed to send), rejects nobody:
    the run stops saying so, the surveys wait as pending, and the next run sends each once."""
    use_postmark(store, postmark)
    customers(store, 3)
    postmark.every_message = (405, "Not allowed to send: your account has run out of credits.")
    with pytest.raises(SyncError, match=r"postmark cannot send from this server now \(Error"):
        store.run(NIGHT)
    assert statuses(store) == ["pending"] * 3

    postmark.every_message = None
    store.run(NEXT_NIGHT)
    assert statuses(store) == ["sent"] * 3 and delivered_once(postmark, 3)


def test_a_call_refused_whole_for_the_account_rejects_nobody(
    store: Store, postmark: Postmark
) -> None:
    """A 422 with ErrorCode 405 for the whole call is about the account, not the people:
    nobody is rejected (their cooldowns stay), the run stops, and the next run sends."""
    use_postmark(store, postmark)
    customers(store, 3)
    refusal = {"ErrorCode": 405, "Message": "Not allowed to send: out of credits."}
    original = postmark.http.routes[("POST", "/email/batch")]
    postmark.http.routes[("POST", "/email/batch")] = lambda request: Reply(422, refusal)
    with pytest.raises(SyncError, match=r"ErrorCode 405: Not allowed to send"):
        store.run(NIGHT)
    assert statuses(store) == ["pending"] * 3

    postmark.http.routes[("POST", "/email/batch")] = original
    store.run(NEXT_NIGHT)
    assert statuses(store) == ["sent"] * 3 and delivered_once(postmark, 3)


# --- suppressions -------------------------------------------------------------------------------


def test_a_suppression_at_postmark_blocks_the_next_sale_and_later_syncs_ask_from_the_newest_day(
    store: Store, postmark: Postmark
) -> None:
    """A person on the stream's suppression list is skipped as unsubscribed; the next run
    asks the dump only from the day of the newest suppression it already has (fromdate)."""
    use_postmark(store, postmark)
    postmark.suppressions = [
        {
            "EmailAddress": "C1@Example.com",
            "SuppressionReason": "ManualSuppression",
            "Origin": "Recipient",
            "CreatedAt": "2026-11-18T08:58:33-05:00",
        },
        {
            "EmailAddress": "old@example.com",
            "SuppressionReason": "HardBounce",
            "Origin": "Recipient",
            "CreatedAt": "2026-10-02T11:00:00-04:00",
        },
    ]
    customers(store, 3)
    store.run(NIGHT)
    assert store.decisions()["2"] == "unsubscribed"
    sent_to = sorted(email.utils.parseaddr(m["To"])[1] for m in postmark.messages)
    assert sent_to == ["c0@example.com", "c2@example.com"]

    postmark.suppressions.append(
        {
            "EmailAddress": "c5@example.com",
            "SuppressionReason": "SpamComplaint",
            "Origin": "Recipient",
            "CreatedAt": "2026-11-21T07:00:00-05:00",
        }
    )
    customers(store, 2, day=21, first=4)
    store.run(NEXT_NIGHT)

    first, second = postmark.dump_queries()
    assert "fromdate" not in first and second["fromdate"] == ["2026-11-18"]
    assert store.decisions()["5"] == "unsubscribed"
    assert "c5@example.com" not in [email.utils.parseaddr(m["To"])[1] for m in postmark.messages]
    reasons = {r for (r,) in store.ledger_rows("SELECT reason FROM suppressions")}
    assert "SpamComplaint at Postmark" in reasons


# --- check and secrets --------------------------------------------------------------------------


def test_check_names_the_server_and_its_stream_and_says_a_wrong_url_plainly(
    store: Store, postmark: Postmark
) -> None:
    """check reads /server: a good token names the server and the stream it sends on; a
    base_url Postmark does not know is said plainly (refused and unreachable: the contract
    suite)."""
    use_postmark(store, postmark)
    ok = store.cli("check")
    assert "provider  ok      postmark: server 'Demo Cycles surveys' accepted the token" in (
        ok.output
    )
    assert f"stream '{STREAM}'" in ok.output

    use_postmark(store, postmark, base_url=f"{postmark.url}/v2")
    wrong = store.cli("check")
    assert wrong.exit_code == 1 and "404" in wrong.output
    assert "wrong region, domain or base_url" in wrong.output


def test_the_server_token_never_reaches_logs_the_ledger_or_status(
    store: Store, postmark: Postmark
) -> None:
    """When Postmark echoes the refused token in its answer, the token is in no log event,
    no ledger error, no error message and no status output: it is masked as '***'."""
    use_postmark(store, postmark)
    postmark.token = "the-token-postmark-expects"
    postmark.echo_refused_token = True
    customers(store, 2)
    customer(store, "GONE", INACTIVE)
    with capture_logs() as logs:
        with pytest.raises(SyncError) as refused:
            store.run(NIGHT)
        postmark.token = TOKEN
        postmark.http.fail(*postmark.send_call, status(500), status(429, Retry_After="1"))
        store.run(NEXT_NIGHT)

    assert "refused the API key" in str(refused.value) and TOKEN not in str(refused.value)
    assert "'***'" in str(refused.value)
    assert statuses(store) == ["rejected", "sent", "sent"]
    texts = [json.dumps(logs, default=str), store.cli("status").output]
    texts += [e for (e,) in store.ledger_rows("SELECT error FROM requests") if e]
    assert all(TOKEN not in text for text in texts)
    assert any("***" in text for text in texts)


# --- templates ----------------------------------------------------------------------------------


def test_with_provider_templates_the_template_and_its_model_are_sent_not_rendered_parts(
    store: Store, postmark: Postmark
) -> None:
    """Surveys whose locale has a Postmark template go through /email/batchWithTemplates
    (a number as TemplateId, else TemplateAlias) with the template model and no rendered
    parts; the others, in the same batch, through /email/batch."""
    use_postmark(store, postmark)
    store.extra["email"]["provider_templates"] = '{ nl = "12345", es = "encuesta-nps" }'
    customers(store, 1)
    store.customer("NL", "nl@example.com", first="Sanne", language="nl")
    store.pos.sale("NL", datetime(2026, 11, 20, 12, 0))
    store.customer("ES", "es@example.com", first="Lucía", language="es")
    store.pos.sale("ES", datetime(2026, 11, 20, 13, 0))
    report = store.run(NIGHT)

    assert report.counts["sent"] == 3 and delivered_once(postmark, 3)
    calls = {r.path: r.json() for r in postmark.batch_calls()}
    assert sorted(calls) == ["/email/batch", "/email/batchWithTemplates"]
    templated = {
        m["Metadata"]["request_id"]: m for m in calls["/email/batchWithTemplates"]["Messages"]
    }
    by_locale = {m["TemplateModel"]["locale"]: m for m in templated.values()}
    assert by_locale["nl"]["TemplateId"] == 12345 and "TemplateAlias" not in by_locale["nl"]
    assert by_locale["es"]["TemplateAlias"] == "encuesta-nps"
    for message in templated.values():
        assert not {"Subject", "TextBody", "HtmlBody"} & set(message)
        model = message["TemplateModel"]
        assert model["unsubscribe_url"] == unsubscribe_url(message)
        assert [s["score"] for s in model["scores"]] == list(range(11))
        assert message["MessageStream"] == STREAM
    assert by_locale["es"]["TemplateModel"]["first_name"] == "Lucía"
    [plain] = calls["/email/batch"]
    assert plain["To"] == "Kim0 Jansen <c0@example.com>" and "TemplateModel" not in plain
