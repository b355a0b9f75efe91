"""The ``sendgrid`` provider: Twilio SendGrid's v3 Mail Send API.

The shapes followed (twilio.com/docs/sendgrid/api-reference/mail-send, …/personalizations,
…/substitution-tags, …/retrieve-all-global-suppressions, and ``/mail/send`` in
../shared/specs/sendgrid-v3-openapi.json, which the tests hold every body against)::

    POST {base_url}/v3/mail/send                Authorization: Bearer <api key>
    {"from", "reply_to", "subject", "content": [text/plain, text/html], "template_id"?,
     "personalizations": [{"to": [{"email", "name"}], "subject", "headers",
                           "custom_args": {"request_id"},
                           "substitutions" | "dynamic_template_data"}]}
    202, no body; X-Message-Id names the call, not each message

One survey is one personalization, at most 1,000 to a call. Every survey has its own
subject, text, HTML and List-Unsubscribe (each person's links are signed for them), but
``content`` is shared by the call. Subject and headers are personalization fields; for the
two parts SendGrid documents substitutions: the shared content is two tags, and each
personalization substitutes its own text and HTML for them. The spec limits a
personalization's substitutions to 10,000 bytes (the substitution-tags page says 50,000;
the smaller one holds). A survey whose parts do not fit, or that holds one of the tags,
goes in a call of its own with its parts as plain content; so does a survey sent alone.

With a provider template the call names ``template_id`` and each personalization carries
``dynamic_template_data``; a call holds one template, so a batch is split per template.
The spec requires ``subject`` and ``content`` even then, and the docs say a template
replaces both: the call sends its first subject and a one-line stand-in.

SendGrid has no idempotency keys: a call whose answer is lost leaves its surveys in doubt
(decided in ``http``), and after a crash ``sync.in_doubt`` decides. A 400 names a field,
not a result per survey: ``http`` sends each survey of that call alone to find the one.

Suppressions: the global unsubscribes, from ``start_time`` = the newest ``created`` seen
before (inclusive: that second is read again, which the ledger shrugs off) to now, paged
by ``limit``/``offset``. ``check`` reads ``/v3/scopes`` and says plainly when the key may
not send (``mail.send``) or not read unsubscribes.

Never logs the API key or a full address (every provider message is scrubbed).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

import httpx

from surveysync.config import HttpSettings, ProviderSettings, SendGridSettings
from surveysync.model import RequestStatus
from surveysync.providers.base import (
    AdapterClass,
    OutgoingEmail,
    ProviderError,
    ProviderUnavailable,
    SendResult,
    Suppressed,
)
from surveysync.providers.http import HttpProvider
from surveysync.render import SurveyEmail

MAX_PERSONALIZATIONS = 1_000
SUBSTITUTIONS_LIMIT = 10_000  # bytes per personalization, as the spec says
TEXT_TAG = "[%surveysync_text%]"
HTML_TAG = "[%surveysync_html%]"
TEMPLATE_STAND_IN = "This message is rendered by its SendGrid template."
SEND_SCOPE = "mail.send"
UNSUBSCRIBES_SCOPE = "suppression.unsubscribes.read"
PAGE_SIZE = 500


class SendGridProvider(HttpProvider):
    name = "sendgrid"
    honours_idempotency_key = False
    renders_templates = True  # a provider template's call carries its data, no body

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> Self:
        return cls(settings.sendgrid, settings.http, batch_size=settings.batch_size)

    def __init__(
        self,
        settings: SendGridSettings,
        http: HttpSettings,
        *,
        batch_size: int = 500,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        assert settings.api_key is not None, "checked by the settings"
        self.base_url = settings.base_url
        self._key = settings.api_key.get_secret_value()
        self._wall_clock = wall_clock
        self.max_batch_size = min(batch_size, MAX_PERSONALIZATIONS)
        super().__init__(http, [self._key], client=client, clock=clock, sleep=sleep)

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        """The batch as the calls it needs (see the module docstring), one after another;
        when SendGrid is lost, what the earlier calls settled is kept."""
        results: list[SendResult] = []
        for call in calls(batch):
            try:
                results += super().send(call)
            except ProviderUnavailable as exc:
                raise ProviderUnavailable(str(exc), [*results, *exc.results]) from exc
        return results

    def build_send(self, batch: Sequence[OutgoingEmail]) -> httpx.Request:
        data = json.dumps(mail_body(batch), ensure_ascii=False).encode("utf-8")
        return self.client.build_request(
            "POST",
            f"{self.base_url}/v3/mail/send",
            content=data,
            headers={**self._auth(), "Content-Type": "application/json"},
        )

    def read_results(
        self, batch: Sequence[OutgoingEmail], response: httpx.Response
    ) -> list[SendResult]:
        call_id = response.headers.get("x-message-id")
        return [SendResult(e.request_id, RequestStatus.SENT, call_id) for e in batch]

    def build_check(self) -> httpx.Request:
        return self.client.build_request("GET", f"{self.base_url}/v3/scopes", headers=self._auth())

    def describe_check(self, response: httpx.Response) -> str:
        answer = _json(response, "the key's scopes")
        scopes = answer.get("scopes") if isinstance(answer, dict) else None
        if not isinstance(scopes, list):
            raise ProviderError("sendgrid listed the key's scopes in an unknown shape")
        if SEND_SCOPE not in scopes:
            raise ProviderUnavailable(
                f"the SendGrid API key works but lacks the {SEND_SCOPE} permission: it cannot "
                "send email; give it Mail Send access"
            )
        if UNSUBSCRIBES_SCOPE not in scopes:
            return (
                f"the API key may send ({SEND_SCOPE}) but not read unsubscribes "
                f"({UNSUBSCRIBES_SCOPE}), so SendGrid unsubscribes are not synced"
            )
        return f"the API key may send ({SEND_SCOPE}) and read unsubscribes"

    def fetch_suppressions(self, cursor: str | None) -> tuple[list[Suppressed], str | None]:
        since = int(cursor) if cursor and cursor.isdigit() else None
        until = int(self._wall_clock())
        found: list[Suppressed] = []
        newest = since
        for offset in itertools.count(0, PAGE_SIZE):
            page = self._unsubscribes(since, until, offset)
            for item in page:
                found.append(Suppressed(str(item["email"]), "unsubscribed at SendGrid"))
                newest = max(newest or 0, int(item["created"]))
            if len(page) < PAGE_SIZE:
                break
        return found, None if newest is None else str(newest)

    def _unsubscribes(self, since: int | None, until: int, offset: int) -> list[dict[str, Any]]:
        params: dict[str, int] = {"end_time": until, "limit": PAGE_SIZE, "offset": offset}
        if since is not None:
            params["start_time"] = since
        request = self.client.build_request(
            "GET",
            f"{self.base_url}/v3/suppression/unsubscribes",
            params=params,
            headers=self._auth(),
        )
        response = self.read_list(request, "the unsubscribes")
        page = _json(response, "the unsubscribes")
        if not isinstance(page, list) or not all(
            isinstance(i, dict) and "email" in i and "created" in i for i in page
        ):
            raise ProviderError("sendgrid listed the unsubscribes in an unknown shape")
        return page

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"}


def calls(batch: Sequence[OutgoingEmail]) -> list[list[OutgoingEmail]]:
    """One call per template; one for the surveys whose parts fit as substitutions; one for
    each survey that does not."""
    templates: dict[str, list[OutgoingEmail]] = {}
    together: list[OutgoingEmail] = []
    alone: list[list[OutgoingEmail]] = []
    for email_ in batch:
        template = email_.message.provider_template
        if template is not None:
            templates.setdefault(template.template_id, []).append(email_)
        elif substitutable(email_.message):
            together.append(email_)
        else:
            alone.append([email_])
    return [*templates.values(), *([together] if together else []), *alone]


def substitutable(message: SurveyEmail) -> bool:
    """Its parts fit a personalization's substitutions, and no part holds a tag."""
    parts = (message.subject, message.text, message.html)
    if any(tag in part for part in parts for tag in (TEXT_TAG, HTML_TAG)):
        return False
    return len(_encoded(_substitutions(message))) <= SUBSTITUTIONS_LIMIT


def mail_body(batch: Sequence[OutgoingEmail]) -> dict[str, Any]:
    """The Mail Send body for one call (``calls`` made the batch one kind of call)."""
    first = batch[0].message
    template = first.provider_template
    mode = "template" if template else ("plain" if len(batch) == 1 else "substitutions")
    body: dict[str, Any] = {
        "personalizations": [_personalization(e, mode) for e in batch],
        "from": _address(first.sender.addr_spec, first.sender.display_name),
        "subject": first.subject,
        "content": _content(first, mode),
    }
    if first.reply_to:
        body["reply_to"] = {"email": first.reply_to}
    if template is not None:
        body["template_id"] = template.template_id
    return body


def _personalization(email_: OutgoingEmail, mode: str) -> dict[str, Any]:
    message = email_.message
    personalization: dict[str, Any] = {
        "to": [_address(message.recipient.addr_spec, message.recipient_name)],
        "subject": message.subject,
        "headers": message.extra_headers(),
        "custom_args": {"request_id": email_.request_id},
    }
    if mode == "template":
        assert message.provider_template is not None
        personalization["dynamic_template_data"] = message.provider_template.data
    elif mode == "substitutions":
        personalization["substitutions"] = _substitutions(message)
    return personalization


def _content(message: SurveyEmail, mode: str) -> list[dict[str, str]]:
    if mode == "template":
        return [{"type": "text/plain", "value": TEMPLATE_STAND_IN}]
    text, html = (message.text, message.html) if mode == "plain" else (TEXT_TAG, HTML_TAG)
    # text/plain must come first (SendGrid refuses any other order).
    return [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}]


def _substitutions(message: SurveyEmail) -> dict[str, str]:
    return {TEXT_TAG: message.text, HTML_TAG: message.html}


def _address(email: str, name: str) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


def _encoded(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProviderError(f"sendgrid answered {what} with something other than JSON") from None


Adapter: AdapterClass = SendGridProvider  # what surveysync.providers finds for this kind
