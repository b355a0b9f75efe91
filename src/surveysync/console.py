"""Terminal output for the CLI: rich tables and progress on a terminal, plain text when piped.

Every command's printing lives here (``print_report``, ``print_status``, ...), so that
``cli`` only parses arguments and calls the library. Reads nothing and writes nothing but
the terminal.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from surveysync.model import ResponseStatus

if TYPE_CHECKING:  # the stages' records, named in annotations only: importing the console
    # must stay cheap, so that `surveysync --help` does not load the database layer.
    from surveysync.checks import Check
    from surveysync.config import Settings
    from surveysync.ledger import reports
    from surveysync.ledger.activity import SurveyAnswer
    from surveysync.model import Sale
    from surveysync.render import SurveyEmail
    from surveysync.sync import ProgressHook, RunReport
    from surveysync.sync.sample import DaySample

_LEVEL_STYLES = {"debug": "dim", "warning": "yellow", "error": "bold red", "critical": "bold red"}


class Output:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.interactive = self.console.is_terminal

    def line(self, text: str = "") -> None:
        if self.interactive:
            self.console.print(text, markup=False)
        else:
            sys.stdout.write(text + "\n")

    def table(
        self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[object]]
    ) -> None:
        if not self.interactive:
            if title:
                self.line(title)
            self.line("\t".join(columns))
            for row in rows:
                self.line("\t".join("" if cell is None else str(cell) for cell in row))
            return
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
        for index, column in enumerate(columns):
            # Short values stay on one line; only the last (free-text) column wraps.
            table.add_column(column, overflow="fold", no_wrap=index < len(columns) - 1)
        for row in rows:
            # Text, never markup: a name or a comment holding "[red]" is shown as typed.
            table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
        self.console.print(table)

    def log_line(self, text: str, level: str) -> None:
        """A log event's line: coloured by its level on a terminal."""
        if not self.interactive:
            self.line(text)
            return
        style = _LEVEL_STYLES.get(level, "")
        self.console.print(text, style=style, markup=False, highlight=False)

    @contextmanager
    def progress(self, label: str) -> Iterator[ProgressHook]:
        """A progress hook for run_sync: a bar on a terminal (days, sales, sent, skipped and
        the time left), silence when piped. While the bar shows, log lines are printed above
        it through the same console, never into it."""
        if not self.interactive:
            yield lambda event, amount: None
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("days · {task.fields[sales]} sales · {task.fields[sent]} sent"),
            TextColumn("· {task.fields[skipped]} skipped"),
            TimeRemainingColumn(),
        )
        from surveysync import logging as log_setup

        with (
            Progress(*columns, console=self.console, transient=True) as bar,
            log_setup.route_console(self._print_log_line),
        ):
            task = bar.add_task(label, total=None, sales=0, sent=0, skipped=0)
            yield _bar_hook(bar, task)

    def _print_log_line(self, line: str) -> None:
        self.console.print(Text.from_ansi(line), soft_wrap=True)


def _bar_hook(bar: Progress, task: TaskID) -> ProgressHook:
    def hook(event: str, amount: int) -> None:
        if event == "days":
            bar.update(task, total=amount)
        elif event == "day":
            bar.advance(task, amount)
        elif event in ("sales", "sent", "skipped"):
            fields = bar.tasks[0].fields
            bar.update(task, **{event: fields[event] + amount})

    return hook


def _meaning(reason: str) -> str:
    """What a skip reason code means (the rules are loaded only when one is shown)."""
    from surveysync.rules import REASON_TEXT, SkipReason

    return REASON_TEXT[SkipReason(reason)]


def local_time(moment: datetime | None, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


def day_list(days: Sequence[date], limit: int = 10) -> str:
    if not days:
        return "none"
    shown = ", ".join(d.isoformat() for d in days[:limit])
    return shown + (f" and {len(days) - limit} more" if len(days) > limit else "")


def print_report(out: Output, report: RunReport, settings: Settings) -> None:
    tz = settings.store.tz
    if report.dry_run:
        out.line("DRY RUN: nothing was written to the ledger and nothing was sent.")
    out.line(
        f"{report.kind} {report.status}: {local_time(report.window_start, tz)} -> "
        f"{local_time(report.window_end, tz)} ({len(report.days)} day(s) covered)"
    )
    verb = "would send" if report.dry_run else "sent"
    rows: list[tuple[str, int, str]] = [(verb, report.counts["sent"], "survey requests")]
    for outcome in ("rejected", "failed", "in_doubt"):
        if report.counts[outcome]:
            rows.append((outcome, report.counts[outcome], "see `surveysync status`"))
    counts = report.counts
    rows += [(label, counts[key], meaning) for key, label, meaning in _FOLLOW_UPS if counts[key]]
    if report.counts["pending"]:
        rows.append(("pending", report.counts["pending"], "refused for now; the next run retries"))
    rows += [
        (reason, count, _meaning(reason))
        for reason, count in sorted(report.skipped.items(), key=lambda kv: -kv[1])
    ]
    if report.counts["already_decided"]:
        rows.append(
            (
                "already decided",
                report.counts["already_decided"],
                "re-read from an earlier run (look-back), unchanged",
            )
        )
    if report.counts["unreadable_rows"]:
        rows.append(
            (
                "unreadable rows",
                report.counts["unreadable_rows"],
                "POS rows that could not be read; see the log",
            )
        )
    out.table(None, ["outcome", "count", "meaning"], rows)
    if report.error:
        out.line(f"error: {report.error}")


# What the night's follow-ups did, in the run summary when it is not zero.
_FOLLOW_UPS = (
    ("alerts_sent", "alerts sent", "to the store manager"),
    ("alerts_waiting", "alerts waiting", "retried later"),
    ("reminders_sent", "reminders sent", "review reminders and reminders to non-answerers"),
    ("reminders_cancelled", "reminders cancelled", "no longer wanted (answered, unsubscribed...)"),
    ("reminders_waiting", "reminders waiting", "the provider could not take them; next night"),
    ("reminders_rejected", "reminders rejected", "refused by the provider; see the log"),
    ("reminders_failed", "reminders failed", "could not be composed; see the log"),
    ("reminders_in_doubt", "reminders in doubt", "a crash interrupted them; never resent"),
)


def print_schedule(out: Output, schedule: dict[str, Any], settings: Settings) -> None:
    tz = settings.store.tz
    source = "the running daemon" if schedule["next_fire_from"] == "daemon" else "config"
    upcoming = local_time(datetime.fromisoformat(schedule["next_fire"]), tz)
    out.line(f"next nightly run: {upcoming} (from {source})")
    beat = schedule["heartbeat"]
    if beat is None:
        out.line("daemon: no heartbeat yet (`surveysync run` has not run with this config)")
        return
    updated = local_time(datetime.fromisoformat(beat["updated_at"]), tz)
    out.line(f"daemon: {beat['state']} (pid {beat['pid']} on {beat['host']}), heartbeat {updated}")
    if schedule["overdue"]:
        due = local_time(datetime.fromisoformat(beat["next_fire"]), tz)
        out.line(f"daemon: OVERDUE: it was due to run at {due} and has not reported since")


def print_status(out: Output, result: reports.Status, settings: Settings) -> None:
    tz = settings.store.tz
    last = result.last_success
    out.line(
        f"store {result.store}: last successful run "
        f"{local_time(last.finished_at, tz) if last else 'never'}; covered until "
        f"{local_time(result.covered_until, tz)}"
    )
    out.line(f"days covered: {day_list(result.covered_days)}")
    out.line(f"days missed:  {day_list(result.missed_days)}")
    if result.pos_problems:
        _print_pos_problems(out, result)
    out.table(
        "Recent runs",
        ["started", "kind", "status", "window", "sent", "error"],
        [
            (
                local_time(r.started_at, tz),
                r.kind,
                r.status,
                f"{local_time(r.window_start, tz)} -> {local_time(r.window_end, tz)}",
                r.counts.get("sent", 0),
                (r.error or "")[:80],
            )
            for r in result.runs
        ],
    )
    out.table(
        "Decisions by reason",
        ["reason", "count"],
        result.reasons.most_common(),
    )
    out.table("Requests by status", ["status", "count"], sorted(result.requests_by_status.items()))
    if result.unsettled:
        _print_unsettled(out, result, tz)


def _print_pos_problems(out: Output, result: reports.Status) -> None:
    out.table(
        "POS rows not used as they came, in these days (fix the mapping or the POS data; "
        "surveysync check --sample 20 shows how rows are read)",
        ["problem", "column", "sales", "transactions (latest first)"],
        [
            (p.reason, p.column or "", p.count, ", ".join(p.transaction_ids))
            for p in result.pos_problems
        ],
    )


def _print_unsettled(out: Output, result: reports.Status, tz: ZoneInfo) -> None:
    out.table(
        "Requests not settled",
        ["request", "status", "email", "transaction", "created"],
        [
            (u.request_id, u.status, u.email_masked, u.transaction_id, local_time(u.created_at, tz))
            for u in result.unsettled
        ],
    )
    more = result.unsettled_total - len(result.unsettled)
    if more > 0:
        out.line(f"and {more} more (surveysync status --all lists every one)")


def print_explanation(out: Output, result: reports.ExplainResult, settings: Settings) -> None:
    tz = settings.store.tz
    if not result.rows:
        out.line(
            f"No decision recorded for {result.subject}. Sales are decided when a run reads "
            f"them; the ledger covers up to {local_time(result.covered_until, tz)}."
        )
        return
    out.table(
        f"Decisions for {result.subject}",
        ["sale", "transaction", "customer", "location", "decision", "rule", "request", "sent"],
        [
            (
                local_time(r.sale_at, tz),
                r.transaction_id,
                r.customer_id or "-",
                _location(r, settings),
                r.decision,
                r.rule,
                r.request_status or "-",
                local_time(r.sent_at, tz),
            )
            for r in result.rows
        ],
    )
    for reason in dict.fromkeys(r.reason for r in result.rows if r.reason):
        out.line(f"  {reason}: {_meaning(reason)}")
    surveys = [r for r in result.rows if r.survey is not None]
    if surveys:
        _print_surveys(out, surveys, tz)
    out.line(next_ask_line(result, tz))


# How each answer status counts, for the legend under the surveys table.
ANSWER_TEXT = {
    ResponseStatus.CONFIRMED: "the customer sent the survey form: counted",
    ResponseStatus.CLICKED: "a score link, no click on another score within the settle "
    "window (web.settle_minutes): counted",
    ResponseStatus.PROVISIONAL: "a score link clicked within the settle window: counted "
    "once it passes without a click on another score",
    ResponseStatus.SCANNER: "only a link scanner or a program visited: never counted",
}
COMMENT_WIDTH = 60  # characters of a comment shown on the terminal; --json has it whole


def _print_surveys(out: Output, rows: Sequence[reports.Explanation], tz: ZoneInfo) -> None:
    out.table(
        "Surveys",
        [
            "transaction",
            "sent",
            "answer",
            "counts",
            "score",
            "when",
            "review",
            "reminder",
            "comment",
        ],
        [_survey_cells(r, tz) for r in rows],
    )
    answers = [r.survey.answer for r in rows if r.survey and r.survey.answer]
    for status in dict.fromkeys(a.status for a in answers):
        out.line(f"  {status.value}: {ANSWER_TEXT[status]}")
    for row in rows:
        survey = row.survey
        if survey is not None and survey.uncounted_visits:
            out.line(
                f"  transaction {row.transaction_id}: {survey.uncounted_visits} visit(s) by a "
                f"link scanner or a program from {local_time(survey.uncounted_since, tz)}, "
                "kept but not counted"
            )


def _survey_cells(row: reports.Explanation, tz: ZoneInfo) -> tuple[object, ...]:
    assert row.survey is not None
    answer, survey = row.survey.answer, row.survey
    reminder = survey.reminder
    return (
        row.transaction_id,
        local_time(row.sent_at, tz) if row.sent_at else row.request_status or "-",
        answer.status.value if answer else "no answer",
        _counts(answer),
        "-" if answer is None or answer.score is None else answer.score,
        local_time(answer.when, tz) if answer else "-",
        local_time(survey.review_clicks[0], tz) if survey.review_clicks else "-",
        f"{reminder.kind} {reminder.status} {local_time(reminder.sent_at, tz)}"
        if reminder
        else "-",
        one_line(answer.comment, COMMENT_WIDTH) if answer and answer.comment else "",
    )


def _counts(answer: SurveyAnswer | None) -> str:
    if answer is None:
        return "-"
    if answer.counted:
        return "yes"
    return "not yet" if answer.status is ResponseStatus.PROVISIONAL else "no"


# Bidirectional controls reorder what a terminal shows ("Trojan Source"); shown escaped.
_BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


def one_line(text: str, width: int) -> str:
    """Customer text made safe for one terminal line: line breaks and tabs become spaces,
    control and bidirectional characters are shown as escapes, and it is cut to ``width``."""
    flat = " ".join(text.split())
    shown = "".join(
        f"\\u{ord(c):04x}" if c in _BIDI or unicodedata.category(c) in ("Cc", "Cs") else c
        for c in flat
    )
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def _location(row: reports.Explanation, settings: Settings) -> str:
    """The location's name (as the request kept it, or as the config lists it) and its id."""
    if row.location_id is None:
        return "-"
    name = row.location_name or settings.store.locations.get(row.location_id)
    return f"{name} ({row.location_id})" if name else row.location_id


def next_ask_line(result: reports.ExplainResult, tz: Any) -> str:
    if result.suppressed:
        return f"May next be asked: never, suppressed ({'; '.join(result.suppressed)})."
    next_at = result.rows[-1].next_eligible
    if next_at is None:
        return "May next be asked: now (on their next eligible sale)."
    return f"May next be asked: from {local_time(next_at, tz)} (cooldown)."


def print_preview(out: Output, email: SurveyEmail) -> None:
    from email import message_from_string  # only here: the CLI starts without the email package
    from email.policy import default

    # Read back as a mail client would: encoded words decoded, UTF-8 headers (RFC 6532) kept.
    mime = message_from_string(email.to_bytes().decode("utf-8"), policy=default)
    for name in ("From", "Reply-To", "To", "Subject", "Date", *email.extra_headers()):
        if mime[name] is not None:
            out.line(f"{name}: {mime[name]}")
    out.line("")
    out.line(email.text)


def print_checks(out: Output, checks: Sequence[Check]) -> None:
    for check in checks:
        out.line(f"{check.name:<9} {'ok' if check.ok else 'failed':<7} {check.detail}")


def print_sample(
    out: Output, settings: Settings, day: DaySample, sales: Sequence[Sale], decided: Sequence[str]
) -> None:
    """Each sampled sale, every column as surveysync read it (the address masked), and what
    the rules would decide now."""
    if day.day is None:
        out.line("sample    no sale in the last year to show")
        return
    out.line(
        f"sample    {len(sales)} of the {len(day.sales)} sales of {day.day} "
        f"({day.rows} rows), as surveysync reads them"
    )
    for sale, decision in zip(sales, decided, strict=True):
        rows = _sale_rows(sale, settings)
        out.table(f"{sale.transaction_id}: {decision}", ["column", "value"], rows)


def _sale_rows(sale: Sale, settings: Settings) -> list[tuple[str, str]]:
    from surveysync.ledger.keys import mask_email

    tz = settings.store.tz
    shown: list[tuple[str, str]] = []
    for column in fields(sale):
        name, value = column.name, getattr(sale, column.name)
        if isinstance(value, datetime):
            text = f"{local_time(value, tz)} ({tz.key})"
        elif name == "email" and value:
            text = mask_email(value)
        elif name == "customer_id" and value is None:
            text = "(none: a walk-in)"
        else:
            text = "(empty)" if value is None else str(value)
        shown.append((name, text))
    return shown


def print_suppressions(out: Output, rows: Sequence[dict[str, Any]], tz: ZoneInfo) -> None:
    out.table(
        "Suppressions",
        ["kind", "who", "source", "reason", "since"],
        [(r["kind"], r["display"], r["source"], r["reason"] or "", _since(r, tz)) for r in rows],
    )


def _since(row: dict[str, Any], tz: ZoneInfo) -> str:
    return local_time(row["created_at"], tz)


def print_daemon_start(out: Output, settings: Settings, upcoming: datetime) -> None:
    tz = settings.store.tz
    out.line(
        f"surveysync {settings.store.id}: nightly at {settings.schedule.at:%H:%M} "
        f"{settings.store.timezone}; next {local_time(upcoming, tz)}"
    )


def print_demo(out: Output, played: Any, lines: Sequence[str]) -> None:
    """The demo's nights (as a run's summary), then what to look at next."""
    out.line(lines[0])
    print_report(out, played.report, played.settings)
    for line in lines[1:]:
        out.line(line)
