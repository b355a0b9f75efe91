"""The Resend provider against a local server that follows Resend's published contract
(../shared/specs/resend-openapi.yaml and the documented idempotency, batch validation,
pagination and error rules): every batch body is checked against the specification, and a
repeat after a crash is the same call under the same key (faults at random, crashes, keys and
check's plain answers: the contract suite, which drives ``ResendService``)."""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from structlog.testing import capture_logs

from surveysync.config import HttpSettings, ResendSettings
from surveysync.providers import OutgoingEmail
from surveysync.providers.resend import ResendProvider, resend_email
from surveysync.render.message import Recipient, SurveyEmail
from tests.conftest import Store, local
from tests.http_fake import FakeProvider, Recorded, Reply
from tests.provider_kit import (
    FakeTime,
    HttpService,
    crash_after_send,
    customers,
    request_ids,
    statuses,
    use_provider,
)

API_KEY = "re_Live7Never1nALog_x9Qz"
SENDING_ONLY_KEY = "re_SendOnly4Kq2_never_logged"
NIGHT = local(2026, 11, 20, 23)
BAD = "refuse.me@example.com"
SPEC_PATH = Path(__file__).resolve().parent / "specs" / "resend-openapi.yaml"
TAG_CHARACTERS = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


pytestmark = pytest.mark.usefixtures("retries_without_waiting")


# --- the specification ---------------------------------------------------------------------


@functools.cache
def spec() -> dict[str, Any]:
    if not SPEC_PATH.is_file():
        pytest.fail(f"Resend's specification is missing: {SPEC_PATH}", pytrace=False)
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return _nullable_as_type(loaded)


def _nullable_as_type(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` in JSON Schema terms (``type: [t, "null"]``)."""
    if isinstance(node, list):
        return [_nullable_as_type(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_as_type(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    return out


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator whose ``#/components/...`` references resolve within the spec."""
    return Draft202012Validator({**copy.deepcopy(schema), "components": spec()["components"]})


@functools.cache
def batch_validator() -> Draft202012Validator:
    operation = spec()["paths"]["/emails/batch"]["post"]
    return _validator(operation["requestBody"]["content"]["application/json"]["schema"])


@functools.cache
def response_validator(name: str) -> Draft202012Validator:
    return _validator({"$ref": f"#/components/schemas/{name}"})


def batch_body_errors(body: Any) -> list[str]:
    """What is wrong with a batch body: the spec's schema, plus what it says in words (at
    most 100 emails; tag names and values in ASCII letters, digits, _ and -)."""
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or 'body'}: {e.message}"
        for e in batch_validator().iter_errors(body)
    ]
    if isinstance(body, list) and len(body) > 100:
        errors.append(f"body: {len(body)} emails, at most 100 a call")
    for index, email_ in enumerate(body if isinstance(body, list) else []):
        for tag in email_.get("tags", []) if isinstance(email_, dict) else []:
            for part in ("name", "value"):
                if isinstance(tag, dict) and not TAG_CHARACTERS.match(str(tag.get(part, ""))):
                    errors.append(f"{index}/tags: {part} {tag.get(part)!r} has other characters")
    return errors


# --- a local Resend --------------------------------------------------------------------------


def error(status_code: int, name: str, message: str) -> Reply:
    return Reply(status_code, {"statusCode": status_code, "name": name, "message": message})


class ResendService(HttpService):
    """Resend as documented: Bearer keys (a sending-only key is refused everywhere but
    sending), /emails/batch with Idempotency-Key (24 h, payload compared, 409 otherwise)
    and x-batch-validation, /domains, and /suppressions with limit/after/before cursors."""

    kind = "resend"
    secrets = (API_KEY,)
    bad_address = BAD
    ready_words = "the API key works"
    retries_lost_answers = True
    repeats_after_crash = True
    send_call = ("POST", "/emails/batch")
    list_call = ("GET", "/suppressions")

    def __init__(self) -> None:
        self.http = FakeProvider({})
        self.http.idempotent = False  # Resend's own rules, payload compared, below
        self.http.routes[("POST", "/emails/batch")] = self.send_batch
        self.http.routes[("GET", "/domains")] = self.domains
        self.http.routes[("GET", "/suppressions")] = self.suppressions
        for method in ("GET", "POST"):  # last: any other path
            self.http.routes[(method, "/")] = lambda _: error(
                404, "not_found", "The requested endpoint does not exist."
            )
        self.refuse = {BAD}  # addresses Resend's validation refuses
        self.permissive_mode = True  # honours x-batch-validation: permissive
        self.spec_errors: list[str] = []
        self.batches: list[list[dict[str, Any]]] = []  # bodies that sent something
        self.replays = 0  # calls answered from the idempotency store
        self.suppressed: list[dict[str, Any]] = []  # newest first, as Resend lists them
        self.suppression_queries: list[dict[str, str]] = []
        self._keys: dict[str, tuple[Any, Reply]] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.http.url

    def start(self) -> None:
        batch_validator()  # read the spec now, not inside a call the client is timing
        for name in (
            "CreateBatchEmailsResponse",
            "ListDomainsResponse",
            "ListSuppressionsResponseSuccess",
        ):
            response_validator(name)
        super().start()

    def stop(self) -> None:
        super().stop()
        assert self.spec_errors == [], "a body or answer does not follow Resend's spec"

    def configure(
        self, store: Store, *, secret: str | None = None, reachable: bool = True, attempts: int = 8
    ) -> None:
        use_resend(store, self, secret or API_KEY, retry_attempts=str(attempts))
        store.extra["provider.resend"]["base_url"] = f'"{self.base_url(reachable)}"'

    def suppress(self, email_: str, origin: str = "manual") -> str:
        entry = {
            "id": str(uuid.uuid4()),
            "email": email_,
            "origin": origin,
            "source_id": None,
            "created_at": datetime.now(UTC).isoformat(),
        }
        self.suppressed.insert(0, entry)
        return str(entry["id"])

    # --- routes --------------------------------------------------------------------------

    def send_batch(self, request: Recorded) -> Reply:
        refused = self._refused_key(request, sending=True)
        if refused:
            return refused
        key = request.headers.get("idempotency-key")
        if key is None:
            return self._send(request)
        if not 1 <= len(key) <= 256:
            return error(400, "invalid_idempotency_key", "The key must be between 1-256 chars.")
        body = request.json()
        with self._lock:
            seen = self._keys.get(key)
            if seen is not None:
                if seen[0] != body:
                    return error(
                        409,
                        "invalid_idempotent_request",
                        "Same idempotency key used with a different request payload.",
                    )
                self.replays += 1
                return seen[1]
            reply = self._send(request)
            if reply.status < 500:
                self._keys[key] = (body, reply)
        return reply

    def _send(self, request: Recorded) -> Reply:
        body = request.json()
        problems = batch_body_errors(body)
        if problems:
            self.spec_errors.extend(problems)
            return error(422, "validation_error", problems[0])
        permissive = (
            self.permissive_mode and request.headers.get("x-batch-validation") == "permissive"
        )
        invalid = {i: self._invalid(e) for i, e in enumerate(body) if self._invalid(e)}
        if invalid and not permissive:
            return error(422, "validation_error", next(iter(invalid.values())))
        data = []
        for index, email_ in enumerate(body):
            if index not in invalid:
                self.http.deliver(email_["tags"][0]["value"])
                data.append({"id": str(uuid.uuid4())})
        self.batches.append(body)
        answer: dict[str, Any] = {"data": data}
        if permissive:
            answer["errors"] = [{"index": i, "message": m} for i, m in invalid.items()]
        self._check_answer("CreateBatchEmailsResponse", answer)
        return Reply(200, answer)

    def _invalid(self, email_: dict[str, Any]) -> str | None:
        to = email_["to"] if isinstance(email_["to"], list) else [email_["to"]]
        bad = [address for address in to if address in self.refuse]
        return f"Invalid `to` field: {bad[0]} cannot receive email." if bad else None

    def domains(self, request: Recorded) -> Reply:
        refused = self._refused_key(request, sending=False)
        if refused:
            return refused
        answer = {
            "object": "list",
            "has_more": False,
            "data": [
                {
                    "id": "d91cd9bd-1176-453e-8fc1-35364d380206",
                    "name": "demo-cycles.example",
                    "status": "verified",
                    "created_at": "2026-04-26 20:21:26.347412+00",
                    "region": "eu-west-1",
                }
            ],
        }
        self._check_answer("ListDomainsResponse", answer)
        return Reply(200, answer)

    def suppressions(self, request: Recorded) -> Reply:
        refused = self._refused_key(request, sending=False)
        if refused:
            return refused
        query = {k: v[0] for k, v in request.query.items()}
        self.suppression_queries.append(query)
        limit = int(query.get("limit", "20"))
        if not 1 <= limit <= 100 or ("after" in query and "before" in query):
            return error(422, "validation_error", "Invalid pagination parameters.")
        items = list(self.suppressed)
        ids = [s["id"] for s in items]
        cursor = query.get("after") or query.get("before")
        if cursor is not None and cursor not in ids:
            return error(404, "not_found", "Suppression not found")
        if "after" in query:
            rest = items[ids.index(query["after"]) + 1 :]
            page, more = rest[:limit], len(rest) > limit
        elif "before" in query:
            newer = items[: ids.index(query["before"])]
            page, more = newer[-limit:], len(newer) > limit
        else:
            page, more = items[:limit], len(items) > limit
        answer = {"object": "list", "has_more": more, "data": page}
        self._check_answer("ListSuppressionsResponseSuccess", answer)
        return Reply(200, answer)

    # --- as Resend documents its errors ------------------------------------------------------

    def _refused_key(self, request: Recorded, *, sending: bool) -> Reply | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return error(401, "missing_api_key", "Missing API key in the authorization header.")
        key = header.removeprefix("Bearer ")
        if key == SENDING_ONLY_KEY and not sending:
            return error(
                401, "restricted_api_key", "This API key is restricted to only send emails."
            )
        if key not in (API_KEY, SENDING_ONLY_KEY):
            return error(403, "invalid_api_key", "API key is invalid.")
        return None

    def _check_answer(self, schema: str, answer: Any) -> None:
        """The local Resend answers as the spec says, or the test fails."""
        self.spec_errors.extend(e.message for e in response_validator(schema).iter_errors(answer))


@pytest.fixture
def resend() -> Iterator[ResendService]:
    service = ResendService()
    service.start()
    yield service
    service.stop()  # and every body and answer followed Resend's spec


def use_resend(store: Store, resend: ResendService, key: str = API_KEY, **http: str) -> None:
    settings = {"api_key": f'"{key}"', "base_url": f'"{resend.url}"'}
    use_provider(store, "resend", 4, settings, **{"retry_attempts": "10", **http})


def batch_calls(resend: ResendService) -> list[Recorded]:
    return [r for r in resend.http.requests if r.path == "/emails/batch"]


def delivered_once(resend: ResendService, store: Store) -> bool:
    return resend.delivered() == dict.fromkeys(request_ids(store, status=None), 1)


# --- sending -------------------------------------------------------------------------------


def test_each_call_carries_up_to_100_emails_in_the_documented_shape(
    store: Store, resend: ResendService
) -> None:
    """101 requests go out as two calls (100 and 1, Resend's limit) with the key, Bearer
    auth and permissive validation; each email has both parts, the unsubscribe headers and
    the request id as a tag, and every body follows the spec."""
    use_resend(store, resend)
    store.extra["provider"]["batch_size"] = "500"
    store.extra["email"] = {"reply_to": '"replies@demo-cycles.example"'}
    customers(store, 101)
    report = store.run(NIGHT)

    assert report.counts["sent"] == 101 and delivered_once(resend, store)
    calls = batch_calls(resend)
    assert sorted(len(r.json()) for r in calls) == [1, 100]
    for call in calls:
        assert call.headers["authorization"] == f"Bearer {API_KEY}"
        assert len(call.headers["idempotency-key"]) == 40
        assert call.headers["x-batch-validation"] == "permissive"
    first = calls[0].json()[0]
    request_id = first["tags"][0]["value"]
    assert first["from"] == "Demo Cycles <feedback@demo-cycles.example>"
    assert first["to"][0].endswith("@example.com") and first["reply_to"].startswith("replies@")
    assert first["subject"] and "https://survey.example/s/" in first["text"]
    assert "https://survey.example/s/" in first["html"]
    assert first["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["headers"]["List-Unsubscribe"].startswith("<https://survey.example/u/")
    assert first["headers"]["Message-ID"] == f"<{request_id}@demo-cycles.example>"
    assert first["tags"] == [{"name": "surveysync_request", "value": request_id}]
    assert first["headers"]["X-Surveysync-Request"] == request_id
    assert statuses(store) == ["sent"] * 101


def test_the_spec_check_catches_a_broken_body(resend: ResendService) -> None:
    """The schema check used on every call is not a rubber stamp: a body without a subject,
    with a number for ``to``, or a tag with a dot is refused, and the local Resend answers
    422 to it."""
    good = [{"from": "a@b.example", "to": ["c@d.example"], "subject": "Hi", "text": "x"}]
    assert batch_body_errors(good) == []
    assert any("subject" in e for e in batch_body_errors([{**good[0], "subject": None}]))
    assert batch_body_errors([{k: v for k, v in good[0].items() if k != "subject"}])
    assert batch_body_errors([{**good[0], "to": 42}])
    assert batch_body_errors([{**good[0], "tags": [{"name": "request.id", "value": "1"}]}])
    assert batch_body_errors(good * 101)
    answer = httpx.post(
        f"{resend.url}/emails/batch",
        json=[{"to": 42}],
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,  # httpx's 5 s default is a race on a busy machine
    )
    assert answer.status_code == 422 and answer.json()["name"] == "validation_error"
    resend.spec_errors.clear()  # refused on purpose


def test_a_refused_address_is_rejected_with_resends_words_and_the_rest_are_sent(
    store: Store, resend: ResendService
) -> None:
    """In permissive mode Resend refuses one email of the batch by its index: that request
    is rejected with Resend's message (address masked), the other three are sent, all in
    one call."""
    use_resend(store, resend)
    customers(store, 3)
    store.customer("BAD", BAD)
    store.pos.sale("BAD", datetime(2026, 11, 20, 12, 0))
    report = store.run(NIGHT)

    assert (report.counts["sent"], report.counts["rejected"]) == (3, 1)
    assert len(batch_calls(resend)) == 1
    [(error_,)] = store.ledger_rows("SELECT error FROM requests WHERE status = 'rejected'")
    assert "Invalid `to` field" in error_ and "cannot receive email" in error_
    assert BAD not in error_
    assert set(resend.delivered().values()) == {1} and len(resend.delivered()) == 3


def test_a_batch_refused_whole_is_sent_one_by_one_to_find_the_bad_address(
    store: Store, resend: ResendService
) -> None:
    """Should Resend validate strictly after all (422 for the whole batch), the emails are
    sent one by one: only the bad one is rejected, nobody gets two."""
    use_resend(store, resend)
    resend.permissive_mode = False
    customers(store, 3)
    store.customer("BAD", BAD)
    store.pos.sale("BAD", datetime(2026, 11, 20, 12, 0))
    report = store.run(NIGHT)

    assert (report.counts["sent"], report.counts["rejected"]) == (3, 1)
    assert [len(r.json()) for r in batch_calls(resend)] == [4, 1, 1, 1, 1]
    assert set(resend.delivered().values()) == {1} and len(resend.delivered()) == 3


def test_a_409_for_a_key_in_use_leaves_the_batch_in_doubt_and_never_splits_it(
    store: Store, resend: ResendService
) -> None:
    """Resend's 409 (the key is in use by a call still running) does not say the emails
    failed: they are left in doubt and listed by `surveysync status`, never sent again one
    by one under new keys."""
    use_resend(store, resend)
    handled = resend.send_batch

    def busy_once(request: Recorded) -> Reply:
        if len(batch_calls(resend)) == 1:
            handled(request)  # the first call goes through, its answer is lost in the 409
            return error(
                409,
                "concurrent_idempotent_requests",
                "Same idempotency key used while original request is still in progress.",
            )
        return handled(request)

    resend.http.routes[("POST", "/emails/batch")] = busy_once
    customers(store, 3)
    report = store.run(NIGHT)

    assert report.counts["in_doubt"] == 3 and len(batch_calls(resend)) == 1
    assert statuses(store) == ["in_doubt"] * 3 and delivered_once(resend, store)
    listed = store.cli("status").output
    assert "in_doubt" in listed and all(rid in listed for rid in request_ids(store, status=None))


def test_a_crash_then_restart_repeats_the_call_under_its_key_and_sends_nothing_twice(
    store: Store, resend: ResendService
) -> None:
    """After a crash between send and settle, a restart minutes later repeats the call under
    the same Idempotency-Key with the same body (rendered as of the first call, links and
    Date alike): Resend answers from its key store, and every request ends sent, once."""
    use_resend(store, resend)
    customers(store, 3)
    crash_after_send(store, NIGHT, ResendProvider)
    assert statuses(store) == ["sending"] * 3
    first = batch_calls(resend)[-1]

    store.run(NIGHT + timedelta(minutes=5))

    repeat = batch_calls(resend)[-1]
    assert repeat.headers["idempotency-key"] == first.headers["idempotency-key"]
    assert repeat.body == first.body
    assert resend.replays == 1 and delivered_once(resend, store)
    assert statuses(store) == ["sent"] * 3


def test_a_restart_that_repeats_the_same_body_is_answered_from_resends_key_store(
    store: Store, resend: ResendService
) -> None:
    """The same call repeated after a crash, byte for byte, under its key: Resend gives its
    first answer again, sends nothing, and every request ends sent with its email id."""
    use_resend(store, resend)
    customers(store, 3)
    crash_after_send(store, NIGHT, ResendProvider)
    assert statuses(store) == ["sending"] * 3

    store.run(NIGHT)

    assert resend.replays == 1 and delivered_once(resend, store)
    assert statuses(store) == ["sent"] * 3
    ids = [pid for (pid,) in store.ledger_rows("SELECT provider_message_id FROM requests")]
    assert all(ids) and len(set(ids)) == 3


# --- suppressions ----------------------------------------------------------------------------


def test_suppression_sync_blocks_people_suppressed_at_resend_and_then_asks_only_for_new_ones(
    store: Store, resend: ResendService
) -> None:
    """The whole list (two pages) is read before the first run and C0's sale is skipped as
    unsubscribed; the next run asks only for suppressions newer than the newest it saw, and
    C1, suppressed since, is skipped too."""
    use_resend(store, resend)
    resend.suppress("c0@example.com", "complaint")
    for n in range(120):
        resend.suppress(f"bounced{n}@elsewhere.example", "bounce")
    store.customer("C0")
    store.customer("C1")
    store.customer("C2")
    c0 = store.pos.sale("C0", datetime(2026, 11, 20, 9, 0))
    store.pos.sale("C2", datetime(2026, 11, 20, 9, 5))
    store.run(NIGHT)

    assert store.decisions()[str(c0)] == "unsubscribed"
    first_pages = resend.suppression_queries
    assert [set(q) for q in first_pages] == [{"limit"}, {"limit", "after"}]
    newest = resend.suppressed[0]["id"]

    resend.suppression_queries = []
    resend.suppress("c1@example.com", "manual")
    c1 = store.pos.sale("C1", datetime(2026, 11, 21, 10, 0))
    store.run(NIGHT + timedelta(days=1))

    assert resend.suppression_queries == [{"limit": "100", "before": newest}]
    assert store.decisions()[str(c1)] == "unsubscribed"
    assert len(resend.delivered()) == 1  # C2 only


def test_a_cursor_resend_no_longer_knows_starts_the_list_over(
    store: Store, resend: ResendService
) -> None:
    """The suppression the cursor names was removed at Resend (404 for it): the list is read
    from the start again instead of failing every night."""
    use_resend(store, resend)
    resend.suppress("gone@example.com")
    store.run(NIGHT)
    resend.suppressed.clear()
    resend.suppress("c0@example.com")
    resend.suppression_queries = []
    store.customer("C0")
    c0 = store.pos.sale("C0", datetime(2026, 11, 21, 10, 0))
    store.run(NIGHT + timedelta(days=1))

    assert [set(q) for q in resend.suppression_queries] == [{"limit", "before"}, {"limit"}]
    assert store.decisions()[str(c0)] == "unsubscribed"


# --- check -----------------------------------------------------------------------------------


def test_check_says_ok_with_a_good_key_and_names_the_domains(
    store: Store, resend: ResendService
) -> None:
    """check lists Resend's domains with the configured key."""
    use_resend(store, resend)
    result = store.cli("check")
    assert "provider  ok      resend: the API key works" in result.output
    assert "demo-cycles.example (verified)" in result.output


def test_check_tells_a_sending_only_key_apart(store: Store, resend: ResendService) -> None:
    """A key restricted to sending is refused by /domains: check says it can send and
    cannot list domains, rather than calling it wrong; a run with it sends."""
    use_resend(store, resend, key=SENDING_ONLY_KEY)
    result = store.cli("check")
    assert "provider  ok      resend: key can send but cannot list domains" in result.output
    customers(store, 1)
    with capture_logs() as logs:
        report = store.run(NIGHT)
    assert report.counts["sent"] == 1  # the suppression list is skipped, with a warning
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["suppressions.sync_failed"]


def test_check_reports_a_wrong_url_in_plain_words(store: Store, resend: ResendService) -> None:
    """A base_url with a path Resend does not have (404) fails check with a sentence saying
    so (a refused key and a closed port: the contract suite)."""
    use_resend(store, resend)
    store.extra["provider.resend"]["base_url"] = f'"{resend.url}/v9"'
    result = store.cli("check")
    assert result.exit_code == 1
    expected = "resend answered 404 for /v9/domains: wrong region, domain or"
    assert f"provider  failed  {expected}" in result.output


# --- secrets, templates, pacing ------------------------------------------------------------


def test_the_api_key_never_reaches_logs_the_ledger_or_status(
    store: Store, resend: ResendService
) -> None:
    """Even when Resend's answers repeat the key (a 500 and a refusal), it is masked in every
    log event, every error kept in the ledger, and the output of status and check."""
    use_resend(store, resend)
    handled = resend.send_batch
    resend.refuse = set()

    def echoing(request: Recorded) -> Reply:
        if len(batch_calls(resend)) == 1:
            return error(500, "application_error", f"trouble with key {API_KEY}")
        reply = handled(request)
        reply.body["errors"] = [{"index": 0, "message": f"key {API_KEY} may not mail {BAD}"}]
        reply.body["data"] = reply.body["data"][1:]
        return reply

    resend.http.routes[("POST", "/emails/batch")] = echoing
    customers(store, 3)
    with capture_logs() as logs:
        report = store.run(NIGHT)
        checked = store.cli("check").output
    assert report.counts["rejected"] == 1
    texts = [
        json.dumps(logs, default=str),
        json.dumps(store.ledger_rows("SELECT error FROM requests")),
        store.cli("status").output,
        checked,
    ]
    assert any("***" in text for text in texts[:2])
    assert all(API_KEY not in text for text in texts)


def test_with_a_resend_template_its_id_and_variables_replace_the_rendered_parts(
    store: Store, resend: ResendService
) -> None:
    """email.provider_templates names a published Resend template: the call carries its id
    and flat string/number variables (score links as scores_<n>_url), no html or text."""
    use_resend(store, resend)
    store.extra["email"] = {"provider_templates": '{ "*" = "nps-survey" }'}
    customers(store, 1)
    store.run(NIGHT)

    [email_] = batch_calls(resend)[0].json()
    assert "html" not in email_ and "text" not in email_
    template = email_["template"]
    assert template["id"] == "nps-survey"
    variables = template["variables"]
    assert variables["first_name"] == "Kim" and variables["locale"] == "en"
    assert variables["scores_0_score"] == 0 and variables["scores_10_score"] == 10
    assert variables["scores_10_url"].startswith("https://survey.example/s/")
    assert variables["unsubscribe_url"].startswith("https://survey.example/u/")
    assert all(isinstance(v, str | int | float) for v in variables.values())
    assert email_["subject"] and email_["headers"]["List-Unsubscribe-Post"]


def survey_email(n: int) -> SurveyEmail:
    return SurveyEmail(
        request_id=f"r{n}",
        sender=Address("Demo Cycles", addr_spec="feedback@demo-cycles.example"),
        reply_to=None,
        recipient=Recipient(f"c{n}", "example.com"),
        recipient_name="Kim Jansen",
        subject="How did we do?",
        text="text",
        html="<p>html</p>",
        locale="en",
        date=NIGHT,
        unsubscribe_url="https://survey.example/u/x",
        unsubscribe_mailto="mailto:unsubscribe@demo-cycles.example?subject=unsubscribe-x",
    )


def test_a_configured_rate_is_never_exceeded(resend: ResendService) -> None:
    """With max_per_second = 2, four calls start at least half a second apart on the
    provider's clock (driven by the test, nothing sleeps)."""
    time = FakeTime()
    starts: list[float] = []
    handled = resend.send_batch

    def timed(request: Recorded) -> Reply:
        starts.append(time.now)
        return handled(request)

    resend.http.routes[("POST", "/emails/batch")] = timed
    provider = ResendProvider(
        ResendSettings(api_key=API_KEY, base_url=resend.url),  # type: ignore[arg-type]
        HttpSettings(max_per_second=2.0),
        clock=time.clock,
        sleep=time.sleep,
    )
    try:
        for n in range(4):
            [result] = provider.send([OutgoingEmail(f"r{n}", f"r{n}", survey_email(n), f"k{n}")])
            assert result.status == "sent"
    finally:
        provider.close()
    assert [round(b - a, 3) for a, b in itertools.pairwise(starts)] == [0.5] * 3


def test_the_body_of_one_email_follows_the_spec_without_a_reply_to() -> None:
    """Without reply_to the field is left out rather than sent empty; the body is valid."""
    body = resend_email(OutgoingEmail("r1", "r1", survey_email(1), "k1"))
    assert "reply_to" not in body and body["to"] == ["c1@example.com"]
    assert batch_body_errors([body]) == []
