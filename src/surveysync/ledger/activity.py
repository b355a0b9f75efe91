"""What became of survey requests after they were sent, for ``explain``: the answer as it
counts now, the review invitations followed, the visits that were not counted (a link
scanner's pass, a program, a click at delivery) and the reminder.

    for_requests(ledger, request_ids, now) -> {request_id: SurveyActivity}

A provisional answer whose settle window has passed reads ``clicked``, as the report
counts it, even before the survey page's sweep has written it so (``answer_rules.settled``).

Reads only; never writes, never derives an answer anew from the visits (the survey page
wrote what they amount to).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from surveysync.answer_rules import Answer, Outcome, VisitKind, settled
from surveysync.ledger.db import chunks
from surveysync.ledger.schema import clicks, reminders, responses
from surveysync.ledger.store import Ledger
from surveysync.model import COUNTED, RequestStatus, ResponseStatus

# Score visits that never count: a scanner's pass, a program, a click at delivery.
UNCOUNTED = (Outcome.SCANNER, Outcome.AUTOMATED, Outcome.EARLY)


@dataclass(frozen=True, slots=True)
class SurveyAnswer:
    """A survey's answer as it counts at the moment asked."""

    status: ResponseStatus
    score: int | None
    comment: str | None
    first_seen_at: datetime
    answered_at: datetime | None  # when it first counted
    settle_due_at: datetime | None  # provisional: counts from then, unless another click

    @property
    def counted(self) -> bool:
        return self.status in COUNTED and self.score is not None

    @property
    def when(self) -> datetime:
        """When it counted, or else when it was first seen."""
        return self.answered_at or self.first_seen_at


@dataclass(frozen=True, slots=True)
class Reminder:
    """A reminder about a survey (the ``reminders`` table)."""

    kind: str  # "review" (after an answer) or "no_answer" (to a non-answerer)
    status: str  # as that table keeps it (pending, sent, ...)
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class SurveyActivity:
    answer: SurveyAnswer | None  # None: no visit to a score link yet
    review_clicks: tuple[datetime, ...] = ()
    uncounted_visits: int = 0  # score visits by a scanner, a program, or at delivery
    uncounted_since: datetime | None = None  # the first of them
    reminder: Reminder | None = None


def for_requests(
    ledger: Ledger, request_ids: Sequence[str], now: datetime
) -> dict[str, SurveyActivity]:
    """Each request's activity; a request nobody visited has an empty one."""
    answers: dict[str, SurveyAnswer] = {}
    visits: dict[str, list[Any]] = {}
    with ledger.reading() as conn:
        for part in chunks(list(request_ids)):
            for row in conn.execute(select(responses).where(responses.c.request_id.in_(part))):
                answers[row.request_id] = _answer(row, now)
            for row in conn.execute(_notable_visits(part)):
                visits.setdefault(row.request_id, []).append(row)
    reminders = reminders_for(ledger, request_ids)
    return {
        rid: _activity(answers.get(rid), visits.get(rid, []), reminders.get(rid))
        for rid in request_ids
    }


def reminders_for(ledger: Ledger, request_ids: Sequence[str]) -> dict[str, Reminder]:
    """Each request's reminder (the ``reminders`` table): the one that went or may still go
    out when a request has both kinds, else the cancelled one, with when it was sent."""
    found: dict[str, Reminder] = {}
    with ledger.reading() as conn:
        for part in chunks(list(request_ids)):
            query = select(
                reminders.c.request_id,
                reminders.c.kind,
                reminders.c.status,
                reminders.c.settled_at,
            ).where(reminders.c.request_id.in_(part))
            for request_id, kind, status, settled_at in conn.execute(query):
                sent_at = settled_at if status == RequestStatus.SENT else None
                held = found.get(request_id)
                if held is None or held.status == RequestStatus.CANCELLED:
                    found[request_id] = Reminder(kind, status, sent_at)
    return found


def _notable_visits(request_ids: Sequence[str]) -> Any:
    """Review invitations followed, and score visits that did not count, in time order."""
    return (
        select(clicks.c.request_id, clicks.c.kind, clicks.c.at)
        .where(
            clicks.c.request_id.in_(request_ids),
            or_(
                clicks.c.kind == VisitKind.REVIEW,
                (clicks.c.kind == VisitKind.SCORE) & clicks.c.outcome.in_(UNCOUNTED),
            ),
        )
        .order_by(clicks.c.at, clicks.c.id)
    )


def _answer(row: Any, now: datetime) -> SurveyAnswer:
    stored = Answer(
        ResponseStatus(row.status),
        row.score,
        row.comment,
        row.first_seen_at,
        row.updated_at,
        row.settle_due_at,
        row.answered_at,
    )
    answer = settled(stored, now) or stored
    return SurveyAnswer(
        answer.status,
        answer.score,
        answer.comment,
        answer.first_seen_at,
        answer.answered_at,
        answer.settle_due_at,
    )


def _activity(
    answer: SurveyAnswer | None, visits: list[Any], reminder: Reminder | None
) -> SurveyActivity:
    reviews = tuple(v.at for v in visits if v.kind == VisitKind.REVIEW)
    uncounted = [v.at for v in visits if v.kind == VisitKind.SCORE]
    return SurveyActivity(
        answer,
        reviews,
        len(uncounted),
        uncounted[0] if uncounted else None,
        reminder,
    )
