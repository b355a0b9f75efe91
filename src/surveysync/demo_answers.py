"""The demo's month of answers: what the demo store's customers (and their mailboxes' link
scanners) do with the survey emails the nightly runs sent, played through the code the
survey page records visits with (``ledger.answers.record`` / ``record_side``, judged by
``answer_rules``), with the clock moving through the month: every visit carries its own time.

    who                      what they do                               how it counts
    -----------------------  -----------------------------------------  -----------------------
    about 35 % of customers  click a score; half of them send the form  confirmed, or clicked
                             too (some with a comment in their own      once the settle window
                             language), a few change their mind         passes
    promoters who sent it    some follow the review invitation          a review click
    about 5 % of mailboxes   a link scanner fetches all 11 score links  never (scanner pass)
                             and the unsubscribe page within seconds
                             of delivery, as a headless browser or
                             posing as a person's

How often customers answer, and how they score, differs by location and by technician, so
the report has a best and a worst of each to show. Seeded: the same seed plays the same
month. Visits later than ``now`` are not played (those customers have not read it yet).

Never sends anything and never calls the page over HTTP: it writes visits to the demo's own
ledger, and alerts stay off in the demo's config (``[alerts] to`` is empty).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import select

from surveysync.answer_rules import (
    AnswerPolicy,
    Outcome,
    Visit,
    VisitKind,
    clean_comment,
    looks_automated,
)
from surveysync.config import Settings
from surveysync.ledger import Ledger, open_ledger
from surveysync.ledger.schema import requests
from surveysync.model import RequestStatus


@dataclass(frozen=True, slots=True)
class Mix:
    rate: float  # chance that a survey is answered (a factor, for technicians)
    lean: float  # added to the mean score


# By location id and by technician: the workshop scores lowest, Bram's customers answer
# least and score lowest, Anouk's the other way round.
LOCATION_MIX = {"1": Mix(0.40, 0.5), "2": Mix(0.29, -0.2), "3": Mix(0.34, -1.3)}
EMPLOYEE_MIX = {
    "Anouk": Mix(1.10, 0.7),
    "Bram": Mix(0.82, -1.4),
    "Carmen": Mix(1.00, 0.2),
    "Dae-jung": Mix(1.05, 0.0),
}
_NEUTRAL = Mix(0.35, 0.0)
_NO_EFFECT = Mix(1.0, 0.0)
MEAN_SCORE = 8.5
SCORE_SPREAD = 1.9
SCANNED = 0.05  # share of mailboxes whose scanner fetches every link
# Form senders who leave a comment, by what they scored (detractor, passive, promoter).
COMMENTS_BY_KIND = {"detractor": 0.75, "passive": 0.35, "promoter": 0.4}
# Form senders who follow the review invitation (shown to everyone by default).
REVIEW_CLICKS_BY_KIND = {"detractor": 0.02, "passive": 0.05, "promoter": 0.15}

BROWSERS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
)
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/124.0.0.0 Safari/537.36"
)

# What customers write, in their own language, by what they scored.
COMMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "promoter": (
            "Great advice, and my bike was ready a day early.",
            "Friendly staff who clearly know their bikes.",
            "Quick fix of my gears, fair price.",
        ),
        "passive": (
            "Good service, but I had to wait a while at the counter.",
            "Fine, though the parts were expensive.",
        ),
        "detractor": (
            "My repair took two weeks and nobody called me.",
            "The brakes still squeak after the service & I paid €85 for it.",
            "I was told 'ready Friday'; it was ready on Tuesday.",
        ),
    },
    "nl": {
        "promoter": (
            "Super geholpen, de fiets was een dag eerder klaar.",
            "Vriendelijke monteur die echt de tijd nam.",
            "Snel en netjes, top!",
        ),
        "passive": (
            "Prima service, wel lang moeten wachten.",
            "Goed, maar de onderdelen zijn prijzig.",
        ),
        "detractor": (
            "Reparatie duurde twee weken en niemand belde terug.",
            "Remmen piepen nog steeds na de onderhoudsbeurt.",
            "Veel te duur voor een simpele band.",
        ),
    },
    "es": {
        "promoter": ("Muy buena atención, la bici quedó perfecta.", "Personal amable y rápido."),
        "passive": ("Bien, aunque tuve que esperar bastante.",),
        "detractor": (
            "La reparación tardó dos semanas y nadie me avisó.",
            "Los frenos siguen haciendo ruido.",
        ),
    },
    "ko": {
        "promoter": ("친절하고 수리도 빨랐어요.", "자전거 상태가 아주 좋아졌습니다."),
        "passive": ("괜찮았지만 기다리는 시간이 길었어요.",),
        "detractor": ("수리가 2주나 걸렸는데 연락이 없었어요.", "브레이크 소리가 여전히 나요."),
    },
    "sl": {
        "promoter": ("Odlična storitev, kolo je bilo pripravljeno prej.", "Prijazno osebje."),
        "passive": ("V redu, a čakal sem precej dolgo.",),
        "detractor": (
            "Popravilo je trajalo dva tedna, nihče me ni poklical.",
            "Zavore še vedno škripljejo.",
        ),
    },
}


@dataclass(frozen=True, slots=True)
class SentSurvey:
    request_id: str
    sent_at: datetime
    location_id: str | None
    employee_name: str | None
    locale: str | None


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    request_id: str
    visit: Visit
    by: str  # "person" or "scanner"

    @property
    def client(self) -> str:
        """A stand-in for the page's keyed hash of the visitor's address and user agent:
        one per survey and visitor, never anything real."""
        return hashlib.sha256(f"{self.request_id}/{self.by}".encode()).hexdigest()[:32]


def play_answers(settings: Settings, now: datetime, seed: int) -> Counter[str]:
    """Play the month's answers to every survey the demo sent, then count the clicks whose
    settle window has passed (as the page's sweep would). Returns what was played
    (``played``)."""
    ledger = open_ledger(settings)
    try:
        surveys = sent_surveys(ledger)
        planned = plan_month(surveys, settings, seed, now)
        policy = AnswerPolicy.of(settings.web)
        for visit in planned:  # the page's clock, moving through the month
            record(ledger, visit, policy)
        ledger.answers.settle_due(now)
    finally:
        ledger.close()
    return played(planned)


def plan_month(
    surveys: list[SentSurvey], settings: Settings, seed: int, now: datetime
) -> list[PlannedVisit]:
    """Every visit up to ``now`` to these surveys, in time order; the same seed, the same
    visits."""
    planner = MonthPlanner(random.Random(seed), settings)
    planned = [visit for survey in surveys for visit in planner.survey(survey)]
    return sorted((p for p in planned if p.visit.at <= now), key=lambda p: p.visit.at)


def sent_surveys(ledger: Ledger) -> list[SentSurvey]:
    """The store's sent surveys, in the order they went out."""
    query = (
        select(
            requests.c.id,
            requests.c.settled_at,
            requests.c.location_id,
            requests.c.employee_name,
            requests.c.locale,
        )
        .where(requests.c.store == ledger.store, requests.c.status == RequestStatus.SENT)
        .order_by(requests.c.settled_at, requests.c.transaction_id)
    )
    with ledger.reading() as conn:
        return [SentSurvey(*row) for row in conn.execute(query)]


def record(ledger: Ledger, planned: PlannedVisit, policy: AnswerPolicy) -> None:
    """One visit, written as the survey page writes it."""
    visit, rid = planned.visit, planned.request_id
    if visit.kind in (VisitKind.SCORE, VisitKind.FORM):
        ledger.answers.record(rid, visit, policy, planned.client)
    else:
        outcome = Outcome.REDIRECTED if visit.kind is VisitKind.REVIEW else Outcome.SHOWN
        ledger.answers.record_side(rid, visit, outcome, planned.client)


class MonthPlanner:
    """Decides, survey by survey, who visits which link when (pure but for its seeded
    random numbers)."""

    def __init__(self, rng: random.Random, settings: Settings) -> None:
        self.rng = rng
        self.tz = settings.store.tz
        self.review = settings.review

    def survey(self, survey: SentSurvey) -> list[PlannedVisit]:
        visits: list[PlannedVisit] = []
        if self.rng.random() < SCANNED:
            visits += self.scanner_pass(survey)
        where = LOCATION_MIX.get(survey.location_id or "", _NEUTRAL)
        who = EMPLOYEE_MIX.get(survey.employee_name or "", _NO_EFFECT)
        if self.rng.random() < where.rate * who.rate:
            visits += self.person(survey, self.score(where.lean + who.lean))
        return visits

    def score(self, lean: float) -> int:
        return max(0, min(10, round(self.rng.gauss(MEAN_SCORE + lean, SCORE_SPREAD))))

    def scanner_pass(self, survey: SentSurvey) -> list[PlannedVisit]:
        """Every score link in a few seconds, then the unsubscribe page, at delivery."""
        agent = HEADLESS if self.rng.random() < 0.5 else self.rng.choice(BROWSERS)
        # A headless browser says what it is; one posing as a person's browser does not,
        # and only the pass gives it away.
        automated = looks_automated("GET", agent)
        at = survey.sent_at + timedelta(seconds=self.rng.uniform(2, 240))
        visits = []
        for score in range(11):
            at += timedelta(seconds=self.rng.uniform(0.05, 0.5))
            visit = Visit(VisitKind.SCORE, at, score, automated=automated)
            visits.append(PlannedVisit(survey.request_id, visit, "scanner"))
        page = Visit(VisitKind.UNSUBSCRIBE, at + timedelta(seconds=0.3), automated=automated)
        return [*visits, PlannedVisit(survey.request_id, page, "scanner")]

    def person(self, survey: SentSurvey, score: int) -> list[PlannedVisit]:
        """A customer reads the email and clicks a score; then perhaps more."""
        rid = survey.request_id
        at = self.reading_time(survey.sent_at)
        automated = looks_automated("GET", self.rng.choice(BROWSERS))
        visits = [
            PlannedVisit(rid, Visit(VisitKind.SCORE, at, score, automated=automated), "person")
        ]
        then = self.rng.choices(("form", "click", "changed", "repeat"), (50, 36, 9, 5))[0]
        later = at + timedelta(seconds=self.rng.uniform(60, 300))
        if then == "form":
            visits += self.form(survey, score, later)
        elif then != "click":  # the same score again, or another one (a changed mind)
            again = score if then == "repeat" else max(0, min(10, score + self.rng.choice((-2, 2))))
            visits.append(PlannedVisit(rid, Visit(VisitKind.SCORE, later, again), "person"))
        return visits

    def form(self, survey: SentSurvey, score: int, at: datetime) -> list[PlannedVisit]:
        """The form sent, perhaps with a comment; then perhaps the review invitation."""
        kind = "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
        comment = None
        if self.rng.random() < COMMENTS_BY_KIND[kind]:
            words = COMMENTS.get(survey.locale or "en", COMMENTS["en"])[kind]
            comment = clean_comment(self.rng.choice(words) + "\n")  # as typed, as kept
        form = Visit(VisitKind.FORM, at, score, comment)
        visits = [PlannedVisit(survey.request_id, form, "person")]
        if self.review.invites(score) and self.rng.random() < REVIEW_CLICKS_BY_KIND[kind]:
            review = Visit(VisitKind.REVIEW, at + timedelta(seconds=self.rng.uniform(5, 90)))
            visits.append(PlannedVisit(survey.request_id, review, "person"))
        return visits

    def reading_time(self, sent_at: datetime) -> datetime:
        """When a customer opens the email: mostly the next day, in waking hours."""
        days = self.rng.choices((0, 1, 2, 3, 4, 5, 6), (8, 52, 17, 8, 6, 5, 4))[0]
        if days == 0:  # still up when it arrived
            return sent_at + timedelta(minutes=self.rng.uniform(5, 50))
        day = sent_at.astimezone(self.tz).date() + timedelta(days=days)
        seconds = self.rng.uniform(7 * 3600, 22 * 3600)
        return datetime.combine(day, time(0), self.tz) + timedelta(seconds=seconds)


def played(planned: list[PlannedVisit]) -> Counter[str]:
    """What was played: visits, surveys a person visited, forms, comments, review clicks,
    scanner passes."""
    counts: Counter[str] = Counter(visits=len(planned))
    counts["people"] = len({p.request_id for p in planned if p.by == "person"})
    counts["scanner_passes"] = len({p.request_id for p in planned if p.by == "scanner"})
    for p in planned:
        if p.visit.kind is VisitKind.FORM:
            counts["forms"] += 1
            counts["comments"] += p.visit.comment is not None
        elif p.visit.kind is VisitKind.REVIEW:
            counts["review_clicks"] += 1
    return counts
