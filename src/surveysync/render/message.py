"""One rendered survey email and its RFC 5322 form: addresses, headers, MIME parts.

Customer data only ever reaches a message as template variables (autoescaped in HTML) or
as header values cleaned of control characters and written by ``render.headers`` (quoted or
encoded, never parsed again); the address is the one ``surveysync.addresses`` accepted, as it
is. Nothing a POS record holds can add a header, a recipient, or change the MIME structure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.utils import format_datetime
from typing import Any

from surveysync.addresses import AcceptedAddress, InvalidAddress, accept
from surveysync.render import headers, mime

# Control characters, line and paragraph separators, and the bidirectional overrides and
# isolates (which can make "gpj.exe" read as "exe.jpg"): never part of a one-line value.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
_SPACES = re.compile(r"\s+")
_MAX_NAME = 100
# Headers we build from ASCII parts only, written verbatim on one line (well under 998
# characters). Folded at 78 columns, a long URL would need RFC 2047 words, which mail
# clients ignore; and a header nobody refolds keeps a DKIM signature valid even under
# "simple" canonicalization. Every other header is folded by ``render.headers.fold``.
_VERBATIM = frozenset({"Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"})


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
    """The address as it must appear in the To header and the SMTP envelope: the one the
    rules accepted, as written (``surveysync.addresses.accept``, the same check).

    An internationalized domain becomes its ASCII (IDNA) form, which every server accepts;
    a non-ASCII local part has no ASCII form, so it stays UTF-8 and needs SMTPUTF8.
    """
    try:
        valid = accept(address)
    except InvalidAddress as exc:
        raise RenderError(f"unusable address: {exc}") from None
    return recipient(valid)


def recipient(address: AcceptedAddress) -> Recipient:
    """Where an accepted address is sent: as written before the @, the domain in IDNA."""
    return Recipient(address.local_part, address.ascii_domain)


def clean_text(value: Any, limit: int = _MAX_NAME) -> str:
    """One line of inert text: control characters become spaces, runs of spaces one space,
    length is bounded, and "=?" is broken up so that a name can never be read as an RFC 2047
    encoded word, wherever it is shown."""
    if value is None:
        return ""
    text = _SPACES.sub(" ", _CONTROL.sub(" ", str(value))).replace("=?", "= ?")
    return text.strip()[:limit].rstrip()


@dataclass(frozen=True, slots=True)
class ProviderTemplate:
    """A template stored at the provider (SendGrid dynamic template, Postmark, Mailgun, Brevo)
    and the data to fill it: the same names, store and links the local templates get."""

    template_id: str
    data: dict[str, Any]  # JSON-ready: strings, ints, lists and dicts only


@dataclass(frozen=True, slots=True)
class SurveyEmail:
    """One rendered survey request: what every provider needs, before any wire format.

    HTTP providers send its parts as JSON; ``to_bytes`` writes the RFC 5322 message for the
    outbox and SMTP, only for the providers that need it.
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
    # None only for an internal email (a store manager's alert), which has no unsubscribe
    # link and so no List-Unsubscribe headers.
    unsubscribe_url: str | None
    unsubscribe_mailto: str | None
    # Set when the provider renders on its side: its template id and the same data.
    provider_template: ProviderTemplate | None = None

    @property
    def to_header(self) -> str:
        """The To value, unfolded: the display name quoted or encoded, then exactly the
        accepted address (for providers that take a formatted mailbox)."""
        return headers.mailbox(self.recipient_name, self.recipient.addr_spec)

    @property
    def message_id(self) -> str:
        return f"<{self.request_id}@{self.sender.domain}>"

    def extra_headers(self) -> dict[str, str]:
        """The headers beyond From/To/Subject/Date that every provider must pass on."""
        headers = {"Message-ID": self.message_id}
        if self.unsubscribe_url and self.unsubscribe_mailto:
            headers["List-Unsubscribe"] = f"<{self.unsubscribe_url}>, <{self.unsubscribe_mailto}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        headers["Content-Language"] = self.locale
        headers["X-Surveysync-Request"] = self.request_id
        return headers

    def header_fields(self) -> list[tuple[str, str]]:
        """Every header above the MIME ones, in the order written, values unfolded."""
        fields = [
            ("From", headers.mailbox(self.sender.display_name, self.sender.addr_spec)),
            ("To", self.to_header),
        ]
        if self.reply_to:
            fields.append(("Reply-To", headers.mailbox("", self.reply_to)))
        fields.append(("Subject", headers.unstructured(self.subject)))
        fields.append(("Date", format_datetime(self.date)))
        for name, value in self.extra_headers().items():
            fields.append((name, value if name in _VERBATIM else headers.unstructured(value)))
        return fields

    def to_bytes(self) -> bytes:
        """The RFC 5322 message (``render.mime``): text and HTML alternatives,
        quoted-printable, CRLF line ends."""
        head = "".join(_header_lines(name, value) for name, value in self.header_fields())
        return mime.message_bytes(head, self.text, self.html)


def _header_lines(name: str, value: str) -> str:
    if name not in _VERBATIM:
        return headers.fold(name, value, "\r\n")
    if "\r" in value or "\n" in value:
        raise ValueError(f"a line break in the {name} header")
    return f"{name}: {value}\r\n"
