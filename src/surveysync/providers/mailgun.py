"""The ``mailgun`` provider: Mailgun's Messages API, one call per survey request.

The calls, as Mailgun documents them (API reference "Messages", "Domains" and
"Suppressions", https://documentation.mailgun.com/docs/mailgun/api-reference/)::

    POST {base}/v3/{domain}/messages        multipart/form-data, basic auth "api:<key>"
        from, to, subject, text, html, h:<Header> (one per header), v:request_id
        or, with a template stored at Mailgun: template, t:variables (JSON), t:text=yes
        200 {"id": "<…@domain>", "message": "Queued. Thank you."}
    GET  {base}/v3/{domain}/unsubscribes?limit=1000
        200 {"items": [{"address", "tags" (or "tag"), "created_at"}],
             "paging": {"first", "next", "previous", "last"}}
    GET  {base}/v3/domains/{domain}          (check) 200 {"domain": {"name", "state"}}

Why one call per request rather than batch sending with ``recipient-variables``: every
survey differs in its subject, text, HTML and in four headers (List-Unsubscribe holds a link
signed for that person; Message-ID and X-Surveysync-Request name the request). Mailgun
documents ``%recipient.x%`` substitution in the message body (API reference: variables "that
can be referenced in the message body") and shows it in the subject (user manual, "Batch
Sending"), but says nothing of ``h:`` headers; the one-click unsubscribe must not rest on
behaviour that is not documented. Carrying each person's whole parts in recipient-variables
would also push a 1,000-recipient call towards the 25 MB limit, which Mailgun enforces on the
uncompressed request. And Mailgun has no idempotency key and answers one id for a whole call:
an answer lost in transit would leave up to 1,000 requests in doubt, where one call per
request leaves one. So ``max_batch_size`` is 1 whatever ``provider.batch_size`` says; the
pace is ``provider.http.max_per_second`` and Mailgun's own 429s, which are honoured.

Suppressions: ``/unsubscribes`` lists addresses in alphabetical order with no date filter
(Mailgun points to the Events API, whose retention depends on the plan, for recent ones), so
no incremental cursor is possible: each run reads the whole list, 1,000 per page, following
``paging.next``; the ledger keeps only the addresses it did not know.

Never: two people in one call; the API key sent anywhere but ``base`` (``paging.next`` is
followed on our own base URL); a 200 without a message id counted as sent (Mailgun answers an
unknown endpoint with a 200 and no id).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from email.headerregistry import Address
from typing import Any, Self
from urllib.parse import quote

import httpx

from surveysync.config import HttpSettings, MailgunSettings, ProviderSettings
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

PAGE_SIZE = 1000  # Mailgun's maximum for suppression lists
MAX_PAGES = 1000  # a million unsubscribes; a list that never ends is an error, not a loop


class MailgunProvider(HttpProvider):
    name = "mailgun"
    max_batch_size = 1  # see the module docstring
    honours_idempotency_key = False
    renders_templates = True  # a provider template's call carries its data, no body

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> Self:
        return cls(settings.mailgun, settings.http)  # one survey a call: no batch size

    def __init__(
        self,
        settings: MailgunSettings,
        http: HttpSettings,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        assert settings.api_key and settings.domain, "checked by the settings"
        key = settings.api_key.get_secret_value()
        credentials = base64.b64encode(f"api:{key}".encode()).decode("ascii")
        self._auth = {"Authorization": f"Basic {credentials}"}
        self.domain = settings.domain
        self.base_url = settings.effective_base_url
        self._where = (
            f"at base_url {self.base_url}"
            if settings.base_url
            else f"in Mailgun's {settings.region.value.upper()} region ({self.base_url})"
        )
        self._domain_path = f"/v3/{quote(self.domain, safe='')}"
        super().__init__(http, [key, credentials], client=client, clock=clock, sleep=sleep)

    # --- sending ----------------------------------------------------------------------------

    def build_send(self, batch: Sequence[OutgoingEmail]) -> httpx.Request:
        assert len(batch) == 1, "Mailgun gets one request per call"
        fields = _fields(batch[0])
        request = self.client.build_request(
            "POST",
            f"{self.base_url}{self._domain_path}/messages",
            files=[(name, (None, value)) for name, value in fields],  # multipart/form-data
            headers=self._auth,
        )
        request.read()  # the same bytes on every retry
        return request

    def read_results(
        self, batch: Sequence[OutgoingEmail], response: httpx.Response
    ) -> list[SendResult]:
        message_id = _json(response).get("id")
        if not isinstance(message_id, str) or not message_id:
            raise ProviderUnavailable(
                f"mailgun answered HTTP {response.status_code} without a message id "
                f"({self.caller.describe(response)}): nothing was sent; "
                "check provider.mailgun.base_url and domain"
            )
        return [SendResult(e.request_id, RequestStatus.SENT, message_id) for e in batch]

    # --- check ------------------------------------------------------------------------------

    def build_check(self) -> httpx.Request:
        path = f"/v3/domains/{quote(self.domain, safe='')}"
        return self.client.build_request("GET", f"{self.base_url}{path}", headers=self._auth)

    def check(self) -> str:
        response = self.caller.call(self.build_check(), idempotent=True)
        if response.status_code == 404:
            raise ProviderUnavailable(
                f"mailgun has no domain {self.domain!r} {self._where} "
                f"({self.caller.describe(response)}): check provider.mailgun.domain, and "
                'provider.mailgun.region ("eu" for a domain in Mailgun\'s EU region)'
            )
        if not response.is_success:
            raise ProviderUnavailable(
                f"mailgun refused the check (HTTP {response.status_code}: "
                f"{self.caller.describe(response)})"
            )
        return self.describe_check(response)

    def describe_check(self, response: httpx.Response) -> str:
        domain = _json(response).get("domain")
        state = domain.get("state", "unknown") if isinstance(domain, dict) else "unknown"
        if state == "disabled":
            raise ProviderUnavailable(f"mailgun domain {self.domain!r} is disabled")
        return f"domain {self.domain} is {state} {self._where}; the API key works"

    # --- suppressions -----------------------------------------------------------------------

    def fetch_suppressions(self, cursor: str | None) -> tuple[list[Suppressed], str | None]:
        """Every address on the domain's unsubscribe list; ``cursor`` is not used (see the
        module docstring), so None is returned and nothing is stored."""
        url = httpx.URL(
            f"{self.base_url}{self._domain_path}/unsubscribes", params={"limit": PAGE_SIZE}
        )
        found: list[Suppressed] = []
        asked: set[str] = set()
        for _ in range(MAX_PAGES):
            asked.add(str(url))
            page = self._page(url)
            items = page.get("items")
            if not isinstance(items, list) or not items:
                return found, None
            found.extend(_unsubscribed(item) for item in items if _has_address(item))
            next_url = self._next_page(page)
            if next_url is None or str(next_url) in asked:
                return found, None
            url = next_url
        raise ProviderUnavailable(f"mailgun's unsubscribe list did not end after {MAX_PAGES} pages")

    def _page(self, url: httpx.URL) -> dict[str, Any]:
        request = self.client.build_request("GET", url, headers=self._auth)
        return _json(self.read_list(request, "the unsubscribes"))

    def _next_page(self, page: dict[str, Any]) -> httpx.URL | None:
        """``paging.next`` on our own base URL; None on the last page (Mailgun: the last page
        is reached when ``next`` equals ``last``)."""
        paging = page.get("paging")
        if not isinstance(paging, dict):
            return None
        following = paging.get("next")
        if not isinstance(following, str) or not following or following == paging.get("last"):
            return None
        path_and_query = httpx.URL(following).raw_path.decode("ascii")
        return httpx.URL(f"{self.base_url}{path_and_query}")


def _fields(email_: OutgoingEmail) -> list[tuple[str, str]]:
    """The form fields of one message, in the names Mailgun documents."""
    message = email_.message
    fields = [
        ("from", str(message.sender)),
        ("to", _recipient(message)),
        ("v:request_id", email_.request_id),
    ]
    if message.reply_to:
        fields.append(("h:Reply-To", message.reply_to))
    fields.extend((f"h:{name}", value) for name, value in message.extra_headers().items())
    template = message.provider_template
    if template is not None:
        fields += [
            ("template", template.template_id),
            ("t:variables", json.dumps(template.data, ensure_ascii=False)),
            ("t:text", "yes"),  # a text part rendered from the template, next to the HTML
        ]
    else:
        fields += [("subject", message.subject), ("text", message.text), ("html", message.html)]
    return fields


def _recipient(message: SurveyEmail) -> str:
    recipient = message.recipient
    return str(Address(message.recipient_name, recipient.local_part, recipient.domain))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _has_address(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("address"), str)


def _unsubscribed(item: dict[str, Any]) -> Suppressed:
    tags = item.get("tags", item.get("tag"))
    named = [tags] if isinstance(tags, str) else tags if isinstance(tags, list) else []
    scope = ", ".join(str(t) for t in named if t != "*")
    return Suppressed(
        item["address"], f"unsubscribed at Mailgun{f' (tags: {scope})' if scope else ''}"
    )


Adapter: AdapterClass = MailgunProvider  # what surveysync.providers finds for this kind
