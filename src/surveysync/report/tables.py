"""The report on a terminal (a rich table), piped (tab-separated, one line per group) and as
JSON. All three show the same figures, rounded once here (to one decimal), so a script
reading ``--json`` and a person reading the table never see different numbers.

Output only: this module computes nothing and reads nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.table import Table

from surveysync.console import Output
from surveysync.report.figures import Group, Report
from surveysync.report.nps import CONFIDENCE, INTERVAL_METHOD
from surveysync.report.period import Dim

TOO_FEW = "too few"
ALL = "(all)"


def as_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready values: what ``--json`` prints."""
    period = report.period
    return {
        "store": report.store,
        "period": {
            "since": period.since.isoformat(),
            "until": period.until.isoformat(),
            "timezone": period.tz.key,
            "surveys": "sent in the period (by send time, store time zone)",
        },
        "by": [dim.value for dim in report.by],
        "min_responses": report.min_responses,
        "interval": {"confidence": CONFIDENCE, "method": INTERVAL_METHOD},
        "generated_at": report.generated_at.isoformat(),
        "total": _group_dict(report.total),
        "groups": [_group_dict(group) for group in report.groups],
    }


def _group_dict(group: Group) -> dict[str, Any]:
    labels: dict[str, Any] = {dim.value: label for dim, label in group.labels.items()}
    if Dim.LOCATION in group.labels:
        labels["location_id"] = group.key[list(group.labels).index(Dim.LOCATION)]
    interval = group.interval
    rate = group.response_rate
    return labels | {
        "sent": group.sent,
        "responses": group.tally.responses,
        "response_rate_percent": _one(None if rate is None else 100 * rate),
        "promoters": group.tally.promoters,
        "passives": group.tally.passives,
        "detractors": group.tally.detractors,
        "nps": _one(group.nps),
        "margin": _one(interval.margin if interval else None),
        "low": _one(interval.low if interval else None),
        "high": _one(interval.high if interval else None),
        "too_few": group.too_few,
        "rank": group.rank,
        "answers": {
            "confirmed": group.answers.confirmed,
            "clicked": group.answers.clicked,
            "settled_provisional": group.answers.settled,
            "provisional": group.answers.provisional,
            "scanner": group.answers.scanner,
        },
    }


def _one(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def print_json(report: Report) -> None:
    sys.stdout.write(json.dumps(as_dict(report), indent=2, ensure_ascii=False) + "\n")


# --- the table ----------------------------------------------------------------------------

_COUNTS = ["sent", "answers", "rate %", "promoters", "passives", "detractors"]
_SCORE = ["NPS", "± 90 %", "90 % interval", "rank"]
_KINDS = ["confirmed", "clicked", "settled", "provisional", "scanner"]


def print_table(report: Report, out: Output) -> None:
    """A rich table on a terminal; tab-separated lines (with the answer kinds) when piped."""
    dims = [dim.value for dim in report.by] or ["group"]
    rows = [_row(group, report) for group in report.groups]
    total = _row(report.total, report, label=[ALL] * len(dims))
    if not out.interactive:
        out.line("\t".join([*dims, *_COUNTS, *_SCORE, *_KINDS]))
        for row in [*rows, total]:
            out.line("\t".join(row))
        return
    _print_rich(report, out, dims, rows, total)


def _row(group: Group, report: Report, label: Sequence[str] = ()) -> list[str]:
    data = _group_dict(group)
    labels = list(label) or [group.labels[dim] for dim in report.by]
    interval = "" if data["low"] is None else f"{data['low']:.1f} … {data['high']:.1f}"
    kinds = data["answers"]
    return [
        *labels,
        str(data["sent"]),
        str(data["responses"]),
        _text(data["response_rate_percent"]),
        str(data["promoters"]),
        str(data["passives"]),
        str(data["detractors"]),
        _text(data["nps"]),
        _text(data["margin"]),
        interval,
        TOO_FEW if group.too_few else str(group.rank or ""),
        *(str(kinds[k]) for k in ("confirmed", "clicked", "settled_provisional")),
        *(str(kinds[k]) for k in ("provisional", "scanner")),
    ]


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _print_rich(
    report: Report, out: Output, dims: list[str], rows: list[list[str]], total: list[str]
) -> None:
    out.line(_heading(report))
    table = Table(box=box.SIMPLE_HEAD, show_footer=False)
    for name in dims:
        table.add_column(name, overflow="fold")
    for name in [*_COUNTS, *_SCORE]:
        table.add_column(name, justify="right", no_wrap=True)
    width = len(dims) + len(_COUNTS) + len(_SCORE)
    for row in rows:
        table.add_row(*row[:width])
    table.add_row(*total[:width], style="bold", end_section=True)
    out.console.print(table)
    for line in _notes(report):
        out.line(line)


def _heading(report: Report) -> str:
    period = report.period
    return (
        f"NPS of store {report.store}: surveys sent {period.since} to {period.until} "
        f"({period.tz.key}), by send time"
    )


def _notes(report: Report) -> list[str]:
    kinds = report.total.answers
    return [
        f"Answers counted: {kinds.counted} (confirmed {kinds.confirmed}, clicked "
        f"{kinds.clicked}, provisional past their settle window {kinds.settled}). "
        f"Not counted: {kinds.provisional} still provisional, {kinds.scanner} link-scanner "
        "passes.",
        f"A group with fewer than {report.min_responses} answers is marked {TOO_FEW!r} and not "
        f"ranked. Interval: {int(CONFIDENCE * 100)} %, {INTERVAL_METHOD}.",
    ]
