"""`surveysync demo` plays a month of answers after the nights and writes its HTML report:
about a third of the surveys answered, differently by location and technician, comments in
the customers' languages, scanner passes kept but never counted, review clicks, an NPS that
`surveysync report` agrees with, a report that opens offline, and no email but surveys."""

from __future__ import annotations

import email
import email.policy
import json
import random
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from click.testing import CliRunner
from selenium.webdriver.chrome.webdriver import WebDriver

from surveysync import demo, demo_answers
from surveysync.cli import main
from surveysync.config import load_settings
from tests.browser import chrome, requested_urls
from tests.conftest import local

__all__ = ["chrome"]  # the fixture, used by name

NOW = local(2026, 11, 22, 10, 5)
_NPS_LINE = re.compile(
    r"^Overall NPS: (-?[\d.]+) ± ([\d.]+) \(90 % interval (-?[\d.]+) to (-?[\d.]+)\), "
    r"from (\d+) answers$",
    re.MULTILINE,
)


@dataclass
class DemoRun:
    output: str
    directory: Path
    outbox: Path

    @property
    def config(self) -> Path:
        return self.directory / "surveysync.toml"

    def cli(self, *args: str) -> str:
        with time_machine.travel(NOW, tick=False):
            result = CliRunner().invoke(main, ["--config", str(self.config), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.directory / "ledger.sqlite") as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """One demo, run at NOW with the default seed, shared by this module's tests."""
    root = tmp_path_factory.mktemp("demo")
    directory, outbox = root / "surveysync-demo", root / "outbox"
    with time_machine.travel(NOW, tick=False):
        result = CliRunner().invoke(
            main, ["demo", "--dir", str(directory), "--outbox", str(outbox)]
        )
    assert result.exit_code == 0, result.output
    yield DemoRun(result.stdout, directory, outbox)


def test_the_demo_ends_with_the_report_file_and_the_nps_the_report_command_gives(
    demo_run: DemoRun,
) -> None:
    """The last lines name report.html and the overall NPS with its interval, the same
    figures `surveysync report --json` gives for the same ledger."""
    report = demo_run.directory / "report.html"
    assert f"The report is in {report} " in demo_run.output
    assert report.is_file()
    found = _NPS_LINE.search(demo_run.output)
    assert found is not None, demo_run.output
    assert found.end() == len(demo_run.output.rstrip("\n"))  # the very last line
    nps, margin, low, high, answers = found.groups()
    total = json.loads(demo_run.cli("report", "--json"))["total"]
    assert (float(nps), float(margin), float(low), float(high)) == (
        total["nps"], total["margin"], total["low"], total["high"]
    )  # fmt: skip
    assert int(answers) == total["responses"]


def test_about_a_third_of_the_surveys_are_answered_differently_by_place_and_technician(
    demo_run: DemoRun,
) -> None:
    """Roughly 35 % answered overall; locations and technicians differ in how often and
    how well, so the report has something to show."""
    total = json.loads(demo_run.cli("report", "--json"))["total"]
    assert 0.28 <= total["responses"] / total["sent"] <= 0.42
    for by in ("location", "employee"):
        groups = json.loads(demo_run.cli("report", "--json", "--by", by))["groups"]
        rates = [g["response_rate_percent"] for g in groups if g["sent"] >= 50]
        scores = [g["nps"] for g in groups if g["responses"] >= 20]
        assert max(rates) - min(rates) >= 8, (by, rates)
        assert max(scores) - min(scores) >= 25, (by, scores)


def test_lone_clicks_settle_as_clicked_and_forms_carry_comments_in_the_customers_language(
    demo_run: DemoRun,
) -> None:
    """Some customers click a score and leave it there (counted as clicked); others send
    the form, a few detractors among them with a comment, written in the request's
    language; some follow the review invitation."""
    by_status = dict(demo_run.rows("SELECT status, COUNT(*) FROM responses GROUP BY status"))
    assert by_status["clicked"] >= 30 and by_status["confirmed"] >= 30
    comments = demo_run.rows(
        "SELECT q.locale, r.score, r.comment FROM responses r "
        "JOIN requests q ON q.id = r.request_id WHERE r.comment IS NOT NULL"
    )
    for locale, _score, comment in comments:
        kinds = demo_answers.COMMENTS[str(locale)]
        assert any(comment in texts for texts in kinds.values()), (locale, comment)
    assert {locale for locale, _, _ in comments} >= {"en", "nl", "es", "ko", "sl"}
    assert 3 <= sum(1 for _, score, _ in comments if score <= 6) <= 40
    [(reviews,)] = demo_run.rows("SELECT COUNT(*) FROM clicks WHERE kind = 'review'")
    assert 1 <= reviews <= 40


def test_scanner_passes_are_kept_but_never_counted(demo_run: DemoRun) -> None:
    """A few emails' links were all fetched within seconds of delivery, some by a headless
    browser and some by a scanner posing as a person's: every visit is kept as the
    scanner's, and none of them is an answer the report counts."""
    passes = demo_run.rows(
        "SELECT request_id, COUNT(*), SUM(automated) FROM clicks "
        "WHERE kind = 'score' AND outcome = 'scanner' GROUP BY request_id"
    )
    assert len(passes) >= 5
    assert all(count == 11 for _, count, _ in passes)
    assert {bool(automated) for _, _, automated in passes} == {True, False}
    scanned_only = demo_run.rows(
        "SELECT r.status, r.score FROM responses r WHERE r.request_id IN "
        "(SELECT request_id FROM clicks WHERE outcome = 'scanner') AND r.request_id NOT IN "
        "(SELECT request_id FROM clicks WHERE outcome IN ('provisional', 'confirmed'))"
    )
    assert scanned_only and set(scanned_only) == {("scanner", None)}
    total = json.loads(demo_run.cli("report", "--json"))["total"]
    assert total["answers"]["scanner"] == len(scanned_only)
    [(counted,)] = demo_run.rows(
        "SELECT COUNT(*) FROM responses WHERE status IN ('clicked', 'confirmed')"
    )
    assert total["responses"] == counted


def test_the_outbox_holds_only_survey_emails(demo_run: DemoRun) -> None:
    """Playing a month of answers, detractors included, emailed no one: the outbox has one
    survey email per sent request and nothing else, and no alert was queued."""
    sent = {str(rid) for (rid,) in demo_run.rows("SELECT id FROM requests WHERE status = 'sent'")}
    messages = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in demo_run.outbox.glob("*.eml")
    ]
    assert len(messages) == len(sent)
    assert {m["X-Surveysync-Request"] for m in messages} == sent
    assert all(m["List-Unsubscribe"] for m in messages)
    assert demo_run.rows("SELECT COUNT(*) FROM alerts") == [(0,)]
    assert load_settings(demo_run.config).alerts.enabled is False


def test_the_report_file_loads_nothing_from_anywhere(demo_run: DemoRun) -> None:
    """The only web addresses in the file are SVG's XML namespaces, which are names, not
    requests."""
    text = (demo_run.directory / "report.html").read_text("utf-8")
    addresses = set(re.findall(r"https?://[^\s\"'<>)]*", text))
    assert addresses <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert "<script" not in text


def test_the_report_file_opens_offline_in_a_browser(chrome: WebDriver, demo_run: DemoRun) -> None:
    """In chromium the demo's report draws its charts and shows comments, and the browser
    requests the file and nothing else."""
    report = demo_run.directory / "report.html"
    requested_urls(chrome)  # start the log afresh
    chrome.get(report.as_uri())
    assert len(chrome.find_elements("css selector", "section figure svg")) >= 4
    assert chrome.find_elements("css selector", ".comments q")
    assert set(requested_urls(chrome)) == {report.as_uri()}


def test_the_demos_explain_example_shows_an_answer(demo_run: DemoRun) -> None:
    """The customer the demo suggests to explain answered with a comment."""
    found = re.search(r"explain --customer (C\d+)", demo_run.output)
    assert found is not None
    output = demo_run.cli("explain", "--customer", found.group(1))
    assert "\nSurveys\n" in output and "\tconfirmed\tyes\t" in output


def test_the_same_seed_plays_the_same_month_and_another_seed_another(tmp_path: Path) -> None:
    """Answers are seeded: a demo is repeatable, and --seed changes it."""
    config = tmp_path / "surveysync.toml"
    config.write_text(demo.demo_config_toml(tmp_path, tmp_path, datetime(2026, 9, 1)), "utf-8")
    settings = load_settings(config)
    rng = random.Random(1)
    surveys = [
        demo_answers.SentSurvey(
            f"R{n}",
            local(2026, 11, 1, 23) + timedelta(days=n % 20),
            rng.choice(["1", "2", "3"]),
            rng.choice(["Anouk", "Bram"]),
            rng.choice(["en", "nl", "ko"]),
        )
        for n in range(300)
    ]
    now = local(2026, 11, 22, 10)

    def month(seed: int) -> list[tuple[Any, ...]]:
        planned = demo_answers.plan_month(surveys, settings, seed, now)
        return [(p.request_id, p.visit.kind, p.visit.at, p.visit.score) for p in planned]

    assert month(7) == month(7)
    assert month(7) != month(8)
    assert all(at <= now for _, _, at, _ in month(7))
