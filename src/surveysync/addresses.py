"""Which email addresses surveysync accepts, and the exact form a message is sent to.

One function, ``accept``, decides for every stage: the rules (``invalid_email``), the
renderer (the ``To`` header and the SMTP envelope) and the configuration (``from_address``).
An address is accepted only as it is written; nothing is trimmed or repaired on the way:

    " kim@example.com"         refused: surrounding spaces, CR or LF are not part of an address
    "=?utf-8?b?…?=@example.com" refused: Python's email package decodes RFC 2047 words in a
                               local part, so this would be another address (or a header)
                               by the time a message is written
    "Kim@Bücher.Example"       accepted; sent to ``Kim@xn--bcher-kva.example`` (IDNA), matched
                               as ``kim@bücher.example``

Syntax is checked with email-validator (no DNS). Pure: no I/O, imports nothing of surveysync.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from email_validator import ValidatedEmail

# Parts of a header that a mail parser reads as something else than the text itself.
_ENCODED_WORD_MARKS = ("=?", "?=")
_LOCAL_PART_OCTETS = 64  # RFC 5321 4.5.3.1.1; mail servers refuse longer ones
# The common address, in plain ASCII: dot-separated words of letters, digits, _ + - before
# the @; after it, host labels and a top-level domain of letters. email-validator accepts
# every such address as written (domain in lower case), so it is decided without it.
_PLAIN = re.compile(
    r"([A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_PLAIN_LIMIT = 200  # longer ones take the full check (its length rules)


class InvalidAddress(ValueError):
    """The text is not an address surveysync sends to; the message says why, without it."""


@dataclass(frozen=True, slots=True)
class AcceptedAddress:
    """An address that passed ``accept``: how it is sent and how people are matched by it."""

    local_part: str  # as written (Unicode NFC), case kept
    ascii_domain: str  # IDNA (xn--…), lower case
    matched_as: str  # NFC, lower case, Unicode domain: what the ledger's person key hashes

    @property
    def addr_spec(self) -> str:
        """Exactly what the ``To`` header and the SMTP ``RCPT TO`` carry."""
        return f"{self.local_part}@{self.ascii_domain}"


def accept(raw: str) -> AcceptedAddress:
    """The address ``raw`` names, or InvalidAddress."""
    return accept_plain(raw) or accept_parsed(raw)


def accept_parsed(raw: str) -> AcceptedAddress:
    """``accept`` by email-validator's full parse, for any address."""
    if not raw or raw != raw.strip():
        raise InvalidAddress("the address has spaces or line breaks around it")
    if any(_is_control_or_space(char) for char in raw):
        raise InvalidAddress("the address holds a space or a control character")
    text = unicodedata.normalize("NFC", raw)
    if any(mark in text for mark in _ENCODED_WORD_MARKS):
        raise InvalidAddress("the address holds an RFC 2047 encoded word (=?…?=)")
    from email_validator import EmailNotValidError  # see validate_email

    try:
        valid = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    if len(valid.local_part.encode("utf-8")) > _LOCAL_PART_OCTETS:
        raise InvalidAddress(f"the part before the @-sign is over {_LOCAL_PART_OCTETS} bytes")
    if valid.ascii_domain is None:  # email-validator always sets it for a domain name
        raise InvalidAddress("the domain has no ASCII form")
    return AcceptedAddress(valid.local_part, valid.ascii_domain, valid.normalized.lower())


def accept_plain(raw: str) -> AcceptedAddress | None:
    """``raw`` accepted without email-validator's full parse (some 30 µs), when it is the
    common plain ASCII address; None: let the full check decide (a test holds it to
    ``accept_parsed``'s answers). Not plain: an ``xn--`` label or any other ``--`` in the
    domain (IDNA rules), a special-use top-level domain (``.local``, ``.test``...), a long
    address."""
    if len(raw) > _PLAIN_LIMIT:
        return None
    match = _PLAIN.fullmatch(raw)
    if match is None or len(match[1]) > _LOCAL_PART_OCTETS or "--" in match[2]:
        return None
    domain = match[2].lower()
    if domain.rsplit(".", 1)[1] in _special_use_domains():
        return None
    return AcceptedAddress(match[1], domain, raw.lower())


def validate_email(text: str, **options: Any) -> ValidatedEmail:
    """email-validator's full parse. Imported on first use: its regular expressions take
    25 ms to compile, which every command would pay at start-up, and most never parse an
    address this way."""
    from email_validator import validate_email as parse

    return parse(text, **options)


@cache
def _special_use_domains() -> frozenset[str]:
    import email_validator

    return frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _is_control_or_space(char: str) -> bool:
    return unicodedata.category(char)[0] in ("C", "Z")
