"""The ``brevo`` provider: Brevo's transactional email API, a batch as message versions.

The calls, as Brevo documents them (https://developers.brevo.com/reference/send-transac-email,
/docs/batch-send-transactional-emails, /reference/get-transac-blocked-contacts,
/reference/get-account)::

    POST {base}/v3/smtp/email                 header api-key: <key>, JSON
        {"sender", "replyTo", "subject", "htmlContent", "textContent",   (the defaults)
         "headers": {"idempotencyKey": <UUID>},
         "messageVersions": [{"to": [{"email", "name"}], "subject", "htmlContent",
                              "textContent", "headers": {…, "X-Mailin-custom": <request id>}}]}
        with a template stored at Brevo: "templateId" on top, "params" per version
        201 {"messageIds": ["<…>", …]}   (one per version, in order)
    GET  {base}/v3/smtp/blockedContacts?startDate&endDate&limit&offset&sort
        200 {"count", "contacts": [{"email", "senderEmail", "reason": {"code", "message"},
                                    "blockedAt"}]}
    GET  {base}/v3/account                    (check)

A version may carry its own ``to``, ``subject``, ``htmlContent``, ``textContent``, ``headers``
and ``params``; ``sender`` and ``templateId`` exist only on top, and without a template the
top level must still hold ``subject`` and ``htmlContent``: the first message's parts serve
as those defaults (every version overrides them). Calls are grouped by template, because one
call has one ``templateId``. ``headers`` take custom headers only: the unsubscribe headers,
Content-Language and X-Surveysync-Request are passed on, Message-ID is left to Brevo (its id
comes back in ``messageIds``), and ``X-Mailin-custom`` carries the request id to Brevo's
webhooks. Up to 1,000 versions a call (the batch-sending guide).

Idempotency, from Brevo's guide "Idempotency for batch emails"
(https://developers.brevo.com/docs/heterogenous-versions-batch-emails) and its changelog of
2021-11-10: the key is a UUID in the JSON ``headers.idempotencyKey`` (not an HTTP header); it
lives 30 minutes (15 in the changelog); a repeat inside that time is *refused* with the error
code ``duplicate_parameter`` instead of being answered again. Hence:

- each call's retries (timeouts, resets, 5xx, 429) repeat it under the same key, and the
  retry time is cut so that a call never outlives the shorter documented lifetime; a
  ``duplicate_parameter`` answer means the first attempt went through: its requests are
  sent (without Brevo's message ids);
- ``honours_idempotency_key`` is False: it tells the sync that a call a crash left in flight
  can be repeated at any later time without a duplicate, which a 30-minute key cannot
  promise. Such requests follow ``sync.in_doubt``; with "resend" the call is repeated under
  its old key, so a restart within the key's lifetime still sends nothing twice.

Suppressions: blocked and unsubscribed contacts, incrementally: the cursor is the UTC date of
the last sync, and the next one asks from that date (inclusive) to today.

Never: the API key anywhere but the ``api-key`` header to ``base``; a request counted sent
that Brevo did not take or say it took.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Self

import httpx
import structlog

from surveysync.config import BrevoSettings, HttpSettings, ProviderSettings
from surveysync.model import RequestStatus
from surveysync.providers.base import (
    AdapterClass,
    OutgoingEmail,
    ProviderUnavailable,
    SendResult,
    Suppressed,
)
from surveysync.providers.http import HttpProvider
from surveysync.render import SurveyEmail

log = structlog.get_logger("surveysync.providers.brevo")

MAX_VERSIONS = 1000
KEY_LIFETIME_SECONDS = 15 * 60  # the shorter of the two documented lifetimes
_KEY_MARGIN_SECONDS = 60
_KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "surveysync:brevo:idempotency-key")
PAGE_SIZE = 100  # Brevo's maximum for blocked contacts
MAX_PAGES = 10_000
REPEAT_REFUSED = "duplicate_parameter"


def utc_today() -> date:
    return datetime.now(UTC).date()


class BrevoProvider(HttpProvider):
    name = "brevo"
    honours_idempotency_key = False  # see the module docstring
    renders_templates = True  # a provider template's call carries its data, no body

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> Self:
        return cls(settings.brevo, settings.http, batch_size=settings.batch_size)

    def __init__(
        self,
        settings: BrevoSettings,
        http: HttpSettings,
        *,
        batch_size: int = 500,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        today: Callable[[], date] = utc_today,
    ) -> None:
        assert settings.api_key, "checked by the settings"
        key = settings.api_key.get_secret_value()
        self._headers = {"api-key": key, "Accept": "application/json"}
        self.base_url = settings.base_url
        self.max_batch_size = min(batch_size, MAX_VERSIONS)
        self._today = today
        super().__init__(within_key_lifetime(http), [key], client=client, clock=clock, sleep=sleep)

    # --- sending ----------------------------------------------------------------------------

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        """One call per template in the batch (usually one), retried under its key."""
        results: list[SendResult] = []
        for group in _by_template(batch).values():
            try:
                results.extend(self._send_call(group))
            except ProviderUnavailable as exc:  # the calls made before stay settled
                raise ProviderUnavailable(str(exc), [*results, *exc.results]) from None
        return results

    def _send_call(self, group: Sequence[OutgoingEmail]) -> list[SendResult]:
        response = self.caller.call(self.build_send(group), idempotent=True)
        if response.is_success:
            return self.read_results(group, response)
        if _code(response) == REPEAT_REFUSED:
            log.warning("brevo.repeat_refused", count=len(group), meaning="sent before")
            return [SendResult(e.request_id, RequestStatus.SENT) for e in group]
        return self._refused(group, response)

    def build_send(self, batch: Sequence[OutgoingEmail]) -> httpx.Request:
        first = batch[0].message
        body: dict[str, Any] = {
            "sender": _person(first.sender.addr_spec, first.sender.display_name),
            "headers": {"idempotencyKey": idempotency_key(batch)},
            "messageVersions": [_version(e) for e in batch],
        }
        if first.reply_to:
            body["replyTo"] = {"email": first.reply_to}
        template = first.provider_template
        if template is not None:
            number = template.template_id
            body["templateId"] = int(number) if number.isdigit() else number
        else:
            body.update(_parts(first))
        return self.client.build_request(
            "POST", f"{self.base_url}/v3/smtp/email", json=body, headers=self._headers
        )

    def read_results(
        self, batch: Sequence[OutgoingEmail], response: httpx.Response
    ) -> list[SendResult]:
        data = _json(response)
        ids = data.get("messageIds")
        if not (isinstance(ids, list) and len(ids) == len(batch)):
            single = data.get("messageId")
            ids = [single if isinstance(single, str) and len(batch) == 1 else None] * len(batch)
        return [
            SendResult(e.request_id, RequestStatus.SENT, str(i) if i else None)
            for e, i in zip(batch, ids, strict=True)
        ]

    # --- check ------------------------------------------------------------------------------

    def build_check(self) -> httpx.Request:
        return self.client.build_request(
            "GET", f"{self.base_url}/v3/account", headers=self._headers
        )

    def describe_check(self, response: httpx.Response) -> str:
        company = _json(response).get("companyName")
        owner = (
            f"the account of {company}" if isinstance(company, str) and company else "an account"
        )
        return f"brevo answered for {owner}; the API key works"

    # --- suppressions -----------------------------------------------------------------------

    def fetch_suppressions(self, cursor: str | None) -> tuple[list[Suppressed], str | None]:
        """Blocked and unsubscribed contacts since the day in ``cursor`` (all when None); the
        new cursor is today's UTC date."""
        today = self._today().isoformat()
        params: dict[str, str | int] = {"limit": PAGE_SIZE, "sort": "asc"}
        if cursor:
            params.update(startDate=min(cursor, today), endDate=today)
        found: list[Suppressed] = []
        offset = 0
        for _ in range(MAX_PAGES):
            page = self._page({**params, "offset": offset})
            contacts = page.get("contacts")
            contacts = contacts if isinstance(contacts, list) else []
            found.extend(_blocked(c) for c in contacts if _has_email(c))
            offset += len(contacts)
            count = page.get("count")
            done = offset >= count if isinstance(count, int) else len(contacts) < PAGE_SIZE
            if done or not contacts:
                return found, today
        raise ProviderUnavailable(f"brevo's blocked contacts did not end after {MAX_PAGES} pages")

    def _page(self, params: dict[str, str | int]) -> dict[str, Any]:
        request = self.client.build_request(
            "GET", f"{self.base_url}/v3/smtp/blockedContacts", params=params, headers=self._headers
        )
        return _json(self.read_list(request, "the blocked contacts"))


def within_key_lifetime(http: HttpSettings) -> HttpSettings:
    """The HTTP settings with a retry time short enough that the last attempt of a call ends
    before its idempotency key expires (at most 600 + 120 s of timeouts: always positive)."""
    limit = (
        KEY_LIFETIME_SECONDS
        - http.timeout_seconds
        - http.connect_timeout_seconds
        - _KEY_MARGIN_SECONDS
    )
    if http.retry_seconds <= limit:
        return http
    return http.model_copy(update={"retry_seconds": limit})


def idempotency_key(batch: Sequence[OutgoingEmail]) -> str:
    """A UUID, as Brevo requires, the same whenever the same call is made again: derived from
    the batch key (kept in the ledger across a crash) and the template."""
    first = batch[0]
    template = first.message.provider_template
    name = f"{first.batch_key or first.idempotency_key}/{template.template_id if template else ''}"
    return str(uuid.uuid5(_KEY_NAMESPACE, name))


def _by_template(batch: Sequence[OutgoingEmail]) -> dict[str, list[OutgoingEmail]]:
    groups: dict[str, list[OutgoingEmail]] = {}
    for email_ in batch:
        template = email_.message.provider_template
        groups.setdefault(template.template_id if template else "", []).append(email_)
    return groups


def _version(email_: OutgoingEmail) -> dict[str, Any]:
    message = email_.message
    headers = {k: v for k, v in message.extra_headers().items() if k != "Message-ID"}
    version: dict[str, Any] = {
        "to": [_person(message.recipient.addr_spec, message.recipient_name)],
        "headers": {**headers, "X-Mailin-custom": email_.request_id},
    }
    if message.provider_template is not None:
        version["params"] = message.provider_template.data
    else:
        version.update(_parts(message))
    return version


def _parts(message: SurveyEmail) -> dict[str, str]:
    return {"subject": message.subject, "htmlContent": message.html, "textContent": message.text}


def _person(email: str, name: str) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _code(response: httpx.Response) -> str | None:
    code = _json(response).get("code")
    return code if isinstance(code, str) else None


def _has_email(contact: Any) -> bool:
    return isinstance(contact, dict) and isinstance(contact.get("email"), str)


def _blocked(contact: dict[str, Any]) -> Suppressed:
    reason = contact.get("reason")
    code = reason.get("code") if isinstance(reason, dict) else None
    return Suppressed(contact["email"], f"blocked at Brevo ({code or 'no reason given'})")


Adapter: AdapterClass = BrevoProvider  # what surveysync.providers finds for this kind
