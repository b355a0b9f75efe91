"""What `explain` tells support about a survey after it was sent: the answer as the survey
page recorded it (score, comment, when, how it counted), a link scanner's pass shown as not
counted, the review click and the reminder; on the terminal and as JSON, on SQLite and
PostgreSQL. The answers are given through the real page on 127.0.0.1."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from rich.console import Console

from surveysync.console import Output, print_explanation
from surveysync.ledger import open_ledger, reports
from surveysync.ledger.activity import Reminder, SurveyActivity
from tests.conftest import Store, local
from tests.web_kit import SENT_AT, survey_page

REVIEW_URL = "https://reviews.example/test-cycles"
COMMENT = (
    "Remmen \u202epiepen\u202c [red]nog steeds[/red]\nna de beurt,\tterwijl ik er 85 euro "
    "voor betaalde. Niemand belde terug."
)
SURVEY_COLUMNS = [
    "transaction", "sent", "answer", "counts", "score", "when", "review", "reminder", "comment"
]  # fmt: skip


@dataclass
class Answered:
    store: Store
    now: datetime  # when support asks


@pytest.fixture
def answered(ledger_url: str, tmp_path: Path) -> Iterator[Answered]:
    """Five customers' surveys, sent at SENT_AT; through the page: C1 does nothing, C2 sends
    the form with a comment, C3 clicks one score and closes the tab, C4's mailbox scanner
    fetches every link, C5 sends the form and follows the review invitation."""
    store = Store(tmp_path, ledger_url)
    review = {"url": f'"{REVIEW_URL}"'}
    with survey_page(store, review=review) as page:  # the clock starts at 00:00
        emails, clock = page.emails, page.clock
        with page.client() as client:
            client.get(emails["C2"].scores[3])
            clock.advance(minutes=2)
            sent = client.post(emails["C2"].scores[3], data={"score": "3", "comment": COMMENT})
            assert sent.status_code == 200
            clock.advance(minutes=3)
            client.get(emails["C3"].scores[8])  # 00:05, counted from 00:35
            clock.advance(minutes=5)
            for link in emails["C4"].scores:  # 00:10, all eleven within a second
                client.get(link)
                clock.advance(seconds=0.08)
            clock.advance(minutes=10)
            client.post(emails["C5"].scores[10], data={"score": "10"})  # 00:20
            clock.advance(minutes=1)
            assert client.get(emails["C5"].scores[10].replace("/s/", "/r/")).status_code == 303
    # No sweep ran: C3's click is still provisional in the ledger, its window long past.
    yield Answered(store, SENT_AT + timedelta(hours=2))


def _explain(answered: Answered, customer: str, *options: str) -> str:
    with time_machine.travel(answered.now, tick=False):
        result = answered.store.cli("explain", "--customer", customer, *options)
    assert result.exit_code == 0, result.output
    return result.stdout


def _survey_row(output: str) -> dict[str, str]:
    lines = output.splitlines()
    header = lines.index("Surveys") + 1
    assert lines[header].split("\t") == SURVEY_COLUMNS
    return dict(zip(SURVEY_COLUMNS, lines[header + 1].split("\t"), strict=True))


def test_explain_shows_what_became_of_each_survey(answered: Answered) -> None:
    """Per sale: sent time, and the answer with its score, comment, time and how it
    counted; a clicked answer counts once its window passed; a scanner's pass is shown
    as not counted; a review click with its time."""
    silent = _survey_row(_explain(answered, "C1"))
    assert silent["sent"] == "2026-03-10 23:00"
    assert (silent["answer"], silent["counts"], silent["score"]) == ("no answer", "-", "-")

    output = _explain(answered, "C2")
    form = _survey_row(output)
    assert (form["answer"], form["counts"], form["score"]) == ("confirmed", "yes", "3")
    assert form["when"] == "2026-03-11 00:02"
    assert form["comment"].startswith("Remmen \\u202epiepen\\u202c [red]nog steeds[/red] na de")
    assert "\u202e" not in output  # shown escaped: it would turn the line around
    assert len(form["comment"]) == 60 and form["comment"].endswith("…")
    assert "  confirmed: the customer sent the survey form: counted" in output

    click = _survey_row(_explain(answered, "C3"))
    assert (click["answer"], click["counts"], click["score"]) == ("clicked", "yes", "8")
    assert click["when"] == "2026-03-11 00:35"  # counted from the end of its window

    output = _explain(answered, "C4")
    scanned = _survey_row(output)
    assert (scanned["answer"], scanned["counts"], scanned["score"]) == ("scanner", "no", "-")
    assert "11 visit(s) by a link scanner or a program from 2026-03-11 00:10" in output
    assert "kept but not counted" in output

    reviewed = _survey_row(_explain(answered, "C5"))
    assert (reviewed["answer"], reviewed["score"]) == ("confirmed", "10")
    assert reviewed["review"] == "2026-03-11 00:21"
    assert reviewed["reminder"] == "review pending -"  # cancelled by the next night: clicked


def test_explain_json_carries_the_whole_answer(answered: Answered) -> None:
    """--json gives the same facts for scripts: the whole comment, times with their offset,
    counted or not, the uncounted visits, the review clicks, and the reminder waiting."""
    [form] = [
        sale["survey"]
        for sale in json.loads(_explain(answered, "C2", "--json"))["sales"]
        if sale["survey"]
    ]
    assert form["answer"]["status"] == "confirmed" and form["answer"]["counted"] is True
    assert form["answer"]["comment"] == COMMENT
    assert datetime.fromisoformat(form["answer"]["answered_at"]) == local(2026, 3, 11, 0, 2)
    # The review reminder waits for its day (the reminders table; sent_at once it went).
    assert form["reminder"] == {"kind": "review", "status": "pending", "sent_at": None}

    scanned = json.loads(_explain(answered, "C4", "--json"))["sales"][-1]["survey"]
    assert scanned["answer"]["status"] == "scanner" and scanned["answer"]["counted"] is False
    assert scanned["uncounted_visits"] == 11

    reviewed = json.loads(_explain(answered, "C5", "--json"))["sales"][-1]
    assert reviewed["request_status"] == "sent" and len(reviewed["survey"]["review_clicks"]) == 1


def test_explain_on_a_terminal_shows_a_comment_as_text(answered: Answered) -> None:
    """On a terminal the table shows the comment's brackets as typed (never as colours) and
    its direction-changing characters as escapes, on one line."""
    settings = answered.store.settings()
    ledger = open_ledger(settings)
    try:
        result = reports.explain(
            ledger,
            customer_id="C2",
            cooldown_months=3,
            tz=settings.store.tz,
            now=answered.now,
        )
    finally:
        ledger.close()
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=250, color_system=None)
    print_explanation(Output(console), result, settings)
    shown = screen.getvalue()
    assert "[red]nog steeds[/red]" in shown
    assert "\u202e" not in shown and "\\u202e" in shown


def test_a_reminder_is_shown_when_the_reminders_table_gives_one(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """A survey whose activity has a reminder shows its kind, status and time in the
    reminder column."""
    at = local(2026, 3, 17, 23)
    row = reports.Explanation(
        "T1",
        local(2026, 3, 10, 12),
        "1",
        "C1",
        None,
        "sent",
        None,
        False,
        location_name="Centrum",
        sent_at=local(2026, 3, 10, 23),
        request_id="R1",
        survey=SurveyActivity(None, reminder=Reminder("review", "sent", at)),
    )
    result = reports.ExplainResult("customer C1", [row], None, [])
    print_explanation(Output(Console(file=io.StringIO())), result, store.settings())
    assert "\treview sent 2026-03-17 23:00\t" in capsys.readouterr().out
    assert result.as_dict()["sales"][0]["survey"]["reminder"] == {
        "kind": "review", "status": "sent", "sent_at": at.isoformat()
    }  # fmt: skip
