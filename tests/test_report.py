"""`surveysync report`: NPS figures against hand-computed tables, margins of error against an
independent computation, which answers count, the period by send time, the three outputs
agreeing, and a ledger left exactly as it was."""

from __future__ import annotations

import io
import json
import math
import re
import sqlite3
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from rich.console import Console
from sqlalchemy import Engine, event, insert

from surveysync.console import Output
from surveysync.ledger import LedgerError
from surveysync.ledger.schema import install
from surveysync.model import RequestStatus, ResponseStatus
from surveysync.report import Dim, ReportOptions, ReportUsageError, parse_by, query, run_report
from surveysync.report.nps import Tally, ranks
from surveysync.report.period import Period
from tests.conftest import TZ, Store, local
from tests.report_data import SurveyLedger, three_months

NOW = local(2026, 11, 28, 12)
Z_90 = 1.6448536269514722  # the 95th percentile of the standard normal, from a table


@pytest.fixture
def store(tmp_path: Path, ledger_url: str) -> Store:
    """Reports read SQLite and PostgreSQL ledgers alike: these tests run on both."""
    return Store(tmp_path, ledger_url)


@pytest.fixture
def surveys(store: Store) -> Any:
    data = SurveyLedger(store)
    yield data
    data.close()


def report_json(store: Store, *args: str) -> dict[str, Any]:
    with time_machine.travel(NOW, tick=False):
        result = store.cli("report", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def by_label(data: dict[str, Any], dim: str) -> dict[str, dict[str, Any]]:
    return {group[dim]: group for group in data["groups"]}


# --- the arithmetic ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "promoters, passives, detractors, nps",
    [
        (10, 0, 0, 100.0),  # all promoters
        (0, 0, 10, -100.0),  # all detractors
        (0, 7, 0, 0.0),  # passives only
        (1, 0, 0, 100.0),  # one answer
        (5, 3, 2, 30.0),
        (2, 3, 5, -30.0),
        (1, 1, 1, 0.0),
        (11, 10, 10, 100 / 31),
    ],
)
def test_nps_is_percent_promoters_minus_percent_detractors(
    promoters: int, passives: int, detractors: int, nps: float
) -> None:
    """NPS comes out as counted by hand, from all promoters (100) to all detractors (-100)."""
    assert Tally(promoters, passives, detractors).nps == pytest.approx(nps)


def test_no_answers_have_no_nps_and_no_interval() -> None:
    """An empty group has no NPS and no interval, rather than a made-up 0."""
    assert Tally().nps is None
    assert Tally().interval() is None


def independent_interval(promoters: int, passives: int, detractors: int) -> tuple[float, ...]:
    """The adjusted Wald interval computed another way: the mean and variance of +1/0/-1
    scores with 3/4, 1 1/2 and 3/4 answers added (MeasuringU's description of Rocks 2016)."""
    weights = {1: promoters + 0.75, 0: passives + 1.5, -1: detractors + 0.75}
    n = sum(weights.values())
    mean = sum(value * weight for value, weight in weights.items()) / n
    variance = sum(weight * (value - mean) ** 2 for value, weight in weights.items()) / n
    half = Z_90 * math.sqrt(variance / n)
    observed = (promoters - detractors) / (promoters + passives + detractors)
    low, high = min(mean - half, observed), max(mean + half, observed)  # reaches the NPS
    return 100 * half, 100 * max(-1, low), 100 * min(1, high)


@pytest.mark.parametrize(
    "counts", [(10, 0, 0), (0, 0, 10), (0, 7, 0), (1, 0, 0), (5, 3, 2), (40, 25, 35), (3, 0, 9)]
)
def test_margin_of_error_matches_an_independent_computation(counts: tuple[int, int, int]) -> None:
    """The 90 % interval equals the one computed from the variance of the answers' values."""
    interval = Tally(*counts).interval()
    assert interval is not None
    margin, low, high = independent_interval(*counts)
    assert (interval.margin, interval.low, interval.high) == pytest.approx((margin, low, high))


def test_the_interval_at_the_edges_is_never_certain_and_stays_within_bounds() -> None:
    """All promoters from 5 answers is not "100 ± 0": the interval is wide and ends at 100."""
    interval = Tally(5, 0, 0).interval()
    assert interval is not None
    assert interval.high == 100.0 and interval.low < 80 and interval.margin > 10
    worst = Tally(0, 0, 5).interval()
    assert worst is not None and worst.low == -100.0 and worst.high > -80


def test_with_many_answers_the_margin_is_the_plain_wald_one() -> None:
    """The added answers fade out: at 40,000 answers the margin is the textbook Wald one."""
    promoters, passives, detractors = 20_000, 12_000, 8_000
    n = promoters + passives + detractors
    p, d = promoters / n, detractors / n
    plain = 100 * Z_90 * math.sqrt((p + d - (p - d) ** 2) / n)
    interval = Tally(promoters, passives, detractors).interval()
    assert interval is not None and interval.margin == pytest.approx(plain, abs=0.01)


def test_ranks_share_ties_and_leave_out_the_unranked() -> None:
    """Best first, equal NPS share a rank, and a group too small to rank gets none."""
    assert ranks([10.0, None, 50.0, 10.0, -5.0]) == [2, None, 1, 2, 4]


def test_months_begin_at_local_midnight_across_daylight_saving_time() -> None:
    """A month starts at 00:00 store time, whether that is UTC+1 or UTC+2."""
    period = Period(date(2026, 3, 1), date(2026, 4, 30), TZ)
    starts = [b.start.astimezone(TZ).isoformat() for b in period.buckets(Dim.MONTH)]
    assert starts == ["2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00"]
    weeks = period.buckets(Dim.WEEK)
    assert weeks[0].label == "2026-W09" and weeks[0].start == period.start  # clipped


@pytest.mark.parametrize(
    "text, problem",
    [
        ("colour", "group by one or more of"),
        ("month,week", "pick one"),
        ("location,location", "twice"),
    ],
)
def test_a_grouping_that_makes_no_sense_is_refused(text: str, problem: str) -> None:
    """--by names only known groupings, each once, and never month and week together."""
    with pytest.raises(ReportUsageError, match=problem):
        parse_by(text)


# --- against a real ledger -----------------------------------------------------------------


def test_report_by_location_matches_the_hand_computed_table(
    store: Store, surveys: SurveyLedger
) -> None:
    """Promoters only score 100, detractors only -100, passives only 0; a location with one
    answer is too few to rank; response rates are answers per survey sent."""
    day = local(2026, 11, 10, 10)
    surveys.surveys(day, [9, 10] * 5, location="1")
    for n in range(10):  # sent in Centrum, never answered
        surveys.sent(day + timedelta(hours=1, minutes=n), location="1")
    surveys.surveys(day, [0, 3, 6, 1, 2, 4, 5, 6, 0, 1], location="2")
    surveys.surveys(day, [7, 8] * 5, location="3")
    surveys.survey(day, 10, location=None)

    data = report_json(store, "--by", "location")

    groups = by_label(data, "location")
    expected = {  # location: (sent, answers, rate %, NPS, rank, too few)
        "Centrum": (20, 10, 50.0, 100.0, 1, False),
        "Magazijn": (10, 10, 100.0, 0.0, 2, False),
        "Noord": (10, 10, 100.0, -100.0, 3, False),
        "(no location)": (1, 1, 100.0, 100.0, None, True),
    }
    for name, (sent, answers, rate, nps, rank, too_few) in expected.items():
        group = groups[name]
        got = (group["sent"], group["responses"], group["response_rate_percent"], group["nps"])
        assert got == (sent, answers, rate, nps), name
        assert (group["rank"], group["too_few"]) == (rank, too_few), name
    assert [g["location"] for g in data["groups"]] == list(expected)  # ranked, then too few
    total = data["total"]
    assert (total["sent"], total["responses"], total["nps"]) == (41, 31, round(100 / 31, 1))
    assert (total["promoters"], total["passives"], total["detractors"]) == (11, 10, 10)
    margin, low, high = independent_interval(11, 10, 10)
    assert (total["margin"], total["low"], total["high"]) == (
        round(margin, 1),
        round(low, 1),
        round(high, 1),
    )


def test_an_empty_period_reports_no_nps(store: Store, surveys: SurveyLedger) -> None:
    """A period without surveys shows zero sent, zero answers and no NPS (not 0)."""
    surveys.surveys(local(2026, 6, 1), [10, 9, 0])

    data = report_json(store, "--since", "2026-10-01", "--until", "2026-10-31", "--by", "location")

    assert data["groups"] == []
    total = data["total"]
    assert (total["sent"], total["responses"], total["nps"], total["margin"]) == (0, 0, None, None)
    assert total["response_rate_percent"] is None


def test_one_answer_is_reported_but_too_few_to_rank(store: Store, surveys: SurveyLedger) -> None:
    """A single promoter: NPS 100 with a wide interval, marked too few, never ranked."""
    surveys.survey(local(2026, 11, 2), 10, employee="Bram")

    data = report_json(store, "--by", "employee", "--min-responses", "2")

    bram = by_label(data, "employee")["Bram"]
    margin, low, _ = independent_interval(1, 0, 0)
    assert (bram["nps"], bram["rank"], bram["too_few"]) == (100.0, None, True)
    assert (bram["margin"], bram["low"], bram["high"]) == (round(margin, 1), round(low, 1), 100.0)
    assert bram["low"] < 0  # one answer says little


def test_groups_below_the_configured_minimum_are_not_ranked(
    store: Store, surveys: SurveyLedger
) -> None:
    """[report] min_responses decides which groups are ranked; the rest are "too few"."""
    surveys.surveys(local(2026, 11, 3), [10, 10, 9], employee="Anouk")
    surveys.surveys(local(2026, 11, 3), [0, 10], employee="Bram")
    surveys.surveys(local(2026, 11, 3), [8, 9, 7, 10], employee="Carmen")
    store.extra["report"] = {"min_responses": "3"}

    groups = by_label(report_json(store, "--by", "employee"), "employee")

    assert {name: (g["rank"], g["too_few"]) for name, g in groups.items()} == {
        "Anouk": (1, False),
        "Carmen": (2, False),
        "Bram": (None, True),
    }


def test_only_confirmed_clicked_and_settled_answers_count(
    store: Store, surveys: SurveyLedger
) -> None:
    """Confirmed and clicked answers count, and so does a provisional click whose settle
    window has passed; an open provisional click and a scanner's pass never do."""
    day = local(2026, 11, 20)
    surveys.survey(day, 9, status=ResponseStatus.CONFIRMED)
    surveys.survey(day, 10, status=ResponseStatus.CLICKED)
    due = NOW - timedelta(minutes=1)
    surveys.survey(day, 0, status=ResponseStatus.PROVISIONAL, settle_due_at=due)
    open_window = NOW + timedelta(minutes=5)
    surveys.survey(day, 0, status=ResponseStatus.PROVISIONAL, settle_due_at=open_window)
    surveys.survey(day, 0, status=ResponseStatus.SCANNER)

    total = report_json(store)["total"]

    assert total["answers"] == {
        "confirmed": 1,
        "clicked": 1,
        "settled_provisional": 1,
        "provisional": 1,
        "scanner": 1,
    }
    assert (total["sent"], total["responses"], total["detractors"]) == (5, 3, 1)
    assert total["nps"] == round(100 / 3, 1)


def test_surveys_count_in_the_month_they_were_sent_in_store_time(
    store: Store, surveys: SurveyLedger
) -> None:
    """Sent at 23:30 on 31 October in Amsterdam (22:30 UTC) counts for October, even though
    answered in November; failed requests and another store's surveys are not counted."""
    surveys.survey(local(2026, 10, 31, 23, 30), 10)
    surveys.survey(local(2026, 11, 1, 0, 30), 0)  # still 31 October in UTC
    surveys.sent(local(2026, 11, 1, 9), status=RequestStatus.FAILED)
    surveys.sent(local(2026, 11, 1, 9), status=RequestStatus.REJECTED)
    elsewhere = SurveyLedger(store, store_id="other")
    elsewhere.survey(local(2026, 11, 2), 0)
    elsewhere.close()

    data = report_json(store, "--since", "2026-10-01", "--by", "month")

    months = by_label(data, "month")
    assert (months["2026-10"]["sent"], months["2026-10"]["nps"]) == (1, 100.0)
    assert (months["2026-11"]["sent"], months["2026-11"]["nps"]) == (1, -100.0)
    assert data["total"]["sent"] == 2


def rich_rows(store: Store, by: str) -> list[list[str]]:
    """The rows of the table as a person sees it on a terminal."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=250, highlight=False)
    options = ReportOptions(by=parse_by(by), now=NOW)
    run_report(store.settings(), options, Output(console))
    plain = re.sub(r"\x1b\[[\d;]*m", "", screen.getvalue())  # colours and bold
    lines = [line.strip() for line in plain.splitlines()]
    return [re.split(r"\s{2,}", line) for line in lines if re.search(r"\d\s{2,}\d", line)]


@pytest.mark.parametrize("by", ["location", "employee,month"])
def test_json_the_terminal_table_and_piped_text_agree(
    store: Store, surveys: SurveyLedger, by: str
) -> None:
    """Every figure of --json is the one the terminal table and the piped text show."""
    three_months(surveys)
    data = report_json(store, "--by", by)
    with time_machine.travel(NOW, tick=False):
        piped = store.cli("report", "--by", by).stdout.splitlines()
    table = rich_rows(store, by)

    dims = by.split(",")
    expected = [_shown(group, dims) for group in data["groups"]]
    expected.append(_shown(data["total"], dims, all_label=True))
    width = len(expected[0])
    assert [[*row, ""][:width] for row in table] == expected  # a blank rank is no cell
    assert [line.split("\t")[:width] for line in piped[1:]] == expected
    assert piped[0].split("\t")[: len(dims)] == dims


def _shown(group: dict[str, Any], dims: list[str], all_label: bool = False) -> list[str]:
    def one(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    labels = ["(all)"] * len(dims) if all_label else [group[dim] for dim in dims]
    interval = "" if group["low"] is None else f"{group['low']:.1f} … {group['high']:.1f}"
    rank = "too few" if group["too_few"] else str(group["rank"] or "")
    row = [
        *labels,
        str(group["sent"]),
        str(group["responses"]),
        one(group["response_rate_percent"]),
        str(group["promoters"]),
        str(group["passives"]),
        str(group["detractors"]),
        one(group["nps"]),
        one(group["margin"]),
        interval,
        rank,
    ]
    return row


def test_a_report_leaves_the_ledger_exactly_as_it_was(
    store: Store, surveys: SurveyLedger, tmp_path: Path
) -> None:
    """The table, --json and --html read the ledger and change nothing in it."""
    three_months(surveys)
    before = surveys.fingerprint()
    with time_machine.travel(NOW, tick=False):
        for args in (["--by", "location,month"], ["--json"], ["--html", str(tmp_path / "r.html")]):
            assert store.cli("report", *args).exit_code == 0
    assert surveys.fingerprint() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--by", "colour"], "group by one or more of location, employee, month, week"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "is after --until"),
        (["--html", "r.html", "--by", "location"], "leave out --by and --json"),
        (["--min-responses", "0"], "0 is not in the range"),
        (["--since", "yesterday"], "'yesterday' does not match"),
    ],
)
def test_options_that_make_no_sense_are_usage_errors(
    store: Store, surveys: SurveyLedger, args: list[str], message: str
) -> None:
    """A bad option exits 2 with one line saying what is wrong, never a traceback."""
    result = store.cli("report", *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_without_a_ledger_the_report_says_so(tmp_path: Path) -> None:
    """Before any sync there is nothing to report: exit 1 and a plain sentence."""
    store = Store(tmp_path)
    result = store.cli("report")
    assert result.exit_code == 1
    assert "no ledger at" in result.output and "surveysync sync" in result.output
    assert not store.ledger_path.exists()  # and it did not create one


def test_the_html_report_escapes_comments_and_links_nothing(
    store: Store, surveys: SurveyLedger, tmp_path: Path
) -> None:
    """Comments are shown as text (a script in one stays text), with score, location and
    technician; the file references no script, style sheet, font or image."""
    day = local(2026, 11, 20)
    surveys.survey(day, 2, comment="<script>alert('x')</script> & <b>rude</b>", employee="Bram")
    surveys.survey(day + timedelta(hours=1), 10, comment="Snel geholpen!", location="2")
    path = tmp_path / "report.html"
    with time_machine.travel(NOW, tick=False):
        result = store.cli("report", "--html", str(path))

    assert result.exit_code == 0, result.output
    assert f"wrote {path}: 2 answers to 2 surveys" in result.output
    page = path.read_text("utf-8")
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;rude&lt;/b&gt;" in page
    assert "<script" not in page
    assert "<b>rude" not in page
    assert "Snel geholpen!" in page and "Noord" in page and "Bram" in page
    for reference in ("src=", "<link", "@import", "url(http", "@font-face"):
        assert reference not in page
    assert page.count("<svg") == 4


def test_other_commands_and_the_table_never_load_matplotlib(
    store: Store, surveys: SurveyLedger
) -> None:
    """matplotlib is imported by --html alone, so every other command starts fast."""
    surveys.survey(local(2026, 11, 20), 9)
    store.write_config()
    program = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from surveysync.cli import main\n"
        f"result = CliRunner().invoke(main, ['--config', {str(store.config_path)!r}, 'report'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=120
    )
    assert found.stdout.strip() == "[]"


def test_a_week_report_labels_iso_weeks(store: Store, surveys: SurveyLedger) -> None:
    """--by week groups by ISO week starting Monday 00:00 store time."""
    surveys.survey(local(2026, 11, 15, 23, 59), 10)  # Sunday of week 46
    surveys.survey(local(2026, 11, 16, 0, 1), 0)  # Monday of week 47

    weeks = by_label(report_json(store, "--since", "2026-11-01", "--by", "week"), "week")

    assert (weeks["2026-W46"]["nps"], weeks["2026-W47"]["nps"]) == (100.0, -100.0)
    assert weeks["2026-W47"]["rank"] is None  # a time series is not ranked


def test_the_default_period_is_the_last_90_days(store: Store, surveys: SurveyLedger) -> None:
    """Without --since and --until the report covers the 90 days up to today."""
    surveys.survey(NOW - timedelta(days=89), 10)
    surveys.survey(NOW - timedelta(days=91), 0)

    data = report_json(store)

    assert data["period"]["since"] == "2026-08-31" and data["period"]["until"] == "2026-11-28"
    assert (data["total"]["responses"], data["total"]["nps"]) == (1, 100.0)


def test_on_sqlite_every_read_is_led_by_an_index(tmp_path: Path) -> None:
    """No report statement scans a whole table: each reads the report's covering indexes
    (SQLite has no statistics to fall back on, so the plan is the statements' shape)."""
    store = Store(tmp_path)
    surveys = SurveyLedger(store)
    three_months(surveys)
    surveys.close()
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "FROM requests" in statement or "FROM responses" in statement:
            statements.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        for by in ("location,month", "employee", "week"):
            run_report(store.settings(), ReportOptions(by=parse_by(by), now=NOW), Output())
        run_report(store.settings(), ReportOptions(html=tmp_path / "r.html", now=NOW))
    finally:
        event.remove(Engine, "before_cursor_execute", seen)

    plans = []
    with sqlite3.connect(store.ledger_path) as db:
        for statement, parameters in statements:
            plans += [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)]
    assert not [step for step in plans if re.match(r"SCAN (requests|responses|same)\b", step)]
    used = " ".join(plans)
    for index in ("ix_requests_report_groups", "ix_requests_report_lookup", "ix_responses_report"):
        assert f"COVERING INDEX {index}" in used, index


def test_the_report_connection_cannot_write(store: Store, surveys: SurveyLedger) -> None:
    """Even a bug could not write: the report's own connection refuses any change."""
    surveys.survey(local(2026, 11, 20), 9)
    db = query.open_for_reading(store.settings())
    try:
        with pytest.raises(LedgerError), db.reading() as conn:
            conn.execute(insert(install).values(name="report", value="wrote"))
    finally:
        db.close()
    assert surveys.ledger.install.get("report") is None
