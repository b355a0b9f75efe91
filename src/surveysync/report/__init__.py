"""`surveysync report`: NPS with its margin of error, the counts behind it and the response
rate, for a period of send times, by location, employee, month or week; on a terminal, as
tab-separated text, as JSON, or as one self-contained HTML file with SVG charts.

    run_report(settings, options, out)   the whole command: read, compute, print or write
    make_report(settings, options)       the same without printing (the demo's report.html)

    period   what is covered and how it is grouped (pure)
    query    the ledger reads, summed in the database (read-only connection)
    nps      the arithmetic: NPS, its 90 % interval, ranks (pure)
    figures  sums -> groups with their NPS, rate, rank, "too few" (pure)
    tables   terminal table, tab-separated text, JSON
    html     the HTML file; charts drawn by matplotlib, imported only there

It needs only the ledger (no POS, no provider), and must never write to it. Errors: see
``surveysync.report.errors`` (ReportError, LedgerNotReady, ReportUsageError); a database
failure mid-read is the ledger's LedgerError.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import structlog
from sqlalchemy import Connection

from surveysync.config import Settings
from surveysync.console import Output
from surveysync.report import query, tables
from surveysync.report.errors import LedgerNotReady, ReportError, ReportUsageError
from surveysync.report.figures import Labels, Report, group_rows, total_of
from surveysync.report.period import Dim, Period, parse_by

__all__ = [
    "Dim",
    "LedgerNotReady",
    "ReportError",
    "ReportOptions",
    "ReportUsageError",
    "make_report",
    "parse_by",
    "run_report",
]

log = structlog.get_logger("surveysync.report")


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """What `surveysync report` was asked for; None means the default."""

    since: date | None = None
    until: date | None = None
    by: tuple[Dim, ...] = ()
    min_responses: int | None = None  # default: [report] min_responses
    as_json: bool = False
    html: Path | None = None
    now: datetime | None = None  # default: the clock (tests pass one in)

    @classmethod
    def parse(
        cls,
        *,
        since: datetime | None,
        until: datetime | None,
        by: str,
        min_responses: int | None,
        as_json: bool,
        html_path: Path | None,
    ) -> ReportOptions:
        """The options as the command line gives them (dates as datetimes, ``by`` as text);
        ReportUsageError for a ``--by`` it does not know."""
        return cls(
            since=since.date() if since else None,
            until=until.date() if until else None,
            by=parse_by(by),
            min_responses=min_responses,
            as_json=as_json,
            html=html_path,
        )


def run_report(settings: Settings, options: ReportOptions, out: Output | None = None) -> Report:
    """Make the report and print it (table, tab-separated or JSON) or write it (``html``).
    Returns the figures. Raises ReportError (ReportUsageError for options that make no
    sense) or LedgerError."""
    report = make_report(settings, options)
    _show(report, options, out or Output())
    return report


def make_report(settings: Settings, options: ReportOptions) -> Report:
    """The figures, and with ``html`` the file written; prints nothing (``surveysync demo``
    says it in its own words). Raises as ``run_report`` does."""
    if options.html is not None and (options.by or options.as_json):
        raise ReportUsageError("--html FILE has its own sections; leave out --by and --json")
    started = time.perf_counter()
    tz = settings.store.tz
    now = options.now or datetime.now(tz)
    period = Period.choose(options.since, options.until, now.astimezone(tz).date(), tz)
    scope = query.Scope(settings.store.id, period, now)
    minimum = options.min_responses
    if minimum is None:
        minimum = settings.report.min_responses
    if minimum < 1:
        raise ReportUsageError("--min-responses must be 1 or more")
    db = query.open_for_reading(settings)
    try:
        with db.reading() as conn:
            if options.html is not None:
                from surveysync.report import html as html_page  # matplotlib only here

                report = html_page.write_report(conn, scope, settings, minimum, options.html)
            else:
                report = _figures(conn, scope, options.by, settings, minimum)
    finally:
        db.close()
    log.info(
        "report.made",
        by=[d.value for d in options.by],
        html=options.html is not None,
        groups=len(report.groups),
        seconds=round(time.perf_counter() - started, 3),
    )
    return report


def _figures(
    conn: Connection, scope: query.Scope, by: tuple[Dim, ...], settings: Settings, minimum: int
) -> Report:
    cells, names = query.cells(conn, scope, by)
    labels = Labels(
        locations=dict(settings.store.locations) | names,
        buckets=scope.period.buckets(next((d for d in by if d.is_time), Dim.MONTH)),
    )
    return Report(
        store=scope.store,
        period=scope.period,
        by=by,
        min_responses=minimum,
        generated_at=scope.now,
        total=total_of(cells, minimum),
        groups=group_rows(cells, by, labels, minimum) if by else [],
    )


def _show(report: Report, options: ReportOptions, out: Output) -> None:
    if options.html is not None:
        total = report.total
        nps = "-" if total.nps is None else f"{total.nps:.1f}"
        out.line(
            f"wrote {options.html}: {total.tally.responses} answers to {total.sent} surveys "
            f"sent {report.period.since} to {report.period.until}, NPS {nps}"
        )
    elif options.as_json:
        tables.print_json(report)
    else:
        tables.print_table(report, out)
