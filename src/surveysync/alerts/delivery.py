"""Queue what is due, then send what waits: ``send_due``, called by the nightly run after the
night's surveys (``digests=True``) and by the survey page's periodic tick.

One alert at a time (its emails, one per address in ``[alerts] to``, in provider calls of
at most the provider's batch size, keyed by the alert's id), in this order:

    claim         pending -> sending, committed (a compare-and-set: one process wins)
    compose       as of the call's time (a repeat after a crash is the same email)
    send          the provider
    settle        what the provider said, folded into one status for the alert

Folding the emails of one alert: ``sent`` if any address got it (a refused one is logged
loudly: the manager's address is wrong); else ``in_doubt`` if any may have; else ``pending``
if any may still go; else ``rejected`` or ``failed``. So an alert goes back to the queue only
when nobody got it, and nobody ever gets it twice.

A provider that cannot be reached leaves the alert ``pending`` with its attempt counted, and
the rest of the queue waits too; the next try comes after a pause that doubles with each
attempt (``retry_pause``), so a page that ticks every minute does not knock on a dead server
every minute. An alert found in flight after a crash is repeated under the same key when the
provider honours one; otherwise it becomes ``in_doubt`` and is never resent.

Never raises a provider error (they are logged and counted); ledger errors pass through.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta

import structlog

from surveysync.alerts.compose import AlertComposer
from surveysync.config import Settings
from surveysync.ledger import Ledger, mask_email
from surveysync.ledger.alerts import AlertKind, Detractor, DueAlert
from surveysync.model import RequestStatus
from surveysync.providers import (
    OutgoingEmail,
    Provider,
    ProviderError,
    ProviderLost,
    ProviderUnavailable,
    SendResult,
)
from surveysync.render import RenderError, SurveyEmail
from surveysync.windows import day_start

log = structlog.get_logger("surveysync.alerts")

# Longer than any provider call can take with its retries (provider.*.retry_seconds is at
# most an hour): an alert in `sending` for longer was left by a crash, not by another
# process still waiting for its provider.
IN_FLIGHT_LIMIT = timedelta(hours=2)
# An answer first given longer ago raises no alert: switching alerts on does not send the
# manager a month of old news (the report has it).
ALERT_HORIZON = timedelta(days=7)
# Nights the digest catches up on after the daemon was off.
DIGEST_CATCH_UP_DAYS = 7
_FIRST_PAUSE = timedelta(minutes=1)
_LONGEST_PAUSE = timedelta(hours=1)


@dataclass
class AlertCounts:
    """What one ``send_due`` did: alerts queued, and alerts by how their try ended."""

    queued: int = 0
    sent: int = 0
    waiting: int = 0  # the provider could not take them: tried again later
    rejected: int = 0
    failed: int = 0
    in_doubt: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def send_due(
    ledger: Ledger, provider: Provider, settings: Settings, now: datetime, *, digests: bool = False
) -> AlertCounts:
    """Queue the detractor alerts that are due (and, with ``digests``, the digest of every
    store day that is over), then send every alert that waits. Off when ``[alerts] to`` is
    empty."""
    counts = AlertCounts()
    if not settings.alerts.enabled:
        return counts
    if settings.alerts.each:
        since = now - ALERT_HORIZON
        threshold = settings.alerts.detractor_max
        counts.queued += ledger.alerts.queue_detractors(now, threshold, since)
    if digests and settings.alerts.daily_digest:
        counts.queued += _queue_digests(ledger, settings, now)
    _Dispatch(ledger, provider, settings, now, counts).run()
    if counts != AlertCounts():  # the page's tick is frequent: quiet when nothing happened
        log.info("alerts.done", **counts.as_dict())
    return counts


def retry_pause(attempts: int) -> timedelta:
    """How long an alert the provider could not take waits before its next try."""
    doublings = min(max(attempts - 1, 0), 10)
    pause: timedelta = _FIRST_PAUSE * (2**doublings)
    return min(pause, _LONGEST_PAUSE)


def _queue_digests(ledger: Ledger, settings: Settings, now: datetime) -> int:
    """A digest for each store day that is over, has detractors and has none yet."""
    tz = settings.store.tz
    today = now.astimezone(tz).date()
    first = today - timedelta(days=1)
    last = ledger.alerts.last_digest_day()
    if last is not None:
        first = max(last + timedelta(days=1), today - timedelta(days=DIGEST_CATCH_UP_DAYS))
    queued = 0
    day = first
    while day < today:
        if _day_detractors(ledger, settings, day, now):  # a quiet day sends nothing
            queued += ledger.alerts.queue_digest(day, now)
        day += timedelta(days=1)
    return queued


def _day_detractors(
    ledger: Ledger, settings: Settings, day: date, now: datetime
) -> list[Detractor]:
    """The final detractor answers first given on ``day``, a store day."""
    tz = settings.store.tz
    start, end = day_start(day, tz), day_start(day + timedelta(days=1), tz)
    return ledger.alerts.detractors(start, end, settings.alerts.detractor_max, now)


class _Dispatch:
    """One ``send_due``'s sending: in-flight leftovers first, then the queue."""

    def __init__(
        self,
        ledger: Ledger,
        provider: Provider,
        settings: Settings,
        now: datetime,
        counts: AlertCounts,
    ) -> None:
        self.ledger = ledger
        self.provider = provider
        self.settings = settings
        self.now = now
        self.counts = counts
        self.composer = AlertComposer(settings)

    def run(self) -> None:
        reachable = self._resume_in_flight()
        pending = self.ledger.alerts.pending()
        due = [a for a in pending if self._due(a)] if reachable else []
        self.counts.waiting += len(pending) - len(due)
        for position, alert in enumerate(due):
            if not self._send(alert):  # the provider is down: the rest waits with it
                self.counts.waiting += len(due) - position - 1
                break

    def _due(self, alert: DueAlert) -> bool:
        last_try = alert.sending_at
        return last_try is None or self.now >= last_try + retry_pause(alert.attempts)

    def _resume_in_flight(self) -> bool:
        """Repeat or hold in doubt what a crash left in flight; False when the provider
        could not take a repeat (then the queue waits too)."""
        for alert in self.ledger.alerts.in_flight(before=self.now - IN_FLIGHT_LIMIT):
            if self.provider.honours_idempotency_key:
                log.warning("alert.repeating", alert_id=alert.alert_id, provider=self.provider.name)
                if not self._send(alert):
                    return False
                continue
            held = self.ledger.alerts.settle(
                alert.alert_id,
                RequestStatus.IN_DOUBT,
                self.now,
                error="a crash interrupted its sending; not sent again, so as never to send twice",
            )
            if held:  # (another process may have held it a moment before)
                self.counts.in_doubt += 1
                log.error("alert.in_doubt", alert_id=alert.alert_id, kind=alert.kind)
        return True

    def _send(self, alert: DueAlert) -> bool:
        """Claim, compose, send, settle one alert; False when the provider is unavailable."""
        if not self.ledger.alerts.claim(alert, self.now):
            return True  # another process has it
        emails = self._compose(alert)
        if emails is None:
            return True
        outgoing = [OutgoingEmail(m.request_id, m.request_id, m) for m in emails]
        results, unsent, error = self._call(alert, outgoing)
        self._settle(alert, outgoing, results, unsent=unsent, error=error)
        return error is None or not isinstance(error, ProviderUnavailable)

    def _call(
        self, alert: DueAlert, outgoing: list[OutgoingEmail]
    ) -> tuple[list[SendResult], RequestStatus, ProviderError | None]:
        """The provider's results, in calls of at most its batch size (each keyed by the
        alert and its place, the same on a repeat); what an email without a result counts
        as; and the error that cut the sending short."""
        results: list[SendResult] = []
        size = max(self.provider.max_batch_size, 1)
        for start in range(0, len(outgoing), size):
            key = alert.alert_id if start == 0 else f"{alert.alert_id}-{start}"
            batch = [replace(email, batch_key=key) for email in outgoing[start : start + size]]
            try:
                results += self.provider.send(batch)
            except ProviderLost as exc:  # it may have gone out before the provider left
                return results + exc.results, RequestStatus.IN_DOUBT, exc
            except ProviderUnavailable as exc:  # nothing of the rest went out
                return results + exc.results, RequestStatus.PENDING, exc
            except ProviderError as exc:  # an answer we cannot read: it may have gone out
                return results, RequestStatus.IN_DOUBT, exc
        return results, RequestStatus.IN_DOUBT, None

    def _compose(self, alert: DueAlert) -> list[SurveyEmail] | None:
        """The alert's emails, or None after settling it as failed (nothing to say)."""
        as_of = alert.sending_at if alert.in_flight and alert.sending_at else self.now
        try:
            emails = self._emails(alert, as_of)
        except RenderError as exc:
            emails, why = [], str(exc)
        else:
            why = "its answer is no longer a detractor's" if not emails else ""
        if emails:
            return emails
        self.ledger.alerts.settle(alert.alert_id, RequestStatus.FAILED, self.now, error=why)
        self.counts.failed += 1
        log.warning("alert.not_sent", alert_id=alert.alert_id, kind=alert.kind, why=why)
        return None

    def _emails(self, alert: DueAlert, as_of: datetime) -> list[SurveyEmail]:
        threshold = self.settings.alerts.detractor_max
        if alert.kind is AlertKind.DETRACTOR:
            assert alert.request_id is not None
            answer = self.ledger.alerts.detractor(alert.request_id)
            if answer is None or answer.score > threshold:
                return []
            return self.composer.detractor(alert.alert_id, answer, as_of)
        assert alert.day is not None
        answers = _day_detractors(self.ledger, self.settings, alert.day, self.now)
        return self.composer.digest(alert.alert_id, alert.day, answers, as_of) if answers else []

    def _settle(
        self,
        alert: DueAlert,
        outgoing: list[OutgoingEmail],
        results: list[SendResult],
        *,
        unsent: RequestStatus,
        error: ProviderError | None = None,
    ) -> None:
        """One status for the alert from its emails' results; an email without a result
        counts as ``unsent`` (pending when the provider went down before it, in doubt when
        the provider answered without it)."""
        answered = {r.request_id: r for r in results}
        outcomes = [
            answered.get(o.request_id) or SendResult(o.request_id, unsent, error=str(error or ""))
            for o in outgoing
        ]
        self._log_refusals(alert, outgoing, outcomes)
        status = _folded({r.status for r in outcomes})
        chosen = next(r for r in outcomes if r.status == status)
        if status == RequestStatus.PENDING and alert.in_flight:
            # A repeat after a crash that could not go out: it stays in flight, to be
            # repeated as it was (same key, same email) by the next try.
            self.counts.waiting += 1
            log.warning("alert.repeat_deferred", alert_id=alert.alert_id, error=chosen.error)
            return
        self.ledger.alerts.settle(
            alert.alert_id,
            status,
            self.now,
            message_id=chosen.provider_message_id,
            error=chosen.error or (str(error) if error else None),
        )
        self._count(alert, status, chosen.error)

    def _count(self, alert: DueAlert, status: RequestStatus, error: str | None) -> None:
        fields = {"alert_id": alert.alert_id, "kind": alert.kind, "attempts": alert.attempts + 1}
        if status is RequestStatus.SENT:
            self.counts.sent += 1
            log.info("alert.sent", **fields)
        elif status is RequestStatus.PENDING:
            self.counts.waiting += 1
            retry = self.now + retry_pause(alert.attempts + 1)
            log.warning("alert.deferred", **fields, error=error, next_try=retry.isoformat())
        elif status is RequestStatus.IN_DOUBT:
            self.counts.in_doubt += 1
            log.error("alert.in_doubt", **fields, error=error)
        elif status is RequestStatus.REJECTED:
            self.counts.rejected += 1
        else:
            self.counts.failed += 1
            log.error("alert.failed", **fields, error=error)

    def _log_refusals(
        self, alert: DueAlert, outgoing: list[OutgoingEmail], outcomes: list[SendResult]
    ) -> None:
        addresses = {o.request_id: o.message.recipient.addr_spec for o in outgoing}
        for result in outcomes:
            if result.status == RequestStatus.REJECTED:
                log.error(
                    "alert.rejected",
                    alert_id=alert.alert_id,
                    to=mask_email(addresses[result.request_id]),
                    error=result.error,
                    fix="the provider refused this address in [alerts] to: correct it",
                )


def _folded(statuses: set[RequestStatus]) -> RequestStatus:
    """One alert's status from its emails' (see the module docstring)."""
    for status in (
        RequestStatus.SENT,
        RequestStatus.IN_DOUBT,
        RequestStatus.PENDING,
        RequestStatus.REJECTED,
    ):
        if status in statuses:
            return status
    return RequestStatus.FAILED
