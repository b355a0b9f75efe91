"""Who gets which reminder when: the pure rules, case by case, with the night passed in."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from surveysync.config import ReminderSettings, ReviewInvite, ReviewSettings
from surveysync.model import ResponseStatus
from surveysync.reminder_rules import (
    LATE_LIMIT,
    Action,
    CancelReason,
    ReminderFacts,
    ReminderKind,
    decide,
    reminder_plan,
)

TZ = ZoneInfo("Europe/Amsterdam")
SENT = datetime(2026, 3, 10, 23, 5, tzinfo=TZ)
DUE = datetime(2026, 3, 17, tzinfo=TZ)
NIGHT = datetime(2026, 3, 17, 23, tzinfo=TZ)
REVIEW = ReviewSettings(url="https://g.page/r/demo/review")
NO_ANSWER = ReminderSettings(no_answer_days=3)

ANSWERED_9 = ReminderFacts(
    kind=ReminderKind.REVIEW,
    due_at=DUE,
    survey_sent=True,
    answer=ResponseStatus.CONFIRMED,
    score=9,
    settle_due_at=None,
    review_clicked=False,
    suppressed=False,
    superseded=False,
)
SILENT = replace(ANSWERED_9, kind=ReminderKind.NO_ANSWER, answer=None, score=None)


def review(facts: ReminderFacts, now: datetime = NIGHT, **settings: object) -> object:
    verdict = decide(facts, REVIEW.model_copy(update=settings), NO_ANSWER, now)
    return verdict.reason or verdict.action


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, Action.SEND),
        ({"answer": ResponseStatus.CLICKED}, Action.SEND),
        ({"answer": ResponseStatus.SCANNER, "score": None}, CancelReason.NOT_ANSWERED),
        ({"answer": None, "score": None}, CancelReason.NOT_ANSWERED),
        ({"review_clicked": True}, CancelReason.REVIEW_CLICKED),
        ({"suppressed": True}, CancelReason.UNSUBSCRIBED),
        ({"superseded": True}, CancelReason.SUPERSEDED),
        ({"survey_sent": False}, CancelReason.SURVEY_NOT_SENT),
    ],
)
def test_on_its_day_the_review_reminder_goes_only_to_an_invited_answer(
    change: dict[str, object], expected: object
) -> None:
    """On the seventh night: a counted answer with the link not followed gets it; no answer,
    a scanner's pass, a followed link, an unsubscribe, a newer survey or an unsent survey
    cancel it."""
    assert review(replace(ANSWERED_9, **change)) == expected  # type: ignore[arg-type]


def test_before_its_day_the_review_reminder_waits_unless_it_is_already_ruled_out() -> None:
    """Before its day it waits, even without an answer yet; what rules it out for good (an
    unsubscribe, the link followed) cancels it at once, so the address goes at once."""
    early = NIGHT - timedelta(days=3)
    assert review(ANSWERED_9, early) == Action.WAIT
    assert review(replace(ANSWERED_9, answer=None, score=None), early) == Action.WAIT
    assert review(replace(ANSWERED_9, suppressed=True), early) == CancelReason.UNSUBSCRIBED
    assert review(replace(ANSWERED_9, review_clicked=True), early) == CancelReason.REVIEW_CLICKED


@pytest.mark.parametrize(
    ("invite", "score", "expected"),
    [
        (ReviewInvite.EVERYONE, 2, Action.SEND),
        (ReviewInvite.PROMOTERS, 9, Action.SEND),
        (ReviewInvite.PROMOTERS, 8, CancelReason.NOT_INVITED),
        (ReviewInvite.OFF, 10, CancelReason.SWITCHED_OFF),
    ],
)
def test_who_is_invited_follows_review_invite(
    invite: ReviewInvite, score: int, expected: object
) -> None:
    """``everyone`` reminds a 2 too (no review gating); ``promoters`` only 9 and 10; ``off``
    none at all."""
    assert review(replace(ANSWERED_9, score=score), invite=invite) == expected


def test_a_click_still_inside_its_settle_window_waits_a_night() -> None:
    """A provisional click counts once its window has passed; until then it is not known
    whether it is an answer, so neither kind goes out or is dropped."""
    open_click = replace(
        ANSWERED_9, answer=ResponseStatus.PROVISIONAL, settle_due_at=NIGHT + timedelta(minutes=5)
    )
    passed = replace(open_click, settle_due_at=NIGHT - timedelta(minutes=5))
    assert review(open_click) == Action.WAIT
    assert review(passed) == Action.SEND
    silent_click = replace(open_click, kind=ReminderKind.NO_ANSWER)
    assert decide(silent_click, REVIEW, NO_ANSWER, NIGHT).action is Action.WAIT
    counted_click = replace(passed, kind=ReminderKind.NO_ANSWER)
    assert decide(counted_click, REVIEW, NO_ANSWER, NIGHT).reason is CancelReason.ANSWERED


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, Action.SEND),
        ({"answer": ResponseStatus.SCANNER}, Action.SEND),
        ({"answer": ResponseStatus.CONFIRMED, "score": 3}, CancelReason.ANSWERED),
        ({"suppressed": True}, CancelReason.UNSUBSCRIBED),
        ({"due_at": NIGHT + timedelta(hours=1)}, Action.WAIT),
    ],
)
def test_the_no_answer_reminder_goes_to_those_who_did_not_answer(
    change: dict[str, object], expected: object
) -> None:
    """Silence or a scanner's pass gets it on its day; an answer or an unsubscribe cancels it;
    before its day it waits."""
    verdict = decide(replace(SILENT, **change), REVIEW, NO_ANSWER, NIGHT)  # type: ignore[arg-type]
    assert (verdict.reason or verdict.action) == expected


def test_a_reminder_switched_off_or_too_late_is_dropped() -> None:
    """Turned off since it was planned, or still not sent three days after its day (the
    provider down), a reminder is cancelled rather than sent late."""
    off = ReminderSettings(no_answer_days=0)
    assert decide(SILENT, REVIEW, off, NIGHT).reason is CancelReason.SWITCHED_OFF
    late = DUE + LATE_LIMIT
    assert decide(SILENT, REVIEW, NO_ANSWER, late).reason is CancelReason.TOO_LATE
    assert review(ANSWERED_9, late) == CancelReason.TOO_LATE


def test_a_reminder_is_due_at_the_start_of_its_store_day() -> None:
    """Planned from the survey's sending time: the start of the store day ``days`` later, so
    the nightly run of that day sends it whatever the minute the survey went out; none is
    planned when every reminder is off."""
    plan = reminder_plan(REVIEW, NO_ANSWER, TZ)
    assert plan is not None
    assert plan.due(SENT) == [
        (ReminderKind.REVIEW, DUE),
        (ReminderKind.NO_ANSWER, datetime(2026, 3, 13, tzinfo=TZ)),
    ]
    # Across the change to summer time (29 March): still local midnight.
    assert plan.due(datetime(2026, 3, 25, 23, tzinfo=TZ))[0][1] == datetime(2026, 4, 1, tzinfo=TZ)
    assert reminder_plan(ReviewSettings(), ReminderSettings(), TZ) is None
    no_days = REVIEW.model_copy(update={"reminder_days": 0})
    assert reminder_plan(no_days, ReminderSettings(), TZ) is None
