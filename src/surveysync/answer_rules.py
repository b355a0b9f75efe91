"""How the visits a survey email's links receive become an answer, or do not.

Mail security scanners (Microsoft Defender Safe Links, Mimecast, Proofpoint, webmail
prefetchers) fetch every link of an incoming email, some with a headless browser, often within
seconds of delivery. A person clicks one score. The rules tell them apart from the visits
alone, so a scanner's pass never becomes an answer while one click with the tab closed still
counts:

    visit                              what it is
    ---------------------------------  ---------------------------------------------------------
    score click near a click on        ``scanner``: a pass over the links; never counts, and
      another score (scanner_seconds)    neither does any click of that pass
    score click by a program           ``automated``: HEAD requests, empty or tool user agents
    score click right after sending    ``early``: within early_seconds of the email's send
                                         time, when single-link scanners strike
    any other score click              a person's click:
                                         first one          -> ``provisional`` (settle window
                                                               starts)
                                         same score again   -> ``repeat`` (nothing changes)
                                         another score      -> ``changed`` (window restarts)
                                         after the answer   -> ``seen`` (only a sent form
                                         is final             changes a final answer)
    form sent                          ``confirmed``: final; a later form may change it

A provisional answer becomes ``clicked`` (final, counted) when its settle window passes with
no other person's click. Because a visit's class depends on its neighbours on both sides, the
whole history is classified afresh on every visit (``derive``): the first click of a scanner
pass briefly looks like a person's until the second arrives, and then both are the pass; an
answer given before the pass stands. A final answer can never be undone by a later pass: the
settle window is longer than the scanner window, so no later click can be a neighbour of the
click that made it.

Pure: no I/O, no clock reads (times come in with the visits and as ``now``). The ledger keeps
the visits (``ledger.answers``) and the survey page feeds them in (``surveysync.web``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from surveysync.model import ResponseStatus

if TYPE_CHECKING:  # settings are handed in; this module reads nothing itself
    from surveysync.config import WebSettings

COMMENT_LIMIT = 2_000  # characters a comment may hold


class VisitKind(StrEnum):
    SCORE = "score"  # a score link followed (GET)
    FORM = "form"  # the survey form sent (POST)
    REVIEW = "review"  # the review invitation followed
    UNSUBSCRIBE = "unsubscribe"  # the unsubscribe page shown, or the unsubscribe sent


class Outcome(StrEnum):
    """What one visit did, as a report explains it."""

    PROVISIONAL = "provisional"
    CHANGED = "changed"
    REPEAT = "repeat"
    SEEN = "seen"
    SCANNER = "scanner"
    AUTOMATED = "automated"
    EARLY = "early"
    CONFIRMED = "confirmed"
    # not about the answer
    REDIRECTED = "redirected"  # review invitation followed
    SHOWN = "shown"  # unsubscribe page shown
    UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True, slots=True)
class Visit:
    kind: VisitKind
    at: datetime
    score: int | None = None
    comment: str | None = None  # a form's comment
    automated: bool = False  # sent by a program, by its method or user agent


@dataclass(frozen=True, slots=True)
class Answer:
    """A survey's answer as the ledger's ``responses`` row holds it."""

    status: ResponseStatus
    score: int | None
    comment: str | None
    first_seen_at: datetime
    updated_at: datetime
    settle_due_at: datetime | None = None  # while provisional
    answered_at: datetime | None = None  # when it first counted

    @property
    def final(self) -> bool:
        return self.status in (ResponseStatus.CLICKED, ResponseStatus.CONFIRMED)


@dataclass(frozen=True, slots=True)
class AnswerPolicy:
    settle: timedelta  # a lone click counts after this
    scanner_window: timedelta  # clicks on different scores this close are a scanner
    early_window: timedelta  # clicks this soon after sending are a scanner at delivery

    @classmethod
    def of(cls, web: WebSettings) -> AnswerPolicy:
        """The policy ``[web]`` configures: the survey page and the demo judge alike."""
        return cls(
            settle=timedelta(minutes=web.settle_minutes),
            scanner_window=timedelta(seconds=web.scanner_seconds),
            early_window=timedelta(seconds=web.early_seconds),
        )


@dataclass(frozen=True, slots=True)
class Derivation:
    answer: Answer | None  # None: no score or form visit yet
    outcomes: list[Outcome]  # one per visit, in the order given


def derive(
    visits: Sequence[Visit], sent_at: datetime | None, policy: AnswerPolicy, now: datetime
) -> Derivation:
    """The answer a request's visits amount to at ``now``, and what each visit did."""
    order = sorted(range(len(visits)), key=lambda i: visits[i].at)
    classes = _classify(visits, sent_at, policy)
    outcomes: list[Outcome | None] = [None] * len(visits)
    answer: Answer | None = None
    for i in order:
        visit = visits[i]
        if visit.kind not in (VisitKind.SCORE, VisitKind.FORM):
            continue
        answer = settled(answer, visit.at)
        answer, outcomes[i] = _apply(answer, visit, classes[i], policy)
    done = [o or _side_outcome(v) for o, v in zip(outcomes, visits, strict=True)]
    return Derivation(settled(answer, now), done)


def settled(answer: Answer | None, now: datetime) -> Answer | None:
    """A provisional answer whose window has passed is clicked, counted from the window's end."""
    if answer is None or answer.status is not ResponseStatus.PROVISIONAL:
        return answer
    due = answer.settle_due_at
    if due is None or now < due:
        return answer
    return replace(
        answer, status=ResponseStatus.CLICKED, settle_due_at=None, answered_at=due, updated_at=due
    )


def _classify(
    visits: Sequence[Visit], sent_at: datetime | None, policy: AnswerPolicy
) -> list[Outcome | None]:
    """Each score click's class (scanner, automated, early, or None for a person's)."""
    in_pass = _in_a_pass(visits, policy.scanner_window)
    classes: list[Outcome | None] = []
    for i, visit in enumerate(visits):
        if visit.kind is not VisitKind.SCORE:
            classes.append(None)
        elif i in in_pass:
            classes.append(Outcome.SCANNER)
        elif visit.automated:
            classes.append(Outcome.AUTOMATED)
        elif sent_at is not None and visit.at - sent_at < policy.early_window:
            classes.append(Outcome.EARLY)
        else:
            classes.append(None)
    return classes


def _in_a_pass(visits: Sequence[Visit], window: timedelta) -> set[int]:
    """The score clicks with a click on another score within ``window`` on either side.
    One sweep over the clicks in time order, keeping the scores inside the window."""
    order = sorted(
        (i for i, v in enumerate(visits) if v.kind is VisitKind.SCORE), key=lambda i: visits[i].at
    )
    inside: Counter[int | None] = Counter()
    low = high = 0
    found: set[int] = set()
    for i in order:
        at = visits[i].at
        while high < len(order) and visits[order[high]].at - at <= window:
            inside[visits[order[high]].score] += 1
            high += 1
        while at - visits[order[low]].at > window:
            inside[visits[order[low]].score] -= 1
            low += 1
        if inside[visits[i].score] < high - low:  # some click in the window has another score
            found.add(i)
    return found


def _apply(
    answer: Answer | None, visit: Visit, kind: Outcome | None, policy: AnswerPolicy
) -> tuple[Answer, Outcome]:
    if visit.kind is VisitKind.FORM:
        return _confirm(answer, visit), Outcome.CONFIRMED
    if kind is not None:  # not a person's click: at most it shows that someone looked
        return answer or _uncounted(visit), kind
    if answer is not None and answer.final:
        return answer, Outcome.SEEN
    if answer is not None and answer.status is ResponseStatus.PROVISIONAL:
        if answer.score == visit.score:
            return answer, Outcome.REPEAT
        return _provisional(answer, visit, policy), Outcome.CHANGED
    return _provisional(answer, visit, policy), Outcome.PROVISIONAL


def _uncounted(visit: Visit) -> Answer:
    return Answer(ResponseStatus.SCANNER, None, None, visit.at, visit.at)


def _provisional(answer: Answer | None, visit: Visit, policy: AnswerPolicy) -> Answer:
    return Answer(
        ResponseStatus.PROVISIONAL,
        visit.score,
        None,
        answer.first_seen_at if answer else visit.at,
        visit.at,
        settle_due_at=visit.at + policy.settle,
    )


def _confirm(answer: Answer | None, visit: Visit) -> Answer:
    answered_at = answer.answered_at if answer and answer.answered_at else visit.at
    return Answer(
        ResponseStatus.CONFIRMED,
        visit.score,
        visit.comment,
        answer.first_seen_at if answer else visit.at,
        visit.at,
        answered_at=answered_at,
    )


def _side_outcome(visit: Visit) -> Outcome:
    """Review and unsubscribe visits: recorded with their own outcome by the caller."""
    return Outcome.REDIRECTED if visit.kind is VisitKind.REVIEW else Outcome.SHOWN


# --- the edge's facts, judged here so that they are tested like the rules ----------------

# User agents of programs that fetch links (not browsers a person holds). Scanners that
# pretend to be a browser are caught by the scanner window instead.
_TOOL_AGENTS = (
    "bot",
    "spider",
    "crawl",
    "preview",
    "scanner",
    "python-",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "libwww",
    "okhttp",
    "headlesschrome",
    "phantomjs",
)


def looks_automated(method: str, user_agent: str | None) -> bool:
    """Whether a visit was made by a program: a HEAD request, or a tool's user agent."""
    if method.upper() == "HEAD":
        return True
    agent = (user_agent or "").strip().lower()
    return not agent or any(word in agent for word in _TOOL_AGENTS)


class CommentProblem(ValueError):
    """A comment that cannot be kept (too long)."""


def clean_comment(text: str | None) -> str | None:
    """A comment as it is kept: line ends made one kind, control characters dropped, blank
    space trimmed; None when nothing is left. Longer than COMMENT_LIMIT: CommentProblem."""
    if text is None:
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(c for c in text if _kept(c))
    text = text.strip()
    if len(text) > COMMENT_LIMIT:
        raise CommentProblem(f"a comment holds at most {COMMENT_LIMIT} characters")
    return text or None


def _kept(char: str) -> bool:
    """Line breaks, tabs and printable text stay; control characters (C0, DEL, C1) go."""
    return char in "\n\t" or not (char < " " or "\x7f" <= char <= "\x9f")


def parse_score(value: str | None) -> int | None:
    """A score 0-10 from a form field, or None when it is missing or not one."""
    value = (value or "").strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 2:
        return None
    score = int(value)
    return score if 0 <= score <= 10 else None
