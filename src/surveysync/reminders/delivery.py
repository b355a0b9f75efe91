"""The night's reminders: ``send_due_reminders``, called by the nightly run after the night's
surveys, and ``cancel_impossible`` for anyone who wants addresses forgotten sooner.

One pass, in this order:

    in flight    reminders a crash left in ``sending``: a provider that honours idempotency
                 keys gets each call again, as it was (same key, same bytes); with any other,
                 they are held ``in_doubt`` (never resent) and their address is forgotten
    sweep        every pending reminder is decided (``surveysync.reminder_rules``): those
                 that can no longer go out are cancelled (address forgotten), the due ones
                 are listed
    send         the due ones in provider-sized calls; before each call its reminders are
                 decided again on fresh facts (an unsubscribe during the pass holds), then
                 claimed (pending -> sending, committed), composed, sent and settled

A provider that cannot be reached ends the pass: what went out is settled, the rest waits for
the next night (a repeat stays in flight, to be repeated under its key). Never raises a
provider error; ledger errors pass through. A stop asked for (``stop``) ends the pass between
calls. Reminders touch no cooldown, and a reminder is never sent twice.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import structlog

from surveysync.config import Settings
from surveysync.ledger import Ledger, mask_email
from surveysync.ledger.db import chunks
from surveysync.ledger.reminders import DueReminder, ReminderSettlement
from surveysync.model import RequestStatus
from surveysync.providers import (
    OutgoingEmail,
    Provider,
    ProviderError,
    ProviderLost,
    ProviderUnavailable,
    SendResult,
)
from surveysync.reminder_rules import Action, CancelReason, decide
from surveysync.reminders.compose import ReminderComposer
from surveysync.render import RenderError

log = structlog.get_logger("surveysync.reminders")

Clock = Callable[[], datetime]
_IN_DOUBT = "a crash interrupted its sending; not sent again, so as never to send twice"


@dataclass
class ReminderCounts:
    """What one pass did, reminders by how they ended."""

    sent: int = 0
    cancelled: int = 0  # no longer possible (unsubscribed, answered, clicked ...)
    waiting: int = 0  # due, but the provider could not take them: the next night tries
    rejected: int = 0
    failed: int = 0
    in_doubt: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def send_due_reminders(
    ledger: Ledger,
    provider: Provider,
    settings: Settings,
    clock: Clock,
    *,
    stop: threading.Event | None = None,
) -> ReminderCounts:
    """Repeat or hold what a crash left in flight, cancel what can no longer go out, send
    what is due (see the module docstring). ``clock`` gives real times: the moment reminders
    are judged at, and each call's time."""
    counts = ReminderCounts()
    sender = _Sender(ledger, provider, settings, clock, counts)
    if sender.resume_in_flight():
        calls = _batches(_sweep(ledger, settings, clock(), counts), provider.max_batch_size)
        for position, batch in enumerate(calls):
            if stop is not None and stop.is_set():  # between calls only
                counts.waiting += sum(len(b) for b in calls[position:])
                log.info("reminders.stopped")
                break
            if not sender.send(batch):  # the provider is down: the rest waits with it
                counts.waiting += sum(len(b) for b in calls[position + 1 :])
                break
    if counts != ReminderCounts():
        log.info("reminders.done", **counts.as_dict())
    return counts


def cancel_impossible(ledger: Ledger, settings: Settings, now: datetime) -> int:
    """Cancel every pending reminder that can no longer go out, forgetting its address;
    sends nothing. For the survey page's periodic tick, so that an unsubscribe or an answer
    clears the address within a minute rather than by the night. Returns how many."""
    counts = ReminderCounts()
    _sweep(ledger, settings, now, counts)
    return counts.cancelled


def _sweep(ledger: Ledger, settings: Settings, now: datetime, counts: ReminderCounts) -> list[str]:
    """Decide every pending reminder: cancel the impossible ones, return the due ones."""
    due: list[str] = []
    for part in chunks(ledger.reminders.pending_ids()):
        sends, cancels = _judged(ledger.reminders.read(part), settings, now)
        due += [r.reminder_id for r in sends]
        counts.cancelled += _cancel(ledger, cancels, now)
    return due


def _judged(
    items: Sequence[DueReminder], settings: Settings, now: datetime
) -> tuple[list[DueReminder], list[tuple[DueReminder, CancelReason]]]:
    sends: list[DueReminder] = []
    cancels: list[tuple[DueReminder, CancelReason]] = []
    for item in items:
        verdict = decide(item.facts, settings.review, settings.reminders, now)
        if verdict.action is Action.SEND:
            sends.append(item)
        elif verdict.action is Action.CANCEL and verdict.reason is not None:
            cancels.append((item, verdict.reason))
    return sends, cancels


def _cancel(
    ledger: Ledger, cancels: Sequence[tuple[DueReminder, CancelReason]], now: datetime
) -> int:
    cancelled = ledger.reminders.cancel([(r.reminder_id, why) for r, why in cancels], now)
    if cancels:
        reasons = Counter(str(why) for _, why in cancels)
        log.info("reminders.cancelled", count=cancelled, reasons=dict(reasons))
    return cancelled


class _Sender:
    """Claims, composes, sends and settles reminders, one provider call at a time."""

    def __init__(
        self,
        ledger: Ledger,
        provider: Provider,
        settings: Settings,
        clock: Clock,
        counts: ReminderCounts,
    ) -> None:
        self.ledger = ledger
        self.provider = provider
        self.settings = settings
        self.clock = clock
        self.counts = counts
        self.composer = ReminderComposer(settings.store, settings.email)
        self._named: dict[str, DueReminder] = {}

    def resume_in_flight(self) -> bool:
        """False when the provider could not take a repeat (then nothing else is sent)."""
        left = self.ledger.reminders.in_flight()
        if not left:
            return True
        if not self.provider.honours_idempotency_key:
            held = self.ledger.reminders.mark_in_doubt([r.reminder_id for r in left], _IN_DOUBT)
            self.counts.in_doubt += held
            log.warning("reminders.in_doubt", count=held, provider=self.provider.name)
            return True
        log.warning("reminders.repeating", count=len(left), provider=self.provider.name)
        # Each call as it was: its key, its order, rendered as of its first attempt; all()
        # stops at the first the provider could not take.
        return all(self._call(key, group, repeat=True) for key, group in _by_batch(left).items())

    def send(self, reminder_ids: Sequence[str]) -> bool:
        """One provider call for these due reminders; False when the provider is down."""
        now = self.clock()
        fresh, cancels = _judged(self.ledger.reminders.read(reminder_ids), self.settings, now)
        self.counts.cancelled += _cancel(self.ledger, cancels, now)
        if not fresh:
            return True
        key = _batch_key([r.reminder_id for r in fresh])
        moved = self.ledger.reminders.mark_sending(
            [r.reminder_id for r in fresh], now, self.provider.name, key
        )
        claimed = [r for r in fresh if r.reminder_id in set(moved)]
        return self._call(key, claimed, repeat=False, as_of=now) if claimed else True

    def _call(
        self,
        key: str,
        items: Sequence[DueReminder],
        *,
        repeat: bool,
        as_of: datetime | None = None,
    ) -> bool:
        outgoing = self._compose(key, items, as_of)
        if not outgoing:
            return True
        try:
            results = self.provider.send(outgoing)
        except ProviderError as exc:
            return self._trouble(exc, outgoing, repeat)
        self._settle(results, repeat)
        answered = {r.request_id for r in results}
        self._hold([o.request_id for o in outgoing if o.request_id not in answered], "no answer")
        return True

    def _compose(
        self, key: str, items: Sequence[DueReminder], as_of: datetime | None
    ) -> list[OutgoingEmail]:
        """The call's emails; an unrenderable reminder is settled failed instead."""
        outgoing: list[OutgoingEmail] = []
        failed: list[SendResult] = []
        for item in items:
            moment = as_of or item.sending_at or self.clock()
            try:
                message = self.composer.compose(item, moment)
            except RenderError as exc:
                log.warning("reminder.unrenderable", reminder_id=item.reminder_id, error=str(exc))
                failed.append(SendResult(item.reminder_id, RequestStatus.FAILED, error=str(exc)))
                continue
            self._named[item.reminder_id] = item
            outgoing.append(OutgoingEmail(item.reminder_id, item.reminder_id, message, key))
        self._settle(failed, repeat=False)
        return outgoing

    def _trouble(self, exc: ProviderError, outgoing: Sequence[OutgoingEmail], repeat: bool) -> bool:
        """The call failed as a whole. What went out before is settled; a repeat stays in
        flight (to be repeated under its key); a first try is back to pending, unless the
        provider may have taken it (in doubt) and honours no key."""
        done = exc.results if isinstance(exc, ProviderUnavailable) else []
        self._settle(done, repeat)
        rest = [o.request_id for o in outgoing if o.request_id not in {r.request_id for r in done}]
        log.warning("reminders.provider_failed", provider=self.provider.name, error=str(exc))
        # ProviderUnavailable: nothing of the rest went out; any other ProviderError is an
        # answer we cannot read, so the call may have been taken, and so may a lost one.
        in_doubt = not isinstance(exc, ProviderUnavailable)
        if isinstance(exc, ProviderLost):
            if exc.key == outgoing[0].batch_key:
                in_doubt = True
            else:  # one message lost after going out alone, under a key of its own
                self._hold(exc.lost, str(exc))
                rest = [rid for rid in rest if rid not in exc.lost]
        if in_doubt and not self.provider.honours_idempotency_key:
            self._hold(rest, str(exc))
        elif repeat or in_doubt:
            self.counts.waiting += len(rest)  # left in flight: repeated as it was next time
        else:
            back = [ReminderSettlement(rid, RequestStatus.PENDING, error=str(exc)) for rid in rest]
            self.ledger.reminders.settle(back, self.clock())
            self.counts.waiting += len(rest)
        return False

    def _settle(self, results: Sequence[SendResult], repeat: bool) -> None:
        doubt = [r.request_id for r in results if r.status == RequestStatus.IN_DOUBT]
        self._hold(doubt, "the provider could not say whether it was sent")
        # A repeat the provider refused for now stays in flight, to go out as it was.
        keep = {RequestStatus.IN_DOUBT} | ({RequestStatus.PENDING} if repeat else set())
        settlements = [
            ReminderSettlement(r.request_id, r.status, r.provider_message_id, r.error)
            for r in results
            if r.status not in keep
        ]
        self.ledger.reminders.settle(settlements, self.clock())
        for result in results:
            self._count(result)

    def _count(self, result: SendResult) -> None:
        item = self._named.get(result.request_id)
        fields = {
            "reminder_id": result.request_id,
            "request_id": item.request_id if item else None,
            "kind": str(item.kind) if item else None,
        }
        if result.status == RequestStatus.SENT:
            self.counts.sent += 1
            email = item.email if item else None
            log.info(
                "reminder.sent",
                **fields,
                email=mask_email(email) if email else None,
                person=_person(item.person_key if item else None),
                provider=self.provider.name,
                provider_message_id=result.provider_message_id,
            )
            return
        if result.status == RequestStatus.REJECTED:
            self.counts.rejected += 1
        elif result.status == RequestStatus.FAILED:
            self.counts.failed += 1
        elif result.status == RequestStatus.PENDING:
            self.counts.waiting += 1
        log.warning("reminder.not_sent", **fields, status=str(result.status), error=result.error)

    def _hold(self, reminder_ids: Sequence[str], why: str) -> None:
        """In flight and perhaps sent: in doubt for good, the address forgotten."""
        if reminder_ids:
            held = self.ledger.reminders.mark_in_doubt(reminder_ids, why)
            self.counts.in_doubt += held
            log.error("reminders.in_doubt", count=held, error=why)


def _by_batch(items: Sequence[DueReminder]) -> dict[str, list[DueReminder]]:
    groups: dict[str, list[DueReminder]] = {}
    for item in items:
        groups.setdefault(item.batch_key or "", []).append(item)
    return groups


def _batches(items: Sequence[str], size: int) -> list[Sequence[str]]:
    step = max(size, 1)
    return [items[start : start + step] for start in range(0, len(items), step)]


def _batch_key(reminder_ids: Sequence[str]) -> str:
    """The same for the same reminders, whatever their order."""
    return hashlib.sha256("\n".join(sorted(reminder_ids)).encode("ascii")).hexdigest()[:40]


def _person(person_key: str | None) -> str | None:
    """The log's name for a person: the start of their email key, as the survey's log has it
    (``sync.people.person_tag``), never the address."""
    if person_key is None or not person_key.startswith("e:"):
        return None
    return person_key[2:14]
