"""The ``resend`` provider: survey emails through Resend's batch endpoint.

What it sends and reads, as Resend's OpenAPI specification (``emails/send-batch``,
``suppressions/list``, ``domains/list``) and its documentation describe them::

    POST {base_url}/emails/batch                       at most 100 emails a call
    Authorization: Bearer <api_key>
    Idempotency-Key: <batch key>       the same when a crashed call is repeated
    x-batch-validation: permissive     one invalid email does not fail the others
    [{"from", "to": [address], "subject", "html", "text", "reply_to", "headers",
      "tags": [{"name": "surveysync_request", "value": <request id>}]}, ...]
      or, with a Resend template for the locale, "template": {"id", "variables"}
      instead of "html" and "text"

    200 {"data": [{"id"}, ...],                  the emails Resend created, in order
         "errors": [{"index", "message"}, ...]}  the ones it refused (permissive mode)

Resend keeps an Idempotency-Key for 24 hours and answers a repeated call with the first
answer, so this provider honours idempotency keys: a call that timed out or lost its
answer is repeated under the same key and nothing goes out twice. A repeated key with a
different body, or one still in progress, is answered 409; ``http`` leaves such requests
in doubt rather than sending them under new keys.

Suppressions: ``GET /suppressions`` pages newest first with ``limit``/``after``/``before``
cursors (suppression ids). The first sync walks the whole list with ``after``; the newest
id is kept as the cursor, and later syncs ask only for what is newer (``before=<cursor>``).
A cursor Resend no longer knows (the suppression was removed) starts a full walk again.

``check`` lists the domains (``GET /domains``). A key restricted to sending is refused
there (401 ``restricted_api_key``): that key works for sending, and check says so.

Never logs or keeps the API key or a full address: every provider message passes
``caller.scrub``. Never decides retries itself: ``http`` does, for every call.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self

import httpx
import structlog

from surveysync.config import HttpSettings, ProviderSettings, ResendSettings
from surveysync.model import RequestStatus
from surveysync.providers.base import (
    AdapterClass,
    OutgoingEmail,
    ProviderUnavailable,
    SendResult,
    Suppressed,
)
from surveysync.providers.http import HttpProvider
from surveysync.render.message import SurveyEmail

log = structlog.get_logger("surveysync.providers.resend")

MAX_BATCH = 100  # Resend's limit for one call of /emails/batch
PAGE_SIZE = 100  # Resend's largest page
MAX_PAGES = 10_000  # a million suppressions; a list that never ends is not followed further
REQUEST_TAG = "surveysync_request"
RESTRICTED_KEY = "restricted_api_key"
# Tag names and values: ASCII letters, digits, underscores and dashes, at most 256.
_NOT_TAG_CHARACTER = re.compile(r"[^A-Za-z0-9_-]")
_TAG_LIMIT = 256


class ResendProvider(HttpProvider):
    name = "resend"
    honours_idempotency_key = True
    renders_templates = True  # a provider template's call carries its data, no body

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> Self:
        return cls(settings.resend, settings.http, batch_size=settings.batch_size)

    def __init__(
        self,
        settings: ResendSettings,
        http: HttpSettings,
        *,
        batch_size: int = MAX_BATCH,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        assert settings.api_key is not None, "checked by the settings"
        self._api_key = settings.api_key.get_secret_value()
        self.base_url = str(settings.base_url).rstrip("/")
        self.max_batch_size = min(batch_size, MAX_BATCH)
        super().__init__(http, [self._api_key], client=client, clock=clock, sleep=sleep)

    # --- sending ---------------------------------------------------------------------------

    def build_send(self, batch: Sequence[OutgoingEmail]) -> httpx.Request:
        body = [resend_email(e) for e in _in_key_order(batch)]
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = self._headers() | {
            "Content-Type": "application/json",
            "Idempotency-Key": batch[0].batch_key or batch[0].idempotency_key,
            "x-batch-validation": "permissive",
        }
        return self.client.build_request(
            "POST", f"{self.base_url}/emails/batch", content=data, headers=headers
        )

    def read_results(
        self, batch: Sequence[OutgoingEmail], response: httpx.Response
    ) -> list[SendResult]:
        """Refused emails by their index; the others take the created ids in order."""
        batch = _in_key_order(batch)
        answer = _json(response)
        refused = self._refused_by_index(answer, len(batch))
        created = _ids(answer)
        accepted = [i for i in range(len(batch)) if i not in refused]
        if len(created) != len(accepted):
            # Resend took the call; which id is whose is unclear, so none is recorded.
            log.warning("resend.ids_unmatched", emails=len(accepted), ids=len(created))
            created = [None] * len(accepted)
        ids = dict(zip(accepted, created, strict=True))
        return [
            SendResult(e.request_id, RequestStatus.SENT, ids[i])
            if i in ids
            else SendResult(e.request_id, RequestStatus.REJECTED, error=refused[i])
            for i, e in enumerate(batch)
        ]

    def _refused_by_index(self, answer: Any, size: int) -> dict[int, str]:
        errors = answer.get("errors") if isinstance(answer, dict) else None
        refused: dict[int, str] = {}
        for error in errors if isinstance(errors, list) else []:
            index = error.get("index") if isinstance(error, dict) else None
            if isinstance(index, int) and 0 <= index < size:
                message = " ".join(str(error.get("message") or "refused").split())
                refused[index] = self.caller.scrub(f"Resend: {message}")[:300]
        return refused

    # --- check -------------------------------------------------------------------------------

    def build_check(self) -> httpx.Request:
        return self.client.build_request("GET", f"{self.base_url}/domains", headers=self._headers())

    def describe_check(self, response: httpx.Response) -> str:
        answer = _json(response)
        domains = answer.get("data") if isinstance(answer, dict) else None
        named = [
            f"{d.get('name')} ({d.get('status', 'status unknown')})"
            for d in (domains if isinstance(domains, list) else [])
            if isinstance(d, dict)
        ]
        listed = ", ".join(named) if named else "none yet: add and verify the sender's domain"
        return self.caller.scrub(f"the API key works; domains: {listed}")

    def check(self) -> str:
        try:
            return super().check()
        except ProviderUnavailable as exc:
            if RESTRICTED_KEY not in str(exc):
                raise
        return (
            "key can send but cannot list domains (a sending-only key): it is valid, but "
            "suppressions cannot be synced with it"
        )

    # --- suppressions --------------------------------------------------------------------------

    def fetch_suppressions(self, cursor: str | None) -> tuple[list[Suppressed], str | None]:
        """Suppressions newer than ``cursor`` (all of them without one), and the newest id."""
        if cursor is not None:
            try:
                found, newest = _collect(self._pages({"before": cursor}), newer=True)
            except _CursorUnknown:
                log.info("resend.suppression_cursor_unknown")
            else:
                return found, newest or cursor
        return _collect(self._pages({}), newer=False)

    def _pages(self, start: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
        """Pages of suppressions, newest first in each: from ``before=<cursor>`` towards the
        newer ones, else from the newest towards the older ones (``after``)."""
        newer = "before" in start
        params = start
        for _ in range(MAX_PAGES):
            answer = self._list_page(params, cursor_given=bool(start))
            page = [s for s in answer.get("data") or [] if isinstance(s, dict) and s.get("id")]
            yield page
            if not (page and answer.get("has_more")):
                return
            params = {"before": page[0]["id"]} if newer else {"after": page[-1]["id"]}
        log.warning("resend.suppressions_truncated", pages=MAX_PAGES)

    def _list_page(self, params: dict[str, str], *, cursor_given: bool) -> dict[str, Any]:
        request = self.client.build_request(
            "GET",
            f"{self.base_url}/suppressions",
            params={"limit": str(PAGE_SIZE), **params},
            headers=self._headers(),
        )
        response = self.caller.call(request, idempotent=True)
        if not response.is_success:
            if cursor_given and response.status_code in (400, 404, 422):
                raise _CursorUnknown
            raise ProviderUnavailable(
                f"resend: cannot list suppressions (HTTP {response.status_code}: "
                f"{self.caller.describe(response)})"
            )
        answer = _json(response)
        return answer if isinstance(answer, dict) else {}

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}


def _in_key_order(batch: Sequence[OutgoingEmail]) -> list[OutgoingEmail]:
    """The emails of a call in one order whatever order they came in: a call repeated after
    a crash (read back from the ledger in another order) is then the same body, which
    Resend must see to answer from its idempotency store rather than with a 409."""
    return sorted(batch, key=lambda e: e.request_id)


class _CursorUnknown(Exception):
    """Resend refused the stored cursor (the suppression it names is gone)."""


def _collect(
    pages: Iterator[list[dict[str, Any]]], *, newer: bool
) -> tuple[list[Suppressed], str | None]:
    """Every suppression of the pages, and the id of the newest one: the first of the first
    page when walking towards older ones, the first of the last page when towards newer."""
    found: list[Suppressed] = []
    newest: str | None = None
    for page in pages:
        if page and (newer or newest is None):
            newest = str(page[0]["id"])
        found.extend(Suppressed(str(s.get("email") or ""), _reason(s)) for s in page)
    return [s for s in found if s.email], newest


def _reason(suppression: dict[str, Any]) -> str:
    origin = suppression.get("origin")
    return f"resend suppression ({origin})" if origin else "resend suppression"


def resend_email(email_: OutgoingEmail) -> dict[str, Any]:
    """One element of the batch body (``SendEmailRequest``)."""
    message = email_.message
    body: dict[str, Any] = {
        "from": str(message.sender),
        "to": [message.recipient.addr_spec],
        "subject": message.subject,
    }
    if message.reply_to:
        body["reply_to"] = message.reply_to
    body.update(_content(message))
    body["headers"] = message.extra_headers()
    body["tags"] = [{"name": REQUEST_TAG, "value": tag_value(email_.request_id)}]
    return body


def _content(message: SurveyEmail) -> dict[str, Any]:
    """The rendered parts, or a Resend template and its variables (never both)."""
    template = message.provider_template
    if template is None:
        return {"html": message.html, "text": message.text}
    return {"template": {"id": template.template_id, "variables": variables(template.data)}}


def variables(data: dict[str, Any]) -> dict[str, str | int | float]:
    """Template data as Resend takes it: flat, strings and numbers only. Lists and nested
    objects are flattened, their keys joined by ``_`` (``scores[3].url`` -> ``scores_3_url``).
    """
    flat: dict[str, str | int | float] = {}
    for key, value in data.items():
        _flatten(str(key), value, flat)
    return flat


def _flatten(key: str, value: Any, flat: dict[str, str | int | float]) -> None:
    if isinstance(value, dict):
        for inner, item in value.items():
            _flatten(f"{key}_{inner}", item, flat)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _flatten(f"{key}_{index}", item, flat)
    elif isinstance(value, bool) or value is None:
        flat[key] = "" if value is None else str(value).lower()
    elif isinstance(value, int | float):
        flat[key] = value
    else:
        flat[key] = str(value)


def tag_value(text: str) -> str:
    """``text`` in the characters Resend allows in a tag."""
    return _NOT_TAG_CHARACTER.sub("_", text)[:_TAG_LIMIT] or "_"


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _ids(answer: Any) -> list[str | None]:
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        return []
    return [str(d["id"]) if isinstance(d, dict) and d.get("id") else None for d in data]


Adapter: AdapterClass = ResendProvider  # what surveysync.providers finds for this kind
