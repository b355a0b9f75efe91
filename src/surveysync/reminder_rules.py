"""Reminders: whether one goes out tonight, waits for a later night, or is dropped for good.

Two kinds, each at most once per survey request, and only after a survey that was sent:

    kind       for whom                                          due (store days after the
                                                                 survey email)
    ---------  ------------------------------------------------  ---------------------------
    review     answered (the answer counts), invited by          ``review.reminder_days`` (7)
               ``review.invite`` for that score, and did not
               follow the review link
    no_answer  did not answer (a scanner's pass is no answer)    ``reminders.no_answer_days``
                                                                 (0: off)

``decide`` says ``send``, ``wait`` or ``cancel`` with a stable reason (``CancelReason``, the
word the ledger keeps in the reminder's ``error``). It cancels as soon as a reminder can no
longer go out (unsubscribed, superseded by a newer survey, the review link followed, an
answer that rules the kind out), so that the address kept for it is forgotten at once;
before its day it otherwise waits; on its day it sends, or cancels when the person turned
out not to be one it is for. A provisional click whose settle window is still open is not
known yet: the reminder waits a night. One that could not go out within ``LATE_LIMIT`` of its
day (the provider down for days) is dropped as ``too_late``.

"Invited" means the settings invite that score (``ReviewSettings.invites``): ``everyone``
who answered, or ``promoters`` only. So someone who clicked a score and never saw the
thank-you page is invited by the reminder itself.

Pure: no I/O and no clock reads; the ledger gathers the facts (``ledger.reminders``) and the
nightly run passes ``now`` in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from zoneinfo import ZoneInfo

from surveysync.config import ReminderSettings, ReviewSettings
from surveysync.model import COUNTED, ResponseStatus
from surveysync.windows import day_start

# A reminder that could not go out within this long after its day is dropped: a review
# reminder two weeks after the visit is no longer "a week later".
LATE_LIMIT = timedelta(days=3)


class ReminderKind(StrEnum):
    REVIEW = "review"  # the review invitation, once more
    NO_ANSWER = "no_answer"  # the survey itself, once more


class CancelReason(StrEnum):
    """Why a reminder will never go out; stable codes, kept in the reminder's ``error``."""

    SURVEY_NOT_SENT = "survey_not_sent"  # only a sent survey is followed up
    SWITCHED_OFF = "switched_off"  # the operator turned this kind of reminder off since
    UNSUBSCRIBED = "unsubscribed"  # ledger or provider suppression, by email or customer
    SUPERSEDED = "superseded"  # a newer survey went to the same person since
    REVIEW_CLICKED = "review_clicked"  # the review link was followed already
    NOT_INVITED = "not_invited"  # answered with a score the settings do not invite
    NOT_ANSWERED = "not_answered"  # a review reminder, but no answer by its day
    ANSWERED = "answered"  # a no-answer reminder, but the survey was answered
    TOO_LATE = "too_late"  # could not go out within LATE_LIMIT of its day


class Action(StrEnum):
    SEND = "send"
    WAIT = "wait"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reason: CancelReason | None = None  # set when cancelled


SEND = Verdict(Action.SEND)
WAIT = Verdict(Action.WAIT)


def cancel(reason: CancelReason) -> Verdict:
    return Verdict(Action.CANCEL, reason)


@dataclass(frozen=True, slots=True)
class ReminderFacts:
    """What the ledger knows about one reminder and the survey it follows up."""

    kind: ReminderKind
    due_at: datetime
    survey_sent: bool  # the survey request's status is sent
    answer: ResponseStatus | None  # the survey's answer, if any visit made one
    score: int | None
    settle_due_at: datetime | None  # a provisional answer counts from then on
    review_clicked: bool  # a visit to the review link (/r/) is recorded
    suppressed: bool  # the person (email or customer key) or the sale is suppressed
    superseded: bool  # a newer survey was sent to the same person


class Answered(Enum):
    NO = "no"
    YES = "yes"
    NOT_YET_KNOWN = "not_yet_known"  # a provisional click inside its settle window


def answered(facts: ReminderFacts, now: datetime) -> Answered:
    """Whether the survey's answer counts at ``now`` (as ``surveysync.model.COUNTED`` says,
    a provisional one counting once its settle window has passed)."""
    if facts.answer in COUNTED:
        return Answered.YES
    if facts.answer is ResponseStatus.PROVISIONAL:
        due = facts.settle_due_at
        return Answered.YES if due is not None and due <= now else Answered.NOT_YET_KNOWN
    return Answered.NO  # no visit, or only a scanner's


def decide(
    facts: ReminderFacts, review: ReviewSettings, reminders: ReminderSettings, now: datetime
) -> Verdict:
    """Send, wait or cancel (see the module docstring)."""
    gone = _never(facts, review, reminders)
    if gone is not None:
        return cancel(gone)
    state = answered(facts, now)
    if facts.kind is ReminderKind.REVIEW:
        verdict = _review(facts, state, review, now)
    else:
        verdict = _no_answer(facts, state, now)
    if verdict.action is not Action.CANCEL and now >= facts.due_at + LATE_LIMIT:
        return cancel(CancelReason.TOO_LATE)
    return verdict


def _never(
    facts: ReminderFacts, review: ReviewSettings, reminders: ReminderSettings
) -> CancelReason | None:
    """What rules out either kind, whatever the answer."""
    if not facts.survey_sent:
        return CancelReason.SURVEY_NOT_SENT
    if not enabled(facts.kind, review, reminders):
        return CancelReason.SWITCHED_OFF
    if facts.suppressed:
        return CancelReason.UNSUBSCRIBED
    if facts.superseded:
        return CancelReason.SUPERSEDED
    return None


def _review(
    facts: ReminderFacts, state: Answered, review: ReviewSettings, now: datetime
) -> Verdict:
    if facts.review_clicked:
        return cancel(CancelReason.REVIEW_CLICKED)
    if state is Answered.YES and not review.invites(facts.score):
        return cancel(CancelReason.NOT_INVITED)
    if now < facts.due_at or state is Answered.NOT_YET_KNOWN:
        return WAIT
    if state is Answered.NO:
        return cancel(CancelReason.NOT_ANSWERED)
    return SEND


def _no_answer(facts: ReminderFacts, state: Answered, now: datetime) -> Verdict:
    if state is Answered.YES:
        return cancel(CancelReason.ANSWERED)
    if now < facts.due_at or state is Answered.NOT_YET_KNOWN:
        return WAIT
    return SEND


def enabled(kind: ReminderKind, review: ReviewSettings, reminders: ReminderSettings) -> bool:
    if kind is ReminderKind.REVIEW:
        return review.reminds
    return reminders.no_answer_days > 0


@dataclass(frozen=True, slots=True)
class ReminderPlan:
    """Which reminders a survey sent now may get, and after how many store days."""

    delays: tuple[tuple[ReminderKind, int], ...]
    tz: ZoneInfo

    def due(self, sent_at: datetime) -> list[tuple[ReminderKind, datetime]]:
        """Each kind's due time for a survey sent at ``sent_at``: the start of the store day
        ``days`` after the sending day, so that the nightly run of that day sends it
        whatever the minute the survey went out."""
        day = sent_at.astimezone(self.tz).date()
        return [(kind, day_start(day + timedelta(days=n), self.tz)) for kind, n in self.delays]


def reminder_plan(
    review: ReviewSettings, reminders: ReminderSettings, tz: ZoneInfo
) -> ReminderPlan | None:
    """The plan these settings make; None when no reminder is on."""
    delays: list[tuple[ReminderKind, int]] = []
    if review.reminds:
        delays.append((ReminderKind.REVIEW, review.reminder_days))
    if reminders.no_answer_days > 0:
        delays.append((ReminderKind.NO_ANSWER, reminders.no_answer_days))
    return ReminderPlan(tuple(delays), tz) if delays else None
