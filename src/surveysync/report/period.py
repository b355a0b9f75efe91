"""What a report covers: the period of send times, and how it is grouped (location, employee,
month, week). Months and weeks begin at local midnight in the store's time zone, so their
boundaries move with daylight saving time; the ledger compares them as UTC instants.

Pure: no I/O, no clock (today is passed in).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from surveysync.report.errors import ReportUsageError

DEFAULT_DAYS = 90


class Dim(StrEnum):
    """A way to group a report: ``--by location,month``."""

    LOCATION = "location"
    EMPLOYEE = "employee"
    MONTH = "month"
    WEEK = "week"

    @property
    def is_time(self) -> bool:
        return self in (Dim.MONTH, Dim.WEEK)


def parse_by(text: str | None) -> tuple[Dim, ...]:
    """``"location,month"`` -> (LOCATION, MONTH); empty means no grouping (the total only)."""
    names = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    allowed = ", ".join(d.value for d in Dim)
    dims: list[Dim] = []
    for name in names:
        if name not in Dim.__members__.values():
            raise ReportUsageError(f"--by {name!r}: group by one or more of {allowed}")
        if Dim(name) in dims:
            raise ReportUsageError(f"--by names {name!r} twice")
        dims.append(Dim(name))
    if Dim.MONTH in dims and Dim.WEEK in dims:
        raise ReportUsageError("--by month and week together: weeks cross months; pick one")
    return tuple(dims)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One month or week of the period: its label and its first instant (aware)."""

    label: str
    start: datetime


@dataclass(frozen=True, slots=True)
class Period:
    """Surveys sent from ``since`` through ``until`` (whole local days, both included)."""

    since: date
    until: date
    tz: ZoneInfo

    @classmethod
    def choose(cls, since: date | None, until: date | None, today: date, tz: ZoneInfo) -> Period:
        """The asked-for days; by default the last 90 days up to today."""
        last = until or today
        first = since or last - timedelta(days=DEFAULT_DAYS - 1)
        if first > last:
            raise ReportUsageError(f"--since {first} is after --until {last}")
        return cls(first, last, tz)

    @property
    def start(self) -> datetime:
        return _midnight(self.since, self.tz)

    @property
    def end(self) -> datetime:
        """The first instant after the period."""
        return _midnight(self.until + timedelta(days=1), self.tz)

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def buckets(self, dim: Dim) -> list[Bucket]:
        """The months or weeks the period touches; the first starts with the period."""
        first, last = self.since, self.until
        starts = _months(first, last) if dim is Dim.MONTH else _weeks(first, last)
        return [
            Bucket(_label(day, dim), max(self.start, _midnight(day, self.tz))) for day in starts
        ]


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def _months(first: date, last: date) -> Iterator[date]:
    day = first.replace(day=1)
    while day <= last:
        yield day
        day = (day + timedelta(days=32)).replace(day=1)


def _weeks(first: date, last: date) -> Iterator[date]:
    day = first - timedelta(days=first.weekday())  # ISO weeks start on Monday
    while day <= last:
        yield day
        day += timedelta(days=7)


def _label(day: date, dim: Dim) -> str:
    if dim is Dim.MONTH:
        return f"{day:%Y-%m}"
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"
