"""The ``smtp`` provider: survey emails handed to a mail server over SMTP.

One connection is opened for the first message and reused for the rest of the run; a new one
is opened only after the old one broke. The connection is secured with STARTTLS or TLS from
the first byte (certificate and host name always verified, against the system's CAs or
``ca_file``), then authenticated when a username is set. Messages are paced to at most
``max_per_second``. MAIL, RCPT and DATA are sent one by one, so that every failure is known
by the stage it happened at, and each message gets exactly one ``SendResult``.

This module must never send a message twice on its own: once its content has gone out, a
broken connection leaves it ``in_doubt`` and it is not tried again. It must never put the
password or a full recipient address in a log event, a result or an exception.

Errors. smtplib, ssl and socket errors become this module's own in ``_translated`` and
nowhere else; only ``SendResult`` and ``ProviderUnavailable`` leave the module::

    what happened                                 inside            what the caller gets
    ────────────────────────────────────────────  ────────────────  ───────────────────────
    5xx to MAIL, RCPT, DATA or to the content     _Refused          rejected (reply kept;
                                                                    at RCPT: the address)
    the server lacks SMTPUTF8, the address needs  _Refused          rejected
    4xx anywhere, still 4xx after the retries     _Refused (temp.)  pending (reply kept)
    connection lost before the content went out   _Lost             retried on a new
                                                                    connection; pending
                                                                    when out of tries
    connection lost once the content went out     _Lost (content)   in_doubt, never retried
    connecting, TLS or EHLO failed (retried)      _CannotConnect    ProviderUnavailable with
    certificate not trusted, AUTH refused         _CannotConnect    the results settled so far

Retries (a 4xx, a lost connection, a failed connect) are decided in ``_worth_retrying`` and
bounded by ``retry_attempts`` per message and ``retry_seconds`` per batch: a server that
answers 4xx to everyone defers the rest of the batch at once instead of holding it for
hours.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Literal, Self

import stamina
import structlog

from surveysync.config import ProviderSettings, SmtpSecurity, SmtpSettings
from surveysync.logging import SensitiveMasker
from surveysync.model import RequestStatus
from surveysync.providers.base import AdapterClass, OutgoingEmail, ProviderUnavailable, SendResult
from surveysync.providers.pacing import Pacer
from surveysync.render import SurveyEmail

log = structlog.get_logger("surveysync.providers.smtp")

# "content" is the message itself and the final reply to it: a loss there may have delivered it.
Stage = Literal[
    "connect", "EHLO", "STARTTLS", "AUTH", "NOOP", "RSET", "MAIL", "RCPT", "DATA", "content", "QUIT"
]
_SETUP_STAGES = frozenset({"connect", "EHLO", "STARTTLS", "AUTH", "NOOP"})
_SERVER_CLOSING = 421  # a 4xx after which the server closes the connection
# Replies often quote the recipient ("550 <jan@example.com>: unknown"); a settled request
# must not keep its address, so every reply is masked before it is kept or logged.
_ADDRESSES = SensitiveMasker()
_DOT_AT_LINE_START = re.compile(rb"^\.", re.MULTILINE)


class _Failure(Exception):
    """Something went wrong on the SMTP side; never leaves this module."""


class _Refused(_Failure):
    """The server answered, but not with yes; ``temporary`` for a 4xx."""

    def __init__(self, stage: Stage, reply: str, *, temporary: bool) -> None:
        super().__init__(f"{stage}: {reply}")
        self.stage = stage
        self.reply = reply
        self.temporary = temporary


class _Lost(_Failure):
    """The connection broke or timed out at ``stage``."""

    def __init__(self, stage: Stage, why: str) -> None:
        super().__init__(f"connection lost at {stage}: {why}")
        self.stage = stage
        self.why = why

    @property
    def after_content(self) -> bool:
        return self.stage == "content"


class _CannotConnect(_Failure):
    """No usable connection: the message says why in an operator's words."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def _worth_retrying(exc: Exception) -> bool:
    """The one place that decides what is tried again: nothing that could send twice."""
    if isinstance(exc, _Refused):
        return exc.temporary
    if isinstance(exc, _Lost):
        return not exc.after_content
    return isinstance(exc, _CannotConnect) and exc.retryable


class SmtpProvider:
    name = "smtp"
    # SMTP has no idempotency key: a message handed over twice is delivered twice.
    honours_idempotency_key = False
    renders_templates = False

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> Self:
        return cls(settings.smtp, batch_size=settings.batch_size)

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        batch_size: int = 500,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.max_batch_size = batch_size
        self._where = f"{settings.host}:{settings.effective_port}"
        self._clock = clock
        self._retry_deadline = 0.0
        self._pacer = Pacer(settings.max_per_second, clock=clock, sleep=sleep)
        self._session: _Session | None = None
        self._tls: ssl.SSLContext | None = None

    # --- the Provider interface ------------------------------------------------------------

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        results: list[SendResult] = []
        self._retry_deadline = self._clock() + self.settings.retry_seconds
        for email in batch:
            try:
                results.append(self._deliver(email))
            except _CannotConnect as exc:
                self.close()
                why = self._scrubbed(str(exc))
                log.error("smtp.unavailable", server=self._where, error=why, settled=len(results))
                raise ProviderUnavailable(why, results=results) from exc
        return results

    def check(self) -> str:
        try:
            session = self._open()
        except _CannotConnect as exc:
            raise ProviderUnavailable(self._scrubbed(str(exc))) from exc
        try:
            session.noop()
        except _Failure as exc:
            raise ProviderUnavailable(f"{self._where}: {self._scrubbed(str(exc))}") from exc
        finally:
            session.quit()
        return f"{self._where} ({self._security_words()})"

    def close(self) -> None:
        if self._session is not None:
            self._session.quit()
            self._session = None

    # --- one message -----------------------------------------------------------------------

    def _deliver(self, email: OutgoingEmail) -> SendResult:
        """Exactly one result for this message; raises _CannotConnect for the whole batch."""
        content = _wire_content(email.message)
        try:
            return self._deliver_with_retries(email, content)
        except _Refused as exc:
            status = RequestStatus.PENDING if exc.temporary else RequestStatus.REJECTED
            log.warning(
                "smtp.refused",
                request_id=email.request_id,
                stage=exc.stage,
                reply=exc.reply,
                status=status,
            )
            refused = exc.stage == "RCPT" and not exc.temporary  # this address, for good
            return SendResult(email.request_id, status, error=exc.reply, address_refused=refused)
        except _Lost as exc:
            return self._lost_result(email, exc)

    def _deliver_with_retries(self, email: OutgoingEmail, content: bytes) -> SendResult:
        budget = self._retry_deadline - self._clock()
        if budget <= 0:  # this batch has spent its retry time: one try each from here on
            return self._attempt(email, content, 1)
        retries = stamina.retry_context(
            on=_worth_retrying,
            attempts=self.settings.retry_attempts,
            timeout=budget,
            # Greylisting and busy servers want seconds, not milliseconds, between tries.
            wait_initial=1.0,
            wait_max=30.0,
        )
        for attempt in retries:
            with attempt:
                return self._attempt(email, content, attempt.num)
        raise AssertionError("stamina ends retrying by returning or raising")

    def _attempt(self, email: OutgoingEmail, content: bytes, number: int) -> SendResult:
        try:
            session = self._connected()
            options = _mail_options(session, email.message)
            self._pacer.wait()
            session.transmit(
                email.message.sender.addr_spec,
                email.message.recipient.addr_spec,
                content,
                options,
            )
        except _Failure as exc:
            if _worth_retrying(exc):
                log.info("smtp.retry", request_id=email.request_id, attempt=number, reason=str(exc))
            raise
        return SendResult(
            email.request_id, RequestStatus.SENT, provider_message_id=email.message.message_id
        )

    def _lost_result(self, email: OutgoingEmail, exc: _Lost) -> SendResult:
        if exc.after_content:
            log.error("smtp.in_doubt", request_id=email.request_id, why=exc.why)
            return SendResult(
                email.request_id,
                RequestStatus.IN_DOUBT,
                error=f"connection lost after the message was sent, before the server "
                f"confirmed it ({exc.why}); not sent again",
            )
        return SendResult(
            email.request_id,
            RequestStatus.PENDING,
            error=f"connection lost before the message was sent ({exc.why})",
        )

    # --- the connection --------------------------------------------------------------------

    def _connected(self) -> _Session:
        """The open connection, or a new one when there is none or the last one broke."""
        if self._session is not None and self._session.usable:
            return self._session
        if self._session is not None:
            log.info("smtp.reconnect", server=self._where)
        self._session = self._open()
        return self._session

    def _open(self) -> _Session:
        settings = self.settings
        tls = self._tls_context() if settings.security is not SmtpSecurity.NONE else None
        with _translated("connect", self._where):
            if settings.security is SmtpSecurity.TLS:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    settings.host,
                    settings.effective_port,
                    timeout=settings.timeout_seconds,
                    context=tls,
                )
            else:
                smtp = smtplib.SMTP(
                    settings.host, settings.effective_port, timeout=settings.timeout_seconds
                )
        session = _Session(smtp, self._where)
        try:
            session.introduce(tls if settings.security is SmtpSecurity.STARTTLS else None)
            if settings.username and settings.password:
                session.authenticate(settings.username, settings.password.get_secret_value())
        except BaseException:
            session.close()
            raise
        log.debug("smtp.connected", server=self._where, security=settings.security.value)
        return session

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            ca_file = self.settings.ca_file
            try:
                # Verifies the certificate chain and the host name.
                self._tls = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise _CannotConnect(
                    f"cannot use provider.smtp.ca_file {str(ca_file)!r}: "
                    f"{getattr(exc, 'strerror', None) or exc}",
                    retryable=False,
                ) from exc
        return self._tls

    def _security_words(self) -> str:
        words = {
            SmtpSecurity.STARTTLS: "STARTTLS",
            SmtpSecurity.TLS: "TLS",
            SmtpSecurity.NONE: "no TLS",
        }[self.settings.security]
        if self.settings.username:
            return f"{words}, authenticated as {self.settings.username}"
        return f"{words}, no authentication"

    def _scrubbed(self, text: str) -> str:
        password = self.settings.password
        if password and password.get_secret_value():
            text = text.replace(password.get_secret_value(), "***")
        return text


class _Session:
    """One open SMTP connection. Every smtplib call goes through ``_translated``."""

    def __init__(self, smtp: smtplib.SMTP, where: str) -> None:
        self._smtp = smtp
        self._where = where
        self.usable = True
        self._dirty = False  # a transaction was left half-way: RSET before the next MAIL

    def introduce(self, starttls: ssl.SSLContext | None) -> None:
        with _translated("EHLO", self._where):
            self._smtp.ehlo_or_helo_if_needed()
        if starttls is not None:
            with _translated("STARTTLS", self._where):
                self._smtp.starttls(context=starttls)
                self._smtp.ehlo()  # the capabilities may differ once encrypted

    def authenticate(self, username: str, password: str) -> None:
        with _translated("AUTH", self._where):
            self._smtp.login(username, password)

    def supports(self, extension: str) -> bool:
        return self._smtp.has_extn(extension)

    def noop(self) -> None:
        self._command("NOOP", self._smtp.noop, ok=(250,))

    def transmit(self, sender: str, recipient: str, content: bytes, options: list[str]) -> None:
        """MAIL, RCPT, DATA and the content, each answered before the next goes out."""
        if self._dirty:
            self._command("RSET", self._smtp.rset, ok=(250,))
        self._dirty = True  # until the final 250: any failure leaves a transaction behind
        self._command("MAIL", lambda: self._smtp.mail(sender, options), ok=(250,))
        self._command("RCPT", lambda: self._smtp.rcpt(recipient), ok=(250, 251))
        self._command("DATA", lambda: self._smtp.docmd("DATA"), ok=(354,))
        self._command("content", lambda: self._send_content(content), ok=(250,))
        self._dirty = False

    def quit(self) -> None:
        with suppress(_Failure), _translated("QUIT", self._where):
            self._smtp.quit()
        self.close()

    def close(self) -> None:
        self.usable = False
        self._smtp.close()

    def _send_content(self, content: bytes) -> tuple[int, bytes]:
        # One stage for the write and the reply: a write that fails half-way may already
        # have put the final dot in the kernel's buffer, so it is as doubtful as no reply.
        self._smtp.send(content)
        return self._smtp.getreply()

    def _command(
        self, stage: Stage, call: Callable[[], tuple[int, bytes]], ok: tuple[int, ...]
    ) -> None:
        try:
            with _translated(stage, self._where):
                code, raw = call()
        except _Lost:
            self.close()
            raise
        self._expect(stage, code, raw, ok)

    def _expect(self, stage: Stage, code: int, raw: bytes, ok: tuple[int, ...]) -> None:
        if code in ok:
            return
        reply = _reply_text(code, raw)
        if 400 <= code < 600:
            if code == _SERVER_CLOSING:
                self.close()
            raise _Refused(stage, reply, temporary=code < 500)
        # Not an SMTP answer at all: the two sides no longer agree on where they are.
        self.close()
        raise _Lost(stage, f"unexpected reply {reply!r}")


@contextmanager
def _translated(stage: Stage, where: str) -> Iterator[None]:
    """The one boundary where smtplib, ssl and socket errors become this module's own."""
    try:
        yield
    except ssl.SSLCertVerificationError as exc:
        raise _CannotConnect(
            f"the TLS certificate of {where} is not trusted ({exc.verify_message}); "
            "if the server uses an internal CA, set provider.smtp.ca_file",
            retryable=False,
        ) from exc
    except smtplib.SMTPAuthenticationError as exc:
        raise _CannotConnect(
            f"{where} refused the username and password "
            f"({_reply_text(exc.smtp_code, exc.smtp_error)})",
            retryable=False,
        ) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise _CannotConnect(f"{where} does not offer {stage}", retryable=False) from exc
    except smtplib.SMTPResponseException as exc:
        raise _refusal(stage, where, exc.smtp_code, exc.smtp_error) from exc
    except ssl.SSLError as exc:
        raise _CannotConnect(
            f"TLS with {where} failed ({exc.reason or exc}); check provider.smtp.security and port",
            retryable=False,
        ) from exc
    except OSError as exc:  # smtplib's other errors, refused or reset connections, timeouts
        if stage in _SETUP_STAGES:
            raise _CannotConnect(f"cannot reach {where}: {_plain(exc)}", retryable=True) from exc
        raise _Lost(stage, _plain(exc)) from exc


def _refusal(stage: Stage, where: str, code: int, raw: bytes | str) -> _Failure:
    reply = _reply_text(code, raw)
    if stage in _SETUP_STAGES:
        return _CannotConnect(f"{where} answered {stage} with {reply}", retryable=code < 500)
    return _Refused(stage, reply, temporary=400 <= code < 500)


def _plain(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "the server closed the connection"
    return exc.strerror or str(exc) or type(exc).__name__


def _reply_text(code: int, raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    masked: str = _ADDRESSES.mask(" ".join(text.split()))
    return f"{code} {masked}"


def _mail_options(session: _Session, message: SurveyEmail) -> list[str]:
    needs_utf8 = message.recipient.needs_smtputf8 or not message.sender.addr_spec.isascii()
    if not needs_utf8:
        return []
    if not session.supports("smtputf8"):
        raise _Refused(
            "MAIL",
            "the server does not support SMTPUTF8, which an address with non-ASCII "
            "characters before the @ needs",
            temporary=False,
        )
    # RFC 6531: SMTPUTF8 headers are 8-bit, so the body type must say so too.
    return ["SMTPUTF8", "BODY=8BITMIME"]


def _wire_content(message: SurveyEmail) -> bytes:
    """The message as DATA sends it: CRLF lines, leading dots doubled, ending in CRLF.CRLF."""
    data = message.to_bytes()
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return _DOT_AT_LINE_START.sub(b"..", data) + b".\r\n"


Adapter: AdapterClass = SmtpProvider  # what surveysync.providers finds for this kind
