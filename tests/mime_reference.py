"""The MIME builder surveysync used before ``render.mime``: the email package's
``EmailMessage`` under a policy that leaves our own header values as ``render.headers`` built
them. Kept as the reference the fast builder is compared with (tests/test_mime.py) and as the
baseline of benchmarks/bench_outbox.py; surveysync itself no longer uses it.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from typing import Any

from surveysync.render import SurveyEmail, headers

_OWN = frozenset({"from", "to", "reply-to", "subject"})
_VERBATIM = frozenset({"message-id", "list-unsubscribe", "list-unsubscribe-post"})


class _SurveyPolicy(EmailPolicy):
    """SMTP rules (CRLF, 78 columns), except that ``_OWN`` and ``_VERBATIM`` values are kept
    as the strings we built and written by us."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if isinstance(value, str) and name.lower() in _OWN | _VERBATIM:
            if "\r" in value or "\n" in value:
                raise ValueError(f"a line break in the {name} header")
            return (name, value)
        return super().header_store_parse(name, value)  # type: ignore[no-any-return]

    def fold(self, name: str, value: str) -> str:
        return self._own_fold(name, value) or str(super().fold(name, value))

    def fold_binary(self, name: str, value: str) -> bytes:
        own = self._own_fold(name, value)
        if own is None:
            return super().fold_binary(name, value)  # type: ignore[no-any-return]
        return own.encode("utf-8" if self.utf8 else "ascii")

    def _own_fold(self, name: str, value: Any) -> str | None:
        if type(value) is not str:
            return None
        key = name.lower()
        if key in _VERBATIM:
            return f"{name}: {value}{self.linesep}"
        if key in _OWN:
            return headers.fold(name, value, self.linesep)
        return None


MESSAGE_POLICY = _SurveyPolicy(linesep="\r\n")
SMTPUTF8_POLICY = MESSAGE_POLICY.clone(utf8=True)


def stdlib_mime(email: SurveyEmail) -> EmailMessage:
    """The message as the email package built it (the former ``SurveyEmail.to_mime``)."""
    smtputf8 = email.recipient.needs_smtputf8
    message = EmailMessage(policy=SMTPUTF8_POLICY if smtputf8 else MESSAGE_POLICY)
    message["From"] = headers.mailbox(email.sender.display_name, email.sender.addr_spec)
    message["To"] = email.to_header
    if email.reply_to:
        message["Reply-To"] = headers.mailbox("", email.reply_to)
    message["Subject"] = headers.unstructured(email.subject)
    message["Date"] = format_datetime(email.date)
    message.set_content(email.text, cte="quoted-printable")
    message.add_alternative(email.html, subtype="html", cte="quoted-printable")
    for name, value in email.extra_headers().items():
        message[name] = value
    return message


def stdlib_bytes(email: SurveyEmail) -> bytes:
    return stdlib_mime(email).as_bytes()
