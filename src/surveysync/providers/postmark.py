"""The ``postmark`` provider: Postmark's batch email API, with or without stored templates.

The shapes followed (postmarkapp.com/developer/api/overview, …/api/email-api,
…/user-guide/send-email-with-api/batch-emails, …/api/templates-api, …/api/suppressions-api,
…/api/server-api)::

    POST {base_url}/email/batch                 X-Postmark-Server-Token: <server token>
    [{"From", "To", "ReplyTo", "Subject", "TextBody", "HtmlBody",
      "Headers": [{"Name", "Value"}], "Metadata": {"request_id"}, "MessageStream"}]
    POST {base_url}/email/batchWithTemplates    (a provider template is set)
    {"Messages": [{… "TemplateId" (a number) | "TemplateAlias", "TemplateModel"}]}
    200 [{"ErrorCode", "Message", "MessageID", "SubmittedAt", "To"}]   one per message, in order

A 200 says nothing about each message; its ``ErrorCode`` does, and is always read::

    0                                     sent
    100 maintenance, 429 rate limit       pending: sent again by a later run
    10 token, 400/401 sender signature,   the server or account cannot send now (nobody's
    405 not allowed, 412 pending,         fault but the operator's): the rest of the batch
    413 may not send, 1101 no template    waits as pending and the run stops, in plain words
    any other (300 invalid request,       rejected, with Postmark's words
    406 inactive recipient, …)

Up to 500 messages a call. Postmark has no idempotency keys: a call whose answer is lost
leaves its messages in doubt (decided in ``http``), and after a crash ``sync.in_doubt``
decides. A batch mixing surveys with and without a template goes as two calls.

Suppressions: ``GET /message-streams/{stream}/suppressions/dump?fromdate=`` with the day of
the newest suppression seen before (Postmark filters by day, inclusive: that day is read
again, which the ledger shrugs off). ``check`` reads ``GET /server`` and names the server.

Never logs the server token or a full address (every provider message is scrubbed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from email.headerregistry import Address
from typing import Any, Self
from urllib.parse import quote

import httpx

from surveysync.config import HttpSettings, PostmarkSettings, ProviderSettings
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

MAX_BATCH = 500
TOKEN_HEADER = "X-Postmark-Server-Token"
TEMPORARY_CODES = frozenset({100, 429})
INACTIVE_RECIPIENT = 406  # the address bounced hard, complained or was suppressed
# The server, account or configuration cannot send, whoever the message is for.
SERVER_CODES = frozenset({10, 400, 401, 405, 412, 413, 1101})


class PostmarkProvider(HttpProvider):
    name = "postmark"
    honours_idempotency_key = False
    renders_templates = True  # a provider template's call carries its data, no body

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> Self:
        return cls(settings.postmark, settings.http, batch_size=settings.batch_size)

    def __init__(
        self,
        settings: PostmarkSettings,
        http: HttpSettings,
        *,
        batch_size: int = 500,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        assert settings.api_key is not None, "checked by the settings"
        self.base_url = settings.base_url
        self.stream = settings.message_stream
        self._token = settings.api_key.get_secret_value()
        self.max_batch_size = min(batch_size, MAX_BATCH)
        super().__init__(http, [self._token], client=client, clock=clock, sleep=sleep)

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        """Templated and plain surveys as one call each; when Postmark is lost (or the
        server cannot send), what the earlier call settled is kept."""
        results: list[SendResult] = []
        templated = [e for e in batch if e.message.provider_template is not None]
        plain = [e for e in batch if e.message.provider_template is None]
        for call in (templated, plain):
            if not call:
                continue
            try:
                results += super().send(call)
            except ProviderUnavailable as exc:
                raise ProviderUnavailable(str(exc), [*results, *exc.results]) from exc
        return results

    def build_send(self, batch: Sequence[OutgoingEmail]) -> httpx.Request:
        messages = [self._message(e) for e in batch]
        if batch[0].message.provider_template is not None:
            return self._post("/email/batchWithTemplates", {"Messages": messages})
        return self._post("/email/batch", messages)

    def read_results(
        self, batch: Sequence[OutgoingEmail], response: httpx.Response
    ) -> list[SendResult]:
        answers = _answers(response)
        results: list[SendResult] = []
        refusal: str | None = None
        for index, email_ in enumerate(batch):
            answer = answers[index] if index < len(answers) else None
            if answer is None:
                results.append(
                    SendResult(
                        email_.request_id, RequestStatus.IN_DOUBT, error="postmark gave no result"
                    )
                )
                continue
            code, words = _code(answer), self.caller.scrub(str(answer.get("Message") or ""))
            if code in SERVER_CODES:
                refusal = refusal or f"ErrorCode {code}: {words}"
                continue
            results.append(_result(email_.request_id, code, words, answer.get("MessageID")))
        if refusal is not None:
            raise ProviderUnavailable(
                f"postmark cannot send from this server now ({refusal}); the surveys wait "
                "for the next run",
                results,
            )
        return results

    def account_problem(self, response: httpx.Response) -> str | None:
        """A 422 whose ErrorCode is about the server or account (405: may not send) rejects
        nobody: the surveys wait for the operator to fix the account."""
        try:
            answer = response.json()
        except ValueError:
            return None
        code = _code(answer) if isinstance(answer, dict) else None
        if code not in SERVER_CODES:
            return None
        words = self.caller.scrub(str(answer.get("Message") or ""))
        return (
            f"postmark cannot send from this server now (ErrorCode {code}: {words}); the "
            "surveys wait for the next run"
        )

    def build_check(self) -> httpx.Request:
        return self.client.build_request("GET", f"{self.base_url}/server", headers=self._auth())

    def describe_check(self, response: httpx.Response) -> str:
        server = _json(response, "the server")
        name = server.get("Name") if isinstance(server, dict) else None
        if not name:
            raise ProviderError("postmark described the server in an unknown shape")
        return f"server {name!r} accepted the token; surveys go to stream {self.stream!r}"

    def fetch_suppressions(self, cursor: str | None) -> tuple[list[Suppressed], str | None]:
        params = {"fromdate": cursor} if cursor else {}
        stream = quote(self.stream, safe="")
        request = self.client.build_request(
            "GET",
            f"{self.base_url}/message-streams/{stream}/suppressions/dump",
            params=params,
            headers=self._auth(),
        )
        items = _suppressions(self.read_list(request, "the suppressions"))
        found = [
            Suppressed(str(i["EmailAddress"]), f"{i.get('SuppressionReason')} at Postmark")
            for i in items
        ]
        days = [str(i["CreatedAt"])[:10] for i in items if i.get("CreatedAt")]
        return found, max(days, default=cursor)

    def _message(self, email_: OutgoingEmail) -> dict[str, Any]:
        message = email_.message
        recipient = message.recipient
        to = Address(message.recipient_name, recipient.local_part, recipient.domain)
        fields: dict[str, Any] = {
            "From": str(message.sender),
            "To": str(to),
            "Headers": [{"Name": k, "Value": v} for k, v in message.extra_headers().items()],
            "Metadata": {"request_id": email_.request_id},
            "MessageStream": self.stream,
        }
        if message.reply_to:
            fields["ReplyTo"] = message.reply_to
        template = message.provider_template
        if template is None:
            fields |= {"Subject": message.subject, "TextBody": message.text}
            fields["HtmlBody"] = message.html
        elif template.template_id.isdigit():
            fields |= {"TemplateId": int(template.template_id), "TemplateModel": template.data}
        else:
            fields |= {"TemplateAlias": template.template_id, "TemplateModel": template.data}
        return fields

    def _post(self, path: str, body: Any) -> httpx.Request:
        return self.client.build_request(
            "POST",
            f"{self.base_url}{path}",
            content=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers={**self._auth(), "Content-Type": "application/json"},
        )

    def _auth(self) -> dict[str, str]:
        return {TOKEN_HEADER: self._token, "Accept": "application/json"}


def _result(request_id: str, code: int | None, words: str, message_id: Any) -> SendResult:
    if code is None:  # taken, perhaps: nothing says otherwise
        return SendResult(
            request_id, RequestStatus.IN_DOUBT, error=f"no ErrorCode in the result: {words}"
        )
    if code == 0:
        return SendResult(request_id, RequestStatus.SENT, str(message_id) if message_id else None)
    status = RequestStatus.PENDING if code in TEMPORARY_CODES else RequestStatus.REJECTED
    error = f"ErrorCode {code}: {words}"
    return SendResult(request_id, status, error=error, address_refused=code == INACTIVE_RECIPIENT)


def _code(answer: dict[str, Any]) -> int | None:
    code = answer.get("ErrorCode")
    return code if isinstance(code, int) else None


def _answers(response: httpx.Response) -> list[dict[str, Any] | None]:
    """The per-message results, in order; an entry that is not one is None (in doubt)."""
    try:
        data = response.json()
    except ValueError:
        return []
    if not isinstance(data, list):
        return []
    return [a if isinstance(a, dict) else None for a in data]


def _suppressions(response: httpx.Response) -> list[dict[str, Any]]:
    data = _json(response, "the suppressions")
    items = data.get("Suppressions") if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and i.get("EmailAddress") for i in items
    ):
        raise ProviderError("postmark listed the suppressions in an unknown shape")
    return items


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProviderError(f"postmark answered {what} with something other than JSON") from None


Adapter: AdapterClass = PostmarkProvider  # what surveysync.providers finds for this kind
