"""The alerts keeper on every ledger backend (SQLite and PostgreSQL): which answers raise an
alert, that each raises one however many processes queue it, and that one process sends it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import date, timedelta

import pytest

from surveysync.ledger import Ledger
from surveysync.ledger.alerts import AlertKind
from surveysync.model import RequestStatus, ResponseStatus
from tests.answer_kit import SETTLE_WINDOW, AnswerBook
from tests.conftest import local

NOW = local(2026, 3, 14, 15)
WEEK_AGO = NOW - timedelta(days=7)


@pytest.fixture
def open_ledger(ledger_url: str) -> Iterator[Callable[[str], Ledger]]:
    """Open ledgers on one database (one per process or store); all closed afterwards."""
    opened: list[Ledger] = []

    def open_one(store: str = "test") -> Ledger:
        opened.append(Ledger.open(ledger_url, store, "test-secret"))
        return opened[-1]

    yield open_one
    for ledger in opened:
        ledger.close()


def queued_requests(ledger: Ledger) -> list[str]:
    return sorted(a.request_id or "" for a in ledger.alerts.pending())


def test_only_final_detractor_answers_raise_an_alert(open_ledger: Callable[[str], Ledger]) -> None:
    """Confirmed, clicked and settled provisional answers of 0-6 are queued; passives,
    promoters, scanner passes and clicks still within their settle window are not."""
    ledger = open_ledger("test")
    book = AnswerBook(ledger)
    at = NOW - timedelta(hours=1)
    confirmed = book.answered(3, at, comment="Slow service")
    zero = book.answered(0, at)
    clicked = book.request(at)
    book.answer(clicked, 6, at, status=ResponseStatus.CLICKED)
    settled = book.request(at)
    book.answer(
        settled, 2, NOW - SETTLE_WINDOW - timedelta(seconds=1), status=ResponseStatus.PROVISIONAL
    )
    book.answered(7, at)
    book.answered(10, at)
    scanner = book.request(at)
    book.answer(scanner, 0, at, status=ResponseStatus.SCANNER)
    fresh = book.request(at)
    book.answer(fresh, 1, NOW - timedelta(seconds=30), status=ResponseStatus.PROVISIONAL)

    assert ledger.alerts.queue_detractors(NOW, 6, WEEK_AGO) == 4
    assert queued_requests(ledger) == sorted([confirmed, zero, clicked, settled])
    assert ledger.alerts.queue_detractors(NOW, 6, WEEK_AGO) == 0  # once each

    later = NOW + SETTLE_WINDOW
    assert ledger.alerts.queue_detractors(later, 6, WEEK_AGO) == 1  # its window has passed
    assert fresh in queued_requests(ledger)


def test_the_threshold_the_horizon_and_the_store_bound_what_is_queued(
    open_ledger: Callable[[str], Ledger],
) -> None:
    """A stricter threshold leaves 5s and 6s alone, an answer older than the horizon is old
    news, and another store's answers belong to that store's alerts."""
    ledger = open_ledger("test")
    other = open_ledger("other")
    book = AnswerBook(ledger)
    at = NOW - timedelta(hours=1)
    four = book.answered(4, at)
    book.answered(5, at)
    book.answered(2, WEEK_AGO - timedelta(minutes=1))
    AnswerBook(ledger, store="other").answered(1, at)

    assert ledger.alerts.queue_detractors(NOW, 4, WEEK_AGO) == 1
    assert queued_requests(ledger) == [four]
    assert len(other.alerts.pending()) == 0


def queue_at_once(ledgers: tuple[Ledger, ...]) -> list[int]:
    """Each ledger queues detractors in its own thread, released at the same moment."""
    start = threading.Barrier(len(ledgers))
    queued: list[int] = []

    def queue(ledger: Ledger) -> None:
        start.wait()
        queued.append(ledger.alerts.queue_detractors(NOW, 6, WEEK_AGO))

    threads = [threading.Thread(target=queue, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return queued


def test_two_processes_queuing_at_once_raise_one_alert_per_answer(
    open_ledger: Callable[[str], Ledger],
) -> None:
    """The survey page and the nightly run queuing the same answers at the same moment
    leave exactly one alert for each, whoever comes first."""
    web, nightly = open_ledger("test"), open_ledger("test")
    book = AnswerBook(web)
    for round_ in range(4):
        answers = [book.answered(n, NOW - timedelta(minutes=round_ * 10 + n)) for n in range(3)]

        queued = queue_at_once((web, nightly))

        assert sorted(queued) == [0, 3]
        alerts = [a.request_id for a in web.alerts.pending()]
        assert sorted(set(alerts)) == sorted(alerts)
        assert set(answers) <= set(alerts)


def test_of_two_processes_one_claims_an_alert(open_ledger: Callable[[str], Ledger]) -> None:
    """When both processes find the same pending alert, only one may send it."""
    web, nightly = open_ledger("test"), open_ledger("test")
    AnswerBook(web).answered(3, NOW - timedelta(hours=1))
    web.alerts.queue_detractors(NOW, 6, WEEK_AGO)
    [seen_by_web] = web.alerts.pending()
    [seen_by_nightly] = nightly.alerts.pending()

    assert web.alerts.claim(seen_by_web, NOW) is True
    assert nightly.alerts.claim(seen_by_nightly, NOW) is False
    assert web.alerts.pending() == []
    assert web.alerts.unsettled() == {"sending": 1}


def test_settling_records_the_outcome_and_counts_attempts(
    open_ledger: Callable[[str], Ledger],
) -> None:
    """An alert the provider could not take is pending again with its attempt counted; a
    sent one keeps the provider's message id; in-flight ones are found after a crash."""
    ledger = open_ledger("test")
    AnswerBook(ledger).answered(3, NOW - timedelta(hours=1))
    ledger.alerts.queue_detractors(NOW, 6, WEEK_AGO)
    [alert] = ledger.alerts.pending()
    ledger.alerts.claim(alert, NOW)
    ledger.alerts.settle(alert.alert_id, RequestStatus.PENDING, NOW, error="connection refused")

    [again] = ledger.alerts.pending()
    assert (again.attempts, again.sending_at) == (1, NOW)
    later = NOW + timedelta(minutes=5)
    assert ledger.alerts.claim(again, later)
    assert ledger.alerts.in_flight(before=later) == []
    [in_flight] = ledger.alerts.in_flight(before=later + timedelta(seconds=1))
    assert (in_flight.attempts, in_flight.in_flight) == (2, True)

    assert ledger.alerts.settle(alert.alert_id, RequestStatus.SENT, later, message_id="<m@x>")
    assert not ledger.alerts.settle(alert.alert_id, RequestStatus.IN_DOUBT, later)  # settled
    assert ledger.alerts.unsettled() == {}
    assert ledger.alerts.pending() == []


def test_a_day_has_one_digest(open_ledger: Callable[[str], Ledger]) -> None:
    """Queuing a day's digest twice, from two processes, leaves one."""
    web, nightly = open_ledger("test"), open_ledger("test")
    day = date(2026, 3, 13)
    assert web.alerts.queue_digest(day, NOW) is True
    assert nightly.alerts.queue_digest(day, NOW) is False
    assert web.alerts.queue_digest(day + timedelta(days=1), NOW) is True
    digests = [a for a in web.alerts.pending() if a.kind is AlertKind.DIGEST]
    assert sorted(a.day for a in digests if a.day) == [day, day + timedelta(days=1)]
    assert web.alerts.last_digest_day() == day + timedelta(days=1)
