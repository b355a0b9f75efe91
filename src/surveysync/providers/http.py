"""What every HTTP provider shares: one pooled ``httpx.Client``, pacing, and the one place
where an HTTP outcome is classified and retried.

An adapter (SendGrid, Postmark, Mailgun, Resend, Brevo, webhook) subclasses ``HttpProvider``
and writes four things: the request for a batch, how to read the provider's answer into one
``SendResult`` per message, a harmless request for ``check``, and (optionally) how to pull
the suppression list. Everything else is decided here, once::

    what happened                      idempotent call           other calls
    ─────────────────────────────────  ────────────────────────  ──────────────────────────
    2xx                                the adapter reads per-message results
    429, 500, 502, 503, 504            retried, waiting Retry-After or the rate-limit reset
                                       when given; out of tries: ProviderUnavailable
    connect error or connect timeout   retried (nothing was sent); out of tries: Unavailable
    read timeout, reset, broken reply  retried with the same key  in_doubt: never resent
    ... then out of tries              ProviderLost: repeated
                                       under that key next run
    401, 403                           ProviderUnavailable: the key is wrong for everyone,
                                       not a reason to reject anybody
    409                                in_doubt: the key was      (as any other 4xx)
                                       used already or is in use
    any other 4xx                      one message: rejected with the provider's words;
                                       several: each is sent alone to find the one at fault

Retries are bounded by ``retry_attempts`` and by ``retry_seconds`` per call; a Retry-After
longer than what is left gives up at once instead of waiting in vain. Tests switch the
waiting off with ``stamina.set_testing``.

Never logs or raises with an API key in it (every message passes ``_scrub``), never a full
email address (provider messages are masked), and never lets an httpx error out.
"""

from __future__ import annotations

import email.utils
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx
import stamina
import structlog

from surveysync.config import HttpSettings
from surveysync.logging import SensitiveMasker
from surveysync.model import RequestStatus
from surveysync.providers.base import (
    OutgoingEmail,
    ProviderLost,
    ProviderUnavailable,
    SendResult,
)
from surveysync.providers.pacing import Pacer

log = structlog.get_logger("surveysync.providers.http")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
KEY_REFUSED_STATUS = frozenset({401, 403})
CONFLICT_STATUS = 409  # an idempotency key already used, or in use
_MESSAGE_LIMIT = 300  # characters of a provider's error kept in the ledger
_RESET_HEADERS = ("ratelimit-reset", "x-ratelimit-reset", "x-rate-limit-reset")
_EPOCH_THRESHOLD = 1_000_000_000  # a reset header above this is a Unix time, not seconds


class _Retry(Exception):
    """Worth another try, after ``wait`` seconds when the provider said so. ``reached``: the
    attempt may have got through (its answer was lost), so only its key makes a retry safe."""

    def __init__(self, reason: str, wait: float | None = None, *, reached: bool = False) -> None:
        super().__init__(reason)
        self.wait = wait
        self.reached = reached


class _CallInDoubt(Exception):
    """The request may have reached the provider; only an idempotency key makes a retry safe.
    Never leaves this module: ``send`` answers each request of the call ``in_doubt``."""


class _CallLost(ProviderUnavailable):
    """An idempotent call that may have got through, then the provider was lost: ``send``
    turns it into ``ProviderLost`` for the call's requests and key. Elsewhere (a check, a
    list) it is what it derives from: the provider is unavailable."""


class HttpCaller:
    """Sends one request with pacing and bounded retries; decides what a failure means."""

    def __init__(
        self,
        client: httpx.Client,
        settings: HttpSettings,
        *,
        name: str,
        secrets: Sequence[str],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.settings = settings
        self.name = name
        self._masker = SensitiveMasker(secrets)
        self._clock = clock
        self._pacer = Pacer(settings.max_per_second, clock=clock, sleep=sleep)

    def call(self, request: httpx.Request, *, idempotent: bool) -> httpx.Response:
        """The provider's answer: 2xx, or a 4xx that is about the request (not the key).

        Raises ProviderUnavailable when the provider could not be reached, refused the key,
        or kept failing; _CallInDoubt when a non-idempotent request may have gone through.
        """
        deadline = self._clock() + self.settings.retry_seconds
        retries = stamina.retry_context(
            on=lambda exc: self._backoff(exc, deadline),
            attempts=self.settings.retry_attempts,
            timeout=self.settings.retry_seconds,
            wait_initial=0.5,
            wait_max=60.0,
        )
        reached = False  # whether an earlier attempt may have got through
        try:
            for attempt in retries:
                with attempt:
                    try:
                        return self._attempt(request, idempotent, attempt.num)
                    except _Retry as exc:
                        reached = reached or exc.reached
                        raise
        except _Retry as exc:
            failure = ProviderUnavailable(f"{self.name}: {exc}")
        except ProviderUnavailable as exc:
            failure = exc
        if reached:
            raise _CallLost(f"{failure}; an earlier attempt may have been taken") from None
        raise failure from None

    def scrub(self, text: str) -> str:
        """Text without any API key or full email address, for logs and the ledger."""
        masked: str = self._masker.mask(text)
        return masked

    def _attempt(self, request: httpx.Request, idempotent: bool, number: int) -> httpx.Response:
        self._pacer.wait()
        try:
            response = self.client.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Retry(f"cannot reach {request.url.host}: {self._plain(exc)}") from None
        except httpx.TransportError as exc:  # read/write timeout, reset, broken response
            if not idempotent:
                raise _CallInDoubt(
                    f"{self.name} may have taken the request ({self._plain(exc)}); not resent"
                ) from None
            raise _Retry(f"no complete answer ({self._plain(exc)})", reached=True) from None
        return self._judged(response, number)

    def _judged(self, response: httpx.Response, number: int) -> httpx.Response:
        status = response.status_code
        if status in RETRYABLE_STATUS:
            response.read()
            raise _Retry(
                f"HTTP {status}: {self.describe(response)}",
                retry_after(response, datetime.now(UTC)),
            )
        if status in KEY_REFUSED_STATUS:
            raise ProviderUnavailable(
                f"{self.name} refused the API key (HTTP {status}: {self.describe(response)}); "
                "check the key and its permissions"
            )
        if number > 1:
            log.info("http.recovered", provider=self.name, attempt=number, status=status)
        return response

    def _backoff(self, exc: Exception, deadline: float) -> bool | float:
        if not isinstance(exc, _Retry):
            return False
        left = deadline - self._clock()
        if exc.wait is not None and exc.wait > left:
            log.warning("http.wait_too_long", provider=self.name, wait_s=exc.wait, left_s=left)
            return False
        log.info("http.retry", provider=self.name, reason=str(exc), wait_s=exc.wait)
        return exc.wait if exc.wait is not None else True

    def describe(self, response: httpx.Response) -> str:
        """The provider's own words about a failed request, short and without addresses."""
        try:
            text = response.text
        except httpx.ResponseNotRead:
            text = ""
        text = " ".join(text.split())[:_MESSAGE_LIMIT] or response.reason_phrase
        return self.scrub(text)

    def _plain(self, exc: httpx.HTTPError) -> str:
        return self.scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def retry_after(response: httpx.Response, now: datetime) -> float | None:
    """Seconds to wait as the provider asked: Retry-After (seconds or an HTTP date), else a
    rate-limit reset header (seconds, or a Unix time); None when it did not say."""
    value = response.headers.get("retry-after")
    if value is not None:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - now).total_seconds())
    for name in _RESET_HEADERS:
        reset = response.headers.get(name)
        if reset is not None and reset.strip().replace(".", "", 1).isdigit():
            number = float(reset)
            return max(0.0, number - now.timestamp()) if number > _EPOCH_THRESHOLD else number
    return None


class HttpProvider(ABC):
    """The shape of every HTTP adapter; see the module docstring for what is decided here."""

    name: str
    max_batch_size: int
    honours_idempotency_key: bool
    renders_templates: bool = False
    # Told the new keys of a refused batch's messages before they go out alone (the sync
    # records them; see ``SplitsRefusedBatches``).
    on_split: Callable[[Sequence[tuple[str, str]]], None] | None = None

    def __init__(
        self,
        settings: HttpSettings,
        secrets: Sequence[str],
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._owns_client = client is None
        self.client = client or new_client(settings)
        self.caller = HttpCaller(
            self.client, settings, name=self.name, secrets=secrets, clock=clock, sleep=sleep
        )

    # --- what an adapter writes ------------------------------------------------------------

    @abstractmethod
    def build_send(self, batch: Sequence[OutgoingEmail]) -> httpx.Request: ...

    @abstractmethod
    def read_results(
        self, batch: Sequence[OutgoingEmail], response: httpx.Response
    ) -> list[SendResult]: ...

    @abstractmethod
    def build_check(self) -> httpx.Request: ...

    def describe_check(self, response: httpx.Response) -> str:
        return f"{self.name} answered (HTTP {response.status_code}); the API key works"

    def read_list(self, request: httpx.Request, what: str) -> httpx.Response:
        """The successful answer to a GET for a list (suppressions, unsubscribes); else
        ProviderUnavailable naming ``what`` and the provider's words."""
        response = self.caller.call(request, idempotent=True)
        if not response.is_success:
            raise ProviderUnavailable(
                f"{self.name} did not list {what} (HTTP {response.status_code}: "
                f"{self.caller.describe(response)})"
            )
        return response

    def account_problem(self, response: httpx.Response) -> str | None:
        """Whether a refused call is about the account (may not send, sender not verified)
        rather than the messages: then nobody is rejected and the run stops, in these words.
        Adapters whose provider says so in its refusals override this."""
        return None

    # --- the Provider interface --------------------------------------------------------------

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        try:
            response = self.caller.call(
                self.build_send(batch), idempotent=self.honours_idempotency_key
            )
        except _CallInDoubt as exc:
            log.error("http.in_doubt", provider=self.name, count=len(batch), error=str(exc))
            return [SendResult(e.request_id, RequestStatus.IN_DOUBT, error=str(exc)) for e in batch]
        except _CallLost as exc:
            log.error("http.lost", provider=self.name, count=len(batch), error=str(exc))
            lost = [e.request_id for e in batch]
            key = batch[0].batch_key or batch[0].idempotency_key
            raise ProviderLost(str(exc), lost=lost, key=key) from None
        if response.is_success:
            return self.read_results(batch, response)
        if (problem := self.account_problem(response)) is not None:
            raise ProviderUnavailable(problem)
        return self._refused(batch, response)

    def check(self) -> str:
        try:
            response = self.caller.call(self.build_check(), idempotent=True)
        except _CallInDoubt as exc:  # a check is idempotent; kept for completeness
            raise ProviderUnavailable(str(exc)) from None
        if response.status_code == 404:
            raise ProviderUnavailable(
                f"{self.name} answered 404 for {response.request.url.path}: wrong region, "
                f"domain or base_url? ({self.caller.describe(response)})"
            )
        if not response.is_success:
            raise ProviderUnavailable(
                f"{self.name} refused the check (HTTP {response.status_code}: "
                f"{self.caller.describe(response)})"
            )
        return self.describe_check(response)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def _refused(
        self, batch: Sequence[OutgoingEmail], response: httpx.Response
    ) -> list[SendResult]:
        """A 4xx about the request. Nothing of it was sent: one message is rejected; several
        are sent one by one, so that only the message at fault is rejected.

        Except a 409 to a call with an idempotency key: the key was taken before (the
        repeat of a call made earlier, with another body) or is in use right now. What it
        stood for may have gone out: the messages are in doubt, neither rejected (which
        frees the cooldown) nor sent again one by one under new keys (twice)."""
        reason = f"HTTP {response.status_code}: {self.caller.describe(response)}"
        if response.status_code == CONFLICT_STATUS and self.honours_idempotency_key:
            log.error("http.key_conflict", provider=self.name, count=len(batch), error=reason)
            return [SendResult(e.request_id, RequestStatus.IN_DOUBT, error=reason) for e in batch]
        if len(batch) == 1:
            return [SendResult(batch[0].request_id, RequestStatus.REJECTED, error=reason)]
        log.warning("http.batch_refused", provider=self.name, count=len(batch), error=reason)
        alone = [_alone(email_) for email_ in batch]
        if self.on_split is not None:
            self.on_split([(e.request_id, e.batch_key) for e in alone])
        results: list[SendResult] = []
        for email_ in alone:
            try:
                results.extend(self.send([email_]))
            except ProviderLost as exc:  # it may have gone out alone, under its own key
                raise ProviderLost(str(exc), results, lost=exc.lost, key=exc.key) from None
            except ProviderUnavailable as exc:  # those sent alone before stay settled
                raise ProviderUnavailable(str(exc), [*results, *exc.results]) from None
        return results


def _alone(email_: OutgoingEmail) -> OutgoingEmail:
    """The message as a call of its own: its own key, not its former batch's."""
    return OutgoingEmail(
        email_.request_id, email_.idempotency_key, email_.message, email_.idempotency_key
    )


def new_client(settings: HttpSettings) -> httpx.Client:
    timeout = httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds)
    return httpx.Client(
        timeout=timeout,
        headers={"User-Agent": "surveysync"},
        follow_redirects=False,  # an API that redirects a POST is misconfigured, not followed
    )
