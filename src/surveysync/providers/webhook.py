"""The ``webhook`` provider: each batch is POSTed as signed JSON to a URL of the store's own.

For stores whose mail goes out through a system of their own (a CRM, a marketing tool, a
small service). The contract, also in the README:

    POST <provider.webhook.url>
    Content-Type: application/json
    Idempotency-Key: <the same for the same batch, also when it is sent again after a crash>
    X-Surveysync-Timestamp: <Unix seconds>
    X-Surveysync-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

    {"type": "survey_requests", "messages": [{"request_id", "to", "to_name", "from",
      "reply_to", "subject", "text", "html", "locale", "headers", "template"}]}

A 2xx answer means every message was taken, unless its JSON names results:
``{"results": [{"request_id", "status": "sent" | "rejected", "id", "error"}]}``. The
receiver should drop a repeated Idempotency-Key, which makes this provider idempotent.
``check`` POSTs a signed ``{"type": "ping"}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

import httpx

from surveysync.config import HttpSettings, ProviderSettings, WebhookSettings
from surveysync.model import RequestStatus
from surveysync.providers.base import AdapterClass, OutgoingEmail, SendResult
from surveysync.providers.http import HttpProvider

SIGNATURE_HEADER = "X-Surveysync-Signature"
TIMESTAMP_HEADER = "X-Surveysync-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """What the receiver recomputes: ``v1=`` and the HMAC-SHA256 of ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b".", hashlib.sha256)
    mac.update(body)  # not concatenated: a batch's body is megabytes
    return "v1=" + mac.hexdigest()


class WebhookProvider(HttpProvider):
    name = "webhook"
    honours_idempotency_key = True

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> Self:
        return cls(settings.webhook, settings.http, batch_size=settings.batch_size)

    def __init__(
        self,
        settings: WebhookSettings,
        http: HttpSettings,
        *,
        batch_size: int = 500,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        assert settings.url and settings.secret, "checked by the settings"
        self.url = settings.url
        self._secret = settings.secret.get_secret_value()
        self._wall_clock = wall_clock
        self.max_batch_size = batch_size
        super().__init__(http, [self._secret], client=client, clock=clock, sleep=sleep)

    def build_send(self, batch: Sequence[OutgoingEmail]) -> httpx.Request:
        # The JSON of {"type": "survey_requests", "messages": [...]}, one message at a time:
        # the text of a whole batch at once is megabytes, four bytes a character when one
        # name in it has an emoji.
        parts = [b'{"type":"survey_requests","messages":[']
        for n, email_ in enumerate(batch):
            parts += [b"," if n else b"", _json(_message(email_))]
        data = b"".join([*parts, b"]}"])
        return self._signed_bytes(
            data, idempotency_key=batch[0].batch_key or batch[0].idempotency_key
        )

    def read_results(
        self, batch: Sequence[OutgoingEmail], response: httpx.Response
    ) -> list[SendResult]:
        named = _named_results(response)
        results = []
        for email_ in batch:
            answer = named.get(email_.request_id, {})
            status = (
                RequestStatus.REJECTED if answer.get("status") == "rejected" else RequestStatus.SENT
            )
            error = self.caller.scrub(str(answer["error"])) if answer.get("error") else None
            results.append(SendResult(email_.request_id, status, answer.get("id"), error))
        return results

    def build_check(self) -> httpx.Request:
        return self._signed({"type": "ping"}, idempotency_key=None)

    def describe_check(self, response: httpx.Response) -> str:
        return f"{self.url} accepted a signed ping (HTTP {response.status_code})"

    def _signed(self, body: dict[str, Any], idempotency_key: str | None) -> httpx.Request:
        return self._signed_bytes(_json(body), idempotency_key)

    def _signed_bytes(self, data: bytes, idempotency_key: str | None) -> httpx.Request:
        timestamp = str(int(self._wall_clock()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self._secret, timestamp, data),
        }
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self.client.build_request("POST", self.url, content=data, headers=headers)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _message(email_: OutgoingEmail) -> dict[str, Any]:
    message = email_.message
    template = message.provider_template
    return {
        "request_id": email_.request_id,
        "to": message.recipient.addr_spec,
        "to_name": message.recipient_name,
        "from": str(message.sender),
        "reply_to": message.reply_to,
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "locale": message.locale,
        "headers": message.extra_headers(),
        "template": None
        if template is None
        else {"id": template.template_id, "data": template.data},
    }


def _named_results(response: httpx.Response) -> dict[str, dict[str, Any]]:
    try:
        data = response.json()
    except ValueError:
        return {}
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        return {}
    return {str(r["request_id"]): r for r in results if isinstance(r, dict) and "request_id" in r}


Adapter: AdapterClass = WebhookProvider  # what surveysync.providers finds for this kind
