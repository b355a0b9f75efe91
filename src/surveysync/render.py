"""The survey email: subject, plain text and HTML, score links, unsubscribe headers.

Customer data only ever reaches a message as template variables (autoescaped in HTML) or
as header values cleaned of control characters; nothing a POS record holds can add a header
or change the MIME structure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import cached_property
from typing import Any

from email_validator import EmailNotValidError, validate_email
from itsdangerous import URLSafeTimedSerializer
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from surveysync.config import EmailSettings, StoreSettings

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_MAX_NAME = 100
LINK_SALT = "surveysync-link"
# Long structured headers (List-Unsubscribe) must stay plain ASCII on one line: folding them
# at 78 columns makes the library encode them as RFC 2047 words, which mail clients ignore.
MESSAGE_POLICY = policy.SMTP.clone(max_line_length=998)
# An address whose local part is not ASCII (jürgen@…) cannot be written in an ASCII header at
# all; such a message is written as UTF-8 (RFC 6532) and must travel with SMTPUTF8.
SMTPUTF8_POLICY = MESSAGE_POLICY.clone(utf8=True)


class RenderError(ValueError):
    """This request cannot be turned into an email (for example an unusable address)."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """Where a message goes, in the form a mail server accepts."""

    local_part: str  # as the customer wrote it (case kept, NFC)
    domain: str  # in IDNA (xn--…)

    @property
    def addr_spec(self) -> str:
        return f"{self.local_part}@{self.domain}"

    @property
    def needs_smtputf8(self) -> bool:
        return not self.local_part.isascii()


def deliverable(address: str) -> Recipient:
    """The address as it must appear in the To header and the SMTP envelope.

    An internationalized domain becomes its ASCII (IDNA) form, which every server accepts;
    a non-ASCII local part has no ASCII form, so it stays UTF-8 and needs SMTPUTF8.
    """
    try:
        valid = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise RenderError(f"unusable address: {exc}") from None
    return Recipient(valid.local_part, valid.ascii_domain)


@dataclass(frozen=True, slots=True)
class ScoreLink:
    score: int
    url: str


def clean_text(value: Any, limit: int = _MAX_NAME) -> str:
    """One line of inert text: control characters become spaces, length is bounded."""
    if value is None:
        return ""
    return _CONTROL.sub(" ", str(value)).strip()[:limit]


class Renderer:
    def __init__(self, store: StoreSettings, email: EmailSettings) -> None:
        self._store = store
        self._email = email
        self._env = Environment(
            loader=PackageLoader("surveysync", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            auto_reload=False,  # templates do not change under a run; no stat() per email
        )
        self._signer = URLSafeTimedSerializer(email.link_secret.get_secret_value(), salt=LINK_SALT)

    @cached_property
    def locales(self) -> frozenset[str]:
        names = self._env.list_templates(filter_func=lambda n: n.endswith("subject.txt"))
        return frozenset(name.split("/")[0] for name in names)

    def locale_for(self, language: str | None) -> str:
        for candidate in (language, self._store.default_locale, "en"):
            if candidate and candidate in self.locales:
                return candidate
        raise RenderError("no template locale available")

    def render(
        self, request_id: str, email: str, payload: dict[str, Any], now: datetime
    ) -> SurveyEmail:
        """The survey email for one request, in the customer's language."""
        context = self._context(request_id, payload)
        locale = self.locale_for(payload.get("language"))
        return SurveyEmail(
            request_id=request_id,
            sender=self._sender,
            reply_to=self._email.reply_to,
            recipient=deliverable(email),
            recipient_name=_full_name(payload),
            subject=clean_text(self._render(locale, "subject.txt", context), 200),
            text=self._render(locale, "body.txt", context),
            html=self._render(locale, "body.html", context),
            locale=locale,
            date=now,
            unsubscribe_url=context["unsubscribe_url"],
            unsubscribe_mailto=(
                f"mailto:{self._email.unsubscribe_mailto}?subject=unsubscribe-{request_id}"
            ),
        )

    @cached_property
    def _sender(self) -> Address:
        return _address(self._email.from_name, self._email.from_address)

    def _context(self, request_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        token = self._signer.dumps(request_id)
        base = self._email.survey_base_url.rstrip("/")
        return {
            "first_name": clean_text(payload.get("first_name")),
            "store_name": clean_text(self._store.name),
            "location_name": clean_text(payload.get("location_name")),
            "score_links": [ScoreLink(n, f"{base}/{token}?score={n}") for n in range(11)],
            "unsubscribe_url": f"{self._email.unsubscribe_base_url.rstrip('/')}/{token}",
        }

    def _render(self, locale: str, name: str, context: dict[str, Any]) -> str:
        return self._env.get_template(f"{locale}/{name}").render(context)


@dataclass(frozen=True, slots=True)
class SurveyEmail:
    """One rendered survey request: what every provider needs, before any wire format.

    HTTP providers send its parts as JSON; ``to_mime`` builds the RFC 5322 message for the
    outbox and SMTP. Building MIME costs some twenty times more than rendering, so it is only
    done by the providers that need it.
    """

    request_id: str
    sender: Address
    reply_to: str | None
    recipient: Recipient
    recipient_name: str  # cleaned: one line, bounded
    subject: str  # cleaned: one line, bounded
    text: str
    html: str
    locale: str
    date: datetime
    unsubscribe_url: str
    unsubscribe_mailto: str

    @property
    def message_id(self) -> str:
        return f"<{self.request_id}@{self.sender.domain}>"

    def extra_headers(self) -> dict[str, str]:
        """The headers beyond From/To/Subject/Date that every provider must pass on."""
        return {
            "Message-ID": self.message_id,
            "List-Unsubscribe": f"<{self.unsubscribe_url}>, <{self.unsubscribe_mailto}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Content-Language": self.locale,
            "X-Surveysync-Request": self.request_id,
        }

    def to_mime(self) -> EmailMessage:
        """The RFC 5322 message: text and HTML alternatives, quoted-printable."""
        smtputf8 = self.recipient.needs_smtputf8
        message = EmailMessage(policy=SMTPUTF8_POLICY if smtputf8 else MESSAGE_POLICY)
        message["From"] = self.sender
        # Built from its parts: the header parser refuses a non-ASCII local part as addr_spec.
        message["To"] = Address(
            self.recipient_name, self.recipient.local_part, self.recipient.domain
        )
        if self.reply_to:
            message["Reply-To"] = self.reply_to
        message["Subject"] = self.subject
        message["Date"] = format_datetime(self.date)
        message.set_content(self.text, cte="quoted-printable")
        message.add_alternative(self.html, subtype="html", cte="quoted-printable")
        # After the body: set_content drops, and add_alternative moves into the first part,
        # every Content-* header already there (Content-Language would be lost).
        for name, value in self.extra_headers().items():
            message[name] = value
        return message


def _full_name(payload: dict[str, Any]) -> str:
    parts = (clean_text(payload.get("first_name")), clean_text(payload.get("last_name")))
    return " ".join(p for p in parts if p)


def _address(display_name: str, addr_spec: str) -> Address:
    try:
        return Address(display_name=clean_text(display_name), addr_spec=addr_spec)
    except (ValueError, IndexError) as exc:
        raise RenderError(f"unusable address: {exc}") from None
