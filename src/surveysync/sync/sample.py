"""The latest day of sales as a night would read and decide them: what ``surveysync check``
looks at to find value problems (rows it cannot read, a sale the mapping yields twice), and
what ``check --sample N`` shows an admin who is writing a mapping.

Only reads: the POS through its read-only source, the ledger (when there is one) for what
it knows about the people. The decisions are the rules' answer as of now, the person's
history included when the ledger exists; the day's one-survey-per-person choice is not made.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from surveysync.config import Settings
from surveysync.ledger import LedgerError, open_ledger
from surveysync.model import Sale, SaleRef
from surveysync.pos import RowProblem, SalesSource
from surveysync.rules import PersonHistory, decide
from surveysync.sync.people import People, normalized
from surveysync.windows import DaySlice, day_start

# How far back the latest day with sales is looked for, widening: a store closed on
# Sundays, a holiday, a season.
_LOOK_BACK_DAYS = (1, 7, 31, 366)


@dataclass(slots=True)
class DaySample:
    """One business day read through the mapping: its readable sales (each once), the rows
    it could not read, and the sales it yielded more than once."""

    day: date | None  # None: no sale in the last year
    rows: int = 0
    sales: list[Sale] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    repeated: Counter[SaleRef] = field(default_factory=Counter)  # ref -> rows beyond the first
    conflicting: set[SaleRef] = field(default_factory=set)  # ...with other values

    def add(self, item: Sale | RowProblem, first: dict[SaleRef, Sale]) -> None:
        self.rows += 1
        if isinstance(item, RowProblem):
            self.problems.append(item)
            return
        earlier = first.setdefault(item.ref, item)
        if earlier is item:
            self.sales.append(item)
            return
        self.repeated[item.ref] += 1
        if earlier != item:
            self.conflicting.add(item.ref)


def latest_day(source: SalesSource, tz: ZoneInfo, now: datetime) -> DaySample:
    """The latest business day up to ``now`` with any sale, read whole."""
    latest = _latest_sale_at(source, now)
    if latest is None:
        return DaySample(None)
    day = _day_of(latest, tz)
    sample = DaySample(day.day)
    first: dict[SaleRef, Sale] = {}
    for chunk in source.sales(day.start, day.end):
        for item in chunk:
            sample.add(item, first)
    return sample


def decisions(settings: Settings, sales: list[Sale], now: datetime) -> list[str]:
    """What the rules decide for each sale now: ``request`` or the skip reason. The person's
    history comes from the ledger when it exists (cooldown, suppressions); without one, every
    person is new."""
    rules, tz = settings.rules, settings.store.tz
    try:
        ledger = open_ledger(settings, existing=True)
    except LedgerError:
        histories = [PersonHistory(email=normalized(s.email)) for s in sales]
    else:
        try:
            people = People(ledger, run_id="")
            facts = people.facts(sales)
            histories = [people.history(s, facts) for s in sales]
        finally:
            ledger.close()
    found = [decide(s, h, rules, tz, now) for s, h in zip(sales, histories, strict=True)]
    return ["request" if d.reason is None else str(d.reason) for d in found]


def _latest_sale_at(source: SalesSource, now: datetime) -> datetime | None:
    end = now
    for days in _LOOK_BACK_DAYS:
        start = now - timedelta(days=days)
        latest: datetime | None = None
        for chunk in source.sales(start, end):
            times = [item.sale_at for item in chunk if item.sale_at is not None]
            latest = max([*times, latest] if latest else times, default=latest)
        if latest is not None:
            return latest
        end = start
    return None


def _day_of(moment: datetime, tz: ZoneInfo) -> DaySlice:
    """The business day whose (start, end] holds ``moment``: a sale at midnight sharp is the
    day before's, as a night's windows read it."""
    day = moment.astimezone(tz).date()
    if moment <= day_start(day, tz):
        day -= timedelta(days=1)
    return DaySlice(day, day_start(day, tz), day_start(day + timedelta(days=1), tz))
