"""Which stretch of time a run reads, cut into business days of the store's time zone.

Pure functions: no clock, no database. A run covers (start, cutoff]; it is processed one
local calendar day at a time so that progress is durable per day. Day boundaries are local
midnights converted once, and the end of one slice is the start of the next, so slices are
contiguous even on days with 23 or 25 hours or a midnight that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class DaySlice:
    day: date
    start: datetime  # exclusive
    end: datetime  # inclusive


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``tz``, as an aware datetime."""
    # Round-trip through UTC so that a midnight skipped by DST lands on a real instant.
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(ZoneInfo("UTC")).astimezone(tz)


def slice_days(start: datetime, end: datetime, tz: ZoneInfo) -> list[DaySlice]:
    """(start, end] cut at local midnights; empty when end <= start."""
    if end <= start:
        return []
    slices: list[DaySlice] = []
    day = start.astimezone(tz).date()
    lower = start
    while lower < end:
        upper = min(day_start(day + timedelta(days=1), tz), end)
        if upper > lower:
            slices.append(DaySlice(day, lower, upper))
        lower = max(lower, upper)
        day += timedelta(days=1)
    return slices


def sync_start(
    bookmark: datetime | None, first_run_start: datetime, lookback_days: int
) -> datetime:
    """Where a scheduled or manual run starts reading: the bookmark (the cutoff of the last
    successful sync) minus a look-back, so that sales finalized late or stamped with an older
    time are not lost; or the configured first start on the very first run."""
    if bookmark is None:
        return first_run_start
    return bookmark - timedelta(days=lookback_days)


def backfill_bounds(
    since: date, until: date | None, now: datetime, tz: ZoneInfo
) -> tuple[datetime, datetime]:
    """An explicit range of whole local days, never past now."""
    start = day_start(since, tz)
    end = now if until is None else min(day_start(until + timedelta(days=1), tz), now)
    return start, end
