"""When the nightly run fires: once per store-local day at ``schedule.at``, whatever the clocks
do that day. Pure date arithmetic and the heartbeat file, so that ``status`` answers without
loading the scheduler and the sync pipeline; ``surveysync.scheduler`` hands ``Nightly`` to
APScheduler as its trigger.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from surveysync import heartbeat
from surveysync.config import Settings


class Nightly:
    """Once per store-local day at ``at``, whatever the clocks do that day.

    APScheduler 3.x's CronTrigger skips a day whose ``at`` falls in a spring-forward gap at
    midnight (America/Santiago, Asia/Beirut, America/Havana) and fires twice when ``at`` is
    repeated on a fall-back night. Here a time that does not exist fires at the first
    instant after the gap, and a repeated time fires once, at its first occurrence.
    """

    def __init__(self, at: time, tz: ZoneInfo) -> None:
        self.at = at
        self.tz = tz

    def fire_on(self, day: date) -> datetime:
        # fold=0 and a round trip through UTC: a skipped time moves past the gap, a
        # repeated time is its first occurrence.
        wall = datetime.combine(day, self.at, tzinfo=self.tz)
        return wall.astimezone(UTC).astimezone(self.tz)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        # fire_on gives one instant per local day, later each day, so "after the previous
        # fire and not before now" is at most one fire a day. (The previous fire may be a
        # catch-up at start, earlier the same day: tonight's fire still comes.)
        day = now.astimezone(self.tz).date() - timedelta(days=1)
        while (fire := self.fire_on(day)) < now or (
            previous_fire_time is not None and fire <= previous_fire_time
        ):
            day += timedelta(days=1)
        return fire

    def last_fire(self, moment: datetime) -> datetime:
        """The latest fire time at or before ``moment``."""
        day = moment.astimezone(self.tz).date()
        fire = self.fire_on(day)
        return fire if fire <= moment else self.fire_on(day - timedelta(days=1))

    def __str__(self) -> str:
        return f"nightly[{self.at:%H:%M} {self.tz.key}]"


def next_fire(settings: Settings, now: datetime) -> datetime:
    """When ``surveysync run`` with these settings fires next."""
    fire = Nightly(settings.schedule.at, settings.store.tz).get_next_fire_time(None, now)
    assert fire is not None  # a daily trigger always has a next day
    return fire


def schedule_status(settings: Settings, now: datetime) -> dict[str, Any]:
    """For ``status``: the next nightly fire, the daemon's heartbeat, and whether the daemon
    is overdue (its heartbeat promised a fire that has long passed)."""
    beat = heartbeat.read(settings.schedule.heartbeat_file)
    # A running daemon knows its own schedule (it may have been started with another
    # schedule.at, through the environment); the config speaks only when none runs.
    live = beat is not None and beat.state != "stopped" and bool(beat.next_fire)
    fire = beat.next_fire if live and beat is not None else next_fire(settings, now).isoformat()
    return {
        "next_fire": fire,
        "next_fire_from": "daemon" if live else "config",
        "heartbeat": None if beat is None else vars(beat),
        "overdue": beat is not None and beat.overdue(now),
    }
