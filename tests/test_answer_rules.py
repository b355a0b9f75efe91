"""The answer rules alone: which visits to a survey email's links make an answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surveysync.answer_rules import (
    COMMENT_LIMIT,
    AnswerPolicy,
    CommentProblem,
    Outcome,
    Visit,
    VisitKind,
    clean_comment,
    derive,
    looks_automated,
    parse_score,
)
from surveysync.model import COUNTED, ResponseStatus

SENT = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)
T = SENT + timedelta(hours=2)
POLICY = AnswerPolicy(
    settle=timedelta(minutes=30),
    scanner_window=timedelta(seconds=15),
    early_window=timedelta(seconds=60),
)


def click(score: int, seconds: float = 0, *, automated: bool = False) -> Visit:
    return Visit(VisitKind.SCORE, T + timedelta(seconds=seconds), score, automated=automated)


def form(score: int, seconds: float, comment: str | None = None) -> Visit:
    return Visit(VisitKind.FORM, T + timedelta(seconds=seconds), score, comment)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def test_a_pass_over_all_eleven_links_within_a_second_never_counts() -> None:
    """A scanner's pass is kept as such, and stays uncounted however long one waits."""
    visits = [click(score, score * 0.09) for score in range(11)]
    result = derive(visits, SENT, POLICY, at(86_400))
    assert result.answer is not None and result.answer.status is ResponseStatus.SCANNER
    assert result.answer.score is None and result.answer.answered_at is None
    assert result.outcomes == [Outcome.SCANNER] * 11


def test_one_click_is_provisional_then_counts_when_its_window_passes() -> None:
    """A person who clicks one score and closes the tab is counted after the settle window."""
    visits = [click(9)]
    waiting = derive(visits, SENT, POLICY, at(29 * 60))
    assert waiting.answer is not None and waiting.answer.status is ResponseStatus.PROVISIONAL
    assert waiting.answer.score == 9 and waiting.answer.settle_due_at == at(30 * 60)
    counted = derive(visits, SENT, POLICY, at(30 * 60))
    assert counted.answer is not None and counted.answer.status is ResponseStatus.CLICKED
    assert counted.answer.answered_at == at(30 * 60)
    assert counted.outcomes == [Outcome.PROVISIONAL]


def test_another_score_a_minute_later_is_a_change_of_mind_that_restarts_the_window() -> None:
    """Clicking 6, then 8 a minute later, answers 8, counted 30 minutes after the 8."""
    result = derive([click(6), click(8, 60)], SENT, POLICY, at(60 + 29 * 60))
    assert result.answer is not None and result.answer.status is ResponseStatus.PROVISIONAL
    assert result.answer.score == 8 and result.outcomes == [Outcome.PROVISIONAL, Outcome.CHANGED]


def test_a_click_on_the_same_score_again_changes_nothing() -> None:
    """A double click, or a reload, is one answer with its first window."""
    result = derive([click(7), click(7, 1), click(7, 120)], SENT, POLICY, at(30 * 60))
    assert result.answer is not None and result.answer.status is ResponseStatus.CLICKED
    assert result.outcomes == [Outcome.PROVISIONAL, Outcome.REPEAT, Outcome.REPEAT]


def test_a_scanner_pass_after_a_persons_click_leaves_the_click_standing() -> None:
    """The email forwarded and scanned again: the person's 9 still counts."""
    visits = [click(9), *[click(score, 300 + score * 0.05) for score in range(11)]]
    result = derive(visits, SENT, POLICY, at(30 * 60))
    assert result.answer is not None and result.answer.status is ResponseStatus.CLICKED
    assert result.answer.score == 9
    assert result.outcomes == [Outcome.PROVISIONAL] + [Outcome.SCANNER] * 11


def test_a_real_click_or_a_form_after_a_scanner_pass_still_answers() -> None:
    """A pass at delivery does not stop the person's own click, or form, from counting."""
    scanned = [click(score, score * 0.05) for score in range(11)]
    clicked = derive([*scanned, click(3, 3600)], SENT, POLICY, at(3600 + 1800))
    assert clicked.answer is not None and clicked.answer.status is ResponseStatus.CLICKED
    assert clicked.answer.score == 3
    sent = derive([*scanned, form(4, 3600, "slow service")], SENT, POLICY, at(3600))
    assert sent.answer is not None and sent.answer.status is ResponseStatus.CONFIRMED
    assert (sent.answer.score, sent.answer.comment) == (4, "slow service")


def test_a_sent_form_counts_at_once_and_a_second_one_changes_it() -> None:
    """Send confirms at once; sending again changes score and comment, counted from the first."""
    result = derive([click(5), form(5, 20, "ok"), form(7, 80, "better")], SENT, POLICY, at(80))
    answer = result.answer
    assert answer is not None and answer.status is ResponseStatus.CONFIRMED
    assert (answer.score, answer.comment, answer.answered_at) == (7, "better", at(20))


def test_clicks_after_a_final_answer_only_show_the_page() -> None:
    """Once counted, a click elsewhere changes nothing; only the form may change it."""
    visits = [click(9), click(2, 3600), form(9, 10, "great")]
    result = derive(visits, SENT, POLICY, at(7200))
    assert result.answer is not None and result.answer.score == 9
    assert result.outcomes == [Outcome.PROVISIONAL, Outcome.SEEN, Outcome.CONFIRMED]


def test_programs_and_clicks_at_delivery_never_count() -> None:
    """HEAD requests and tool user agents, and a click within a minute of sending, are not a
    person's answer; the page still shows, and its form still counts."""
    by_tool = derive([click(0, automated=True)], SENT, POLICY, at(7200))
    assert by_tool.answer is not None and by_tool.answer.status not in COUNTED
    assert by_tool.outcomes == [Outcome.AUTOMATED]
    at_delivery = Visit(VisitKind.SCORE, SENT + timedelta(seconds=20), 0)
    early = derive([at_delivery], SENT, POLICY, at(7200))
    assert early.answer is not None and early.answer.status not in COUNTED
    assert early.outcomes == [Outcome.EARLY]
    confirmed = derive([at_delivery, form(1, 10)], SENT, POLICY, at(10))
    assert confirmed.answer is not None and confirmed.answer.status is ResponseStatus.CONFIRMED


@pytest.mark.parametrize(
    ("method", "agent", "automated"),
    [
        ("HEAD", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0", True),
        ("GET", None, True),
        ("GET", "", True),
        ("GET", "python-httpx/0.28.1", True),
        ("GET", "curl/8.5.0", True),
        ("GET", "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/124.0.0.0 Safari/537.36", True),
        ("GET", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", True),
        ("GET", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148", False),
        ("GET", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0 Safari/537.36", False),
    ],
)
def test_programs_are_told_by_their_method_or_user_agent(
    method: str, agent: str | None, automated: bool
) -> None:
    """Browsers people hold count as people; HEAD requests and tools do not."""
    assert looks_automated(method, agent) is automated


def test_comments_are_kept_as_text_within_the_limit() -> None:
    """Line ends become one kind, control characters go, and 2,000 characters is the most."""
    assert clean_comment("  Goed\r\ngeholpen\x00\x1b \t") == "Goed\ngeholpen"
    assert clean_comment("   ") is None and clean_comment(None) is None
    assert clean_comment("<b>👍</b>") == "<b>👍</b>"
    assert clean_comment("é" * COMMENT_LIMIT) == "é" * COMMENT_LIMIT
    with pytest.raises(CommentProblem):
        clean_comment("x" * (COMMENT_LIMIT + 1))


@pytest.mark.parametrize(
    ("raw", "score"),
    [("0", 0), ("10", 10), (" 7 ", 7), ("11", None), ("-1", None), ("٣", None), ("", None)],
)
def test_a_score_from_the_form_is_0_to_10_or_nothing(raw: str, score: int | None) -> None:
    """Anything but a plain 0 to 10 is no score at all."""
    assert parse_score(raw) == score


_scores = st.integers(min_value=0, max_value=10)
_times = st.floats(min_value=0, max_value=7200, allow_nan=False)
_visits = st.lists(
    st.builds(click, _scores, _times) | st.builds(form, _scores, _times), max_size=12
)


@given(_visits, st.randoms(use_true_random=False))
def test_the_answer_does_not_depend_on_the_order_visits_arrive_in(
    visits: list[Visit], shuffler: object
) -> None:
    """Concurrent visits commit in any order; the answer they amount to is the same."""
    shuffled = list(visits)
    shuffler.shuffle(shuffled)  # type: ignore[attr-defined]
    first = derive(visits, SENT, POLICY, at(10_000))
    again = derive(shuffled, SENT, POLICY, at(10_000))
    if len({(v.at, v.kind) for v in visits}) == len(visits):  # ties between forms: either wins
        assert first.answer == again.answer


@given(st.lists(_scores, min_size=2, max_size=11, unique=True), st.floats(0, 14))
def test_clicks_on_different_scores_within_the_window_never_count(
    scores: list[int], spread: float
) -> None:
    """However a pass is spread within the scanner window, it never becomes an answer."""
    visits = [click(score, spread * i / len(scores)) for i, score in enumerate(scores)]
    result = derive(visits, SENT, POLICY, at(86_400))
    assert result.answer is not None and result.answer.status not in COUNTED


@given(_visits)
def test_a_click_is_the_scanners_exactly_when_another_score_was_clicked_nearby(
    visits: list[Visit],
) -> None:
    """A click is part of a scanner's pass if and only if a click on another score of the
    same email came within the scanner window, before or after it."""
    result = derive(visits, SENT, POLICY, at(10_000))
    for visit, outcome in zip(visits, result.outcomes, strict=True):
        if visit.kind is not VisitKind.SCORE:
            continue
        near = any(
            other.kind is VisitKind.SCORE
            and other.score != visit.score
            and abs(other.at - visit.at) <= POLICY.scanner_window
            for other in visits
        )
        assert (outcome is Outcome.SCANNER) == near
