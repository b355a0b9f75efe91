"""Business days: contiguous, one per local calendar day, whatever the clocks do."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from surveysync.windows import backfill_bounds, day_start, slice_days, sync_start

# Zones with a DST change on these dates; Santiago and Havana change at midnight, so one
# local midnight does not exist; Lord Howe moves by 30 minutes.
DST_DAYS = [
    ("Europe/Amsterdam", date(2026, 3, 29)),
    ("Europe/Amsterdam", date(2026, 10, 25)),
    ("America/Santiago", date(2026, 9, 6)),
    ("America/Santiago", date(2026, 4, 5)),
    ("America/Havana", date(2026, 3, 8)),
    ("Asia/Beirut", date(2026, 3, 29)),
    ("Australia/Lord_Howe", date(2026, 10, 4)),
    ("Australia/Lord_Howe", date(2026, 4, 5)),
]


@pytest.mark.parametrize(("zone", "day"), DST_DAYS)
def test_days_around_a_clock_change_are_contiguous_and_one_per_date(zone: str, day: date) -> None:
    """Around a DST change every local date gets exactly one slice, with no gap or overlap."""
    tz = ZoneInfo(zone)
    start = day_start(day - timedelta(days=2), tz)
    end = day_start(day + timedelta(days=3), tz)
    slices = slice_days(start, end, tz)

    assert [s.day for s in slices] == [day + timedelta(days=n) for n in range(-2, 3)]
    assert slices[0].start == start and slices[-1].end == end
    for earlier, later in itertools.pairwise(slices):
        assert earlier.end == later.start
    lengths = {(s.end - s.start) for s in slices}
    assert lengths <= {timedelta(hours=h) for h in (23, 23.5, 24, 24.5, 25)}


def test_a_window_ending_mid_day_ends_with_a_partial_day() -> None:
    """A manual sync at 14:00 covers today only up to 14:00."""
    tz = ZoneInfo("Europe/Amsterdam")
    now = datetime(2026, 11, 22, 14, 0, tzinfo=tz)
    slices = slice_days(datetime(2026, 11, 21, 0, 0, tzinfo=tz), now, tz)
    assert [(s.day.isoformat(), s.end) for s in slices] == [
        ("2026-11-21", datetime(2026, 11, 22, 0, 0, tzinfo=tz)),
        ("2026-11-22", now),
    ]


def test_the_next_run_starts_a_look_back_before_the_covered_end() -> None:
    """Each run re-reads the look-back; the very first run starts at the configured point."""
    first = datetime(2026, 11, 1, tzinfo=UTC)
    covered = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
    assert sync_start(None, first, 3) == first
    assert sync_start(covered, first, 3) == covered - timedelta(days=3)


def test_a_backfill_never_reaches_past_now() -> None:
    """backfill --until a future date stops at the present moment."""
    tz = ZoneInfo("Europe/Amsterdam")
    now = datetime(2026, 11, 22, 9, 0, tzinfo=tz)
    start, end = backfill_bounds(date(2026, 11, 1), date(2026, 12, 31), now, tz)
    assert start == datetime(2026, 11, 1, tzinfo=tz) and end == now
    assert backfill_bounds(date(2026, 11, 1), date(2026, 11, 2), now, tz)[1] == datetime(
        2026, 11, 3, tzinfo=tz
    )
