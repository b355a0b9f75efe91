"""`surveysync report --html FILE`: one self-contained HTML file that opens offline in any
browser. The page carries its own style and its charts as inline SVG; it has no script and
loads no font, image or style sheet from anywhere. Every text from the ledger (names,
comments) is escaped by Jinja2's autoescape. Readable on a phone (one column, charts that
scale) and on paper (print styles, vector charts).

Sections: the store's NPS with its interval and the answers counted; NPS per month overall
and per location; the 0–10 score distribution; NPS per technician with its interval; the
response rate over time (weeks for periods up to 26 weeks, else months); the latest comments.

It reads through ``query`` and never writes to the ledger; the only file it writes is the
one asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from sqlalchemy import Connection

from surveysync.config import Settings
from surveysync.report import charts, query
from surveysync.report.errors import ReportError
from surveysync.report.figures import Cell, Group, Labels, Report, group_rows, rollup, total_of
from surveysync.report.nps import CONFIDENCE, INTERVAL_METHOD, category
from surveysync.report.period import Dim
from surveysync.report.tables import as_dict

COMMENTS = 20
WEEKLY_UP_TO_DAYS = 26 * 7
_CUBE = (Dim.LOCATION, Dim.EMPLOYEE, Dim.MONTH)


@dataclass(frozen=True, slots=True)
class Sections:
    """What the page shows, as figures (the charts are drawn from these)."""

    report: Report
    months: list[Group]
    locations: list[Group]
    location_months: dict[str, list[Group]]
    technicians: list[Group]
    rates: list[Group]
    rate_unit: str
    comments: list[query.Comment]


def write_report(
    conn: Connection, scope: query.Scope, settings: Settings, minimum: int, path: Path
) -> Report:
    """Read the figures, draw the charts and write the page to ``path``."""
    sections = gather(conn, scope, settings, minimum)
    page = render(sections, settings)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return sections.report


def gather(conn: Connection, scope: query.Scope, settings: Settings, minimum: int) -> Sections:
    cube, names = query.cells(conn, scope, _CUBE)
    labels = Labels(dict(settings.store.locations) | names, scope.period.buckets(Dim.MONTH))

    def groups(keep: Sequence[int], by: tuple[Dim, ...]) -> list[Group]:
        return group_rows(rollup(cube, keep).values(), by, labels, minimum)

    months = _every_bucket(groups([2], (Dim.MONTH,)), Dim.MONTH, labels, minimum)
    rates, unit = _rates(conn, scope, months, labels, minimum)
    total = total_of(cube, minimum)
    report = Report(scope.store, scope.period, (), minimum, scope.now, total, [])
    return Sections(
        report=report,
        months=months,
        locations=groups([0], (Dim.LOCATION,)),
        location_months=_per_location(groups([0, 2], (Dim.LOCATION, Dim.MONTH))),
        technicians=groups([1], (Dim.EMPLOYEE,)),
        rates=rates,
        rate_unit=unit,
        comments=query.latest_comments(conn, scope, COMMENTS),
    )


def _every_bucket(groups: list[Group], dim: Dim, labels: Labels, minimum: int) -> list[Group]:
    """One group per month or week of the period, an empty one where nothing was sent."""
    found = {g.key: g for g in groups}
    empty = [Cell((i,)) for i in range(len(labels.buckets)) if (i,) not in found]
    return sorted([*groups, *group_rows(empty, (dim,), labels, minimum)], key=lambda g: g.key)


def _rates(
    conn: Connection, scope: query.Scope, months: list[Group], labels: Labels, minimum: int
) -> tuple[list[Group], str]:
    if scope.period.days > WEEKLY_UP_TO_DAYS:
        return months, "month"
    weeks = scope.period.buckets(Dim.WEEK)
    week_labels = Labels(labels.locations, weeks)
    cells, _ = query.cells(conn, scope, (Dim.WEEK,))
    found = group_rows(cells, (Dim.WEEK,), week_labels, minimum)
    return _every_bucket(found, Dim.WEEK, week_labels, minimum), "week"


def _per_location(groups: list[Group]) -> dict[str, list[Group]]:
    lines: dict[str, list[Group]] = {}
    for group in groups:
        lines.setdefault(group.labels[Dim.LOCATION], []).append(group)
    return lines


# --- the page -------------------------------------------------------------------------------


def _point(group: Group) -> charts.Point:
    interval = group.interval
    return charts.Point(
        label=" ".join(group.labels.values()),
        nps=group.nps,
        low=interval.low if interval else None,
        high=interval.high if interval else None,
        too_few=group.too_few,
    )


def _month_points(months: list[Group], groups: list[Group]) -> list[charts.Point]:
    found = {g.key[-1]: g for g in groups}
    return [_point(found[m.key[0]]) if m.key[0] in found else _nothing(m) for m in months]


def _nothing(month: Group) -> charts.Point:
    return charts.Point(month.labels[Dim.MONTH], None, None, None, too_few=True)


def draw(sections: Sections) -> dict[str, str]:
    """Every chart of the page, as inline SVG."""
    lines = {
        name: _month_points(sections.months, groups)
        for name, groups in sections.location_months.items()
    }
    ranked = sorted(sections.technicians, key=lambda g: (g.too_few, g.rank or 0))
    return {
        "trend": charts.trend([_point(g) for g in sections.months], lines),
        "scores": charts.distribution(sections.report.total.scores),
        "technicians": charts.technicians([_point(g) for g in ranked]),
        "rate": charts.response_rate(
            [next(iter(g.labels.values())) for g in sections.rates],
            [g.response_rate for g in sections.rates],
        ),
    }


def render(sections: Sections, settings: Settings) -> str:
    environment = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    source = (resources.files("surveysync.report") / "page.html").read_text("utf-8")
    template = environment.from_string(source)
    return template.render(**_context(sections, settings))


def _context(sections: Sections, settings: Settings) -> dict[str, Any]:
    report = sections.report
    tz = report.period.tz
    return {
        "store_name": settings.store.name,
        "report": as_dict(report),
        "total": report.total,
        "months": [_row(g) for g in sections.months],
        "locations": [_row(g) for g in sections.locations],
        "technicians": [_row(g) for g in sections.technicians],
        "rate_unit": sections.rate_unit,
        "charts": {name: Markup(svg) for name, svg in draw(sections).items()},
        "comments": [_comment(c, settings, tz) for c in sections.comments],
        "confidence": int(CONFIDENCE * 100),
        "method": INTERVAL_METHOD,
        "generated": _local(report.generated_at, tz),
    }


def _row(group: Group) -> dict[str, Any]:
    interval = group.interval
    rate = group.response_rate
    return {
        "label": " ".join(group.labels.values()),
        "sent": group.sent,
        "responses": group.tally.responses,
        "rate": "-" if rate is None else f"{100 * rate:.1f} %",
        "nps": "-" if group.nps is None else f"{group.nps:.1f}",
        "margin": "" if interval is None else f"± {interval.margin:.1f}",
        "interval": "" if interval is None else f"{interval.low:.1f} … {interval.high:.1f}",
        "rank": "too few" if group.too_few else (group.rank or ""),
        "too_few": group.too_few,
    }


def _comment(comment: query.Comment, settings: Settings, tz: Any) -> dict[str, Any]:
    location = comment.location_name or settings.store.locations.get(
        comment.location_id or "", comment.location_id or ""
    )
    return {
        "at": _local(comment.answered_at, tz),
        "score": comment.score,
        "kind": category(comment.score).value,
        "location": location or "",
        "employee": comment.employee_name or "",
        "text": comment.text,
    }


def _local(moment: datetime, tz: Any) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")
