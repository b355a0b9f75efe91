"""Signed link tokens: which request a score or unsubscribe link belongs to, tamper-evident.

A token is ``<request id>.<action>.<expiry>.<signature>``: the action is a score ``0``–``10``
or ``u`` (unsubscribe), the expiry a Unix time, the signature an HMAC-SHA256 over the rest
with the install's link secret (itsdangerous ``Signer``). Nothing in a token is secret; it is
only unforgeable. Changing any character makes the signature fail.

Pure: no clock reads (``now`` is passed in), no I/O. Whether the request still exists is a
ledger question, answered by ``surveysync.links``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from itsdangerous import BadSignature, Signer
from itsdangerous.encoding import base64_encode, want_bytes

LINK_SALT = "surveysync-link"
UNSUBSCRIBE = "u"
SCORES = range(11)
_VALUE = re.compile(
    r"^(?P<rid>[0-9A-Za-z_-]{1,64})\.(?P<action>10|[0-9]|u)\.(?P<expires>[0-9]{1,12})$"
)


class LinkProblem(StrEnum):
    """Why a link was refused; stable codes for a landing page and for logs."""

    TAMPERED = "tampered"  # not a token we signed (altered, truncated, or another secret)
    EXPIRED = "expired"  # signed by us, but older than email.link_valid_days
    UNKNOWN = "unknown"  # signed by us, but the ledger has no such request


class InvalidLink(ValueError):
    def __init__(self, problem: LinkProblem, detail: str) -> None:
        super().__init__(f"{problem.value}: {detail}")
        self.problem = problem


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a valid token says."""

    request_id: str
    score: int | None  # None for an unsubscribe link
    expires_at: datetime

    @property
    def is_unsubscribe(self) -> bool:
        return self.score is None


class _KeyedOnce(Signer):
    """itsdangerous' ``Signer`` (the same tokens, byte for byte), except that the key is
    derived from the secret once, not for every token: an email has twelve links, a night
    thousands of emails."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret, salt=LINK_SALT, digest_method=hashlib.sha256)
        self._key = super().derive_key()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is None or want_bytes(secret_key) == self.secret_keys[-1]:
            return self._key
        return super().derive_key(secret_key)

    def get_signature(self, value: str | bytes) -> bytes:
        return base64_encode(hmac.digest(self._key, want_bytes(value), "sha256"))

    def sign_text(self, value: str) -> str:
        """``sign(value)`` for ASCII text, without its bytes round trip (an email signs
        twelve): ``<value>.<urlsafe base64 of the HMAC, unpadded>``."""
        digest = hmac.digest(self._key, value.encode("ascii"), "sha256")  # OpenSSL one-shot
        return f"{value}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode('ascii')}"


class LinkSigner:
    def __init__(self, secret: str, valid_for: timedelta) -> None:
        self._signer = _KeyedOnce(secret)
        self._valid_for = valid_for

    def score_token(self, request_id: str, score: int, now: datetime) -> str:
        if score not in SCORES:
            raise ValueError(f"a score is 0 to 10, not {score}")
        return self._sign(request_id, str(score), now)

    def unsubscribe_token(self, request_id: str, now: datetime) -> str:
        return self._sign(request_id, UNSUBSCRIBE, now)

    def read(self, token: str, now: datetime) -> LinkClaim:
        """The claim of a token we signed that has not expired; else InvalidLink."""
        token = token.strip()
        try:
            value = self._signer.unsign(token).decode("ascii")
        except (BadSignature, UnicodeError):
            raise InvalidLink(LinkProblem.TAMPERED, "the signature does not match") from None
        # Base64 leaves spare bits in the last character of a signature: a changed last
        # character can still decode to the same bytes. Only our exact spelling is accepted.
        if self._signer.sign(value).decode("ascii") != token:
            raise InvalidLink(LinkProblem.TAMPERED, "the signature is not in its canonical form")
        match = _VALUE.match(value)
        if match is None:  # signed by us but not in a form we write: treat as forged
            raise InvalidLink(LinkProblem.TAMPERED, "unexpected token contents")
        try:
            expires_at = datetime.fromtimestamp(int(match["expires"]), UTC)
        except (ValueError, OverflowError, OSError):  # a year past 9999: not one we write
            raise InvalidLink(LinkProblem.TAMPERED, "the expiry is out of range") from None
        if now >= expires_at:
            raise InvalidLink(LinkProblem.EXPIRED, f"expired at {expires_at.isoformat()}")
        action = match["action"]
        score = None if action == UNSUBSCRIBE else int(action)
        return LinkClaim(match["rid"], score, expires_at)

    def score_tokens(self, request_id: str, now: datetime) -> list[str]:
        """``score_token`` for every score, 0 to 10 (an email's eleven links)."""
        expires = self._expiry(now)
        return [self._signer.sign_text(f"{request_id}.{n}.{expires}") for n in SCORES]

    def _sign(self, request_id: str, action: str, now: datetime) -> str:
        return self._signer.sign_text(f"{request_id}.{action}.{self._expiry(now)}")

    def _expiry(self, now: datetime) -> int:
        return int((now + self._valid_for).timestamp())


def token_from(text: str) -> str:
    """The token in a pasted link, a mailto subject (``unsubscribe-<token>``) or the bare token."""
    text = text.strip()
    path = text.split("?", 1)[0].rstrip("/")
    last = path.rsplit("/", 1)[-1]
    return last.removeprefix("unsubscribe-")
