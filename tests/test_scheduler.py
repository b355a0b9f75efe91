"""The nightly daemon: one fire a day whatever the clocks do, catch-up after nights off,
retries while the POS is down, and a clean stop in the middle of a batch."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from structlog.testing import capture_logs

from surveysync import heartbeat
from surveysync.ledger import LockHeld
from surveysync.providers import OutgoingEmail, SendResult
from surveysync.scheduler import Daemon, NightlyTrigger
from tests.conftest import Store, local

# Zones whose clocks change at or near midnight, one with a 30-minute shift, and ours.
DST_ZONES = [
    "America/Santiago",
    "America/Havana",
    "Asia/Beirut",
    "Australia/Lord_Howe",
    "Europe/Amsterdam",
]
AT_TIMES = [time(23, 0), time(0, 0), time(0, 30), time(1, 30), time(2, 15), time(2, 30)]


def fires_in_year(trigger: NightlyTrigger, year: int) -> list[datetime]:
    start = datetime(year, 1, 1, tzinfo=trigger.tz)
    fires: list[datetime] = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire.year == year:
        fires.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)
    return fires


def clock_changes(tz: ZoneInfo, year: int) -> list[date]:
    days = [date(year, 1, 1) + timedelta(days=n) for n in range(366)]
    offset = [datetime.combine(d, time(12), tzinfo=tz).utcoffset() for d in days]
    return [days[n] for n in range(1, len(days)) if offset[n] != offset[n - 1]]


@pytest.mark.parametrize("zone", DST_ZONES)
@pytest.mark.parametrize("at", AT_TIMES, ids=lambda t: t.strftime("%H%M"))
def test_the_nightly_job_fires_exactly_once_every_local_day(zone: str, at: time) -> None:
    """Through a whole year, spring-forward and fall-back days included, there is one fire
    per local date, at the configured time, or just after a gap that swallowed it."""
    tz = ZoneInfo(zone)
    assert len(clock_changes(tz, 2026)) >= 2 or zone == "Asia/Beirut"  # the test sees DST
    fires = fires_in_year(NightlyTrigger(at, tz), 2026)

    local_days = [f.astimezone(tz).date() for f in fires]
    assert local_days == [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    for fire in fires:
        wall = fire.astimezone(tz)
        scheduled = datetime.combine(wall.date(), at)
        # On time, or pushed forward by a gap of at most an hour (30 minutes on Lord Howe).
        assert timedelta(0) <= wall.replace(tzinfo=None) - scheduled <= timedelta(hours=1)
    assert sorted(set(fires)) == fires  # strictly increasing: never twice


def test_a_repeated_hour_fires_once_at_its_first_occurrence() -> None:
    """At 02:30 on the night Amsterdam's clocks go back, the job runs at the first 02:30."""
    tz = ZoneInfo("Europe/Amsterdam")
    trigger = NightlyTrigger(time(2, 30), tz)
    first = trigger.get_next_fire_time(None, datetime(2026, 10, 25, 0, 0, tzinfo=tz))
    assert first is not None and first.utcoffset() == timedelta(hours=2)
    following = trigger.get_next_fire_time(first, first + timedelta(minutes=1))
    assert following is not None and following.date() == date(2026, 10, 26)


def test_a_midnight_swallowed_by_spring_forward_fires_after_the_gap() -> None:
    """Santiago skips 00:00 on 6 September 2026: a midnight job runs at 01:00 that day."""
    tz = ZoneInfo("America/Santiago")
    fire = NightlyTrigger(time(0, 0), tz).fire_on(date(2026, 9, 6))
    assert fire.astimezone(tz).replace(tzinfo=None) == datetime(2026, 9, 6, 1, 0)


def test_the_job_is_scheduled_with_grace_coalescing_and_one_instance(store: Store) -> None:
    """The nightly job forgives a late start, runs missed fires once, and never overlaps."""
    daemon = Daemon(store.settings())
    [job] = daemon._scheduler().get_jobs()
    assert isinstance(job.trigger, NightlyTrigger) and job.trigger.at == time(23, 0)
    assert job.misfire_grace_time == 360 * 60
    assert job.coalesce is True and job.max_instances == 1


# --- nights ----------------------------------------------------------------------------------


@pytest.fixture
def night_store(store: Store) -> Store:
    store.first_run_start = "2026-11-16T00:00:00"
    return store


def sale_on(store: Store, customer_id: str, day: int, hour: int = 10) -> None:
    store.customer(customer_id)
    store.pos.sale(customer_id, datetime(2026, 11, day, hour, 0))


def night_at(store: Store, moment: datetime, **kwargs: object) -> Daemon:
    """A daemon whose night runs as if it were ``moment``."""
    daemon = Daemon(store.settings(), clock=lambda: moment, **kwargs)  # type: ignore[arg-type]
    daemon.night()
    return daemon


def covered(store: Store) -> list[str]:
    return sorted(day for (day,) in store.ledger_rows("SELECT day FROM coverage"))


def test_after_one_missed_night_the_next_fire_covers_both_days(night_store: Store) -> None:
    """Tuesday's 23:00 never happened; Wednesday's night sends Tuesday's and Wednesday's."""
    store = night_store
    sale_on(store, "C1", 16)
    sale_on(store, "C2", 17)
    sale_on(store, "C3", 18)
    night_at(store, local(2026, 11, 16, 23))
    assert store.recipients() == ["c1@example.com"]

    night_at(store, local(2026, 11, 18, 23))

    assert store.recipients() == ["c1@example.com", "c2@example.com", "c3@example.com"]
    assert covered(store)[-3:] == ["2026-11-16", "2026-11-17", "2026-11-18"]


def test_after_three_nights_off_the_start_catches_up_to_the_last_fire(night_store: Store) -> None:
    """Off from Tuesday to Friday morning: on start it sends Tuesday to Thursday, and leaves
    Friday's sale to Friday night."""
    store = night_store
    for customer_id, day in [("C1", 16), ("C2", 17), ("C3", 18), ("C4", 19), ("C5", 20)]:
        sale_on(store, customer_id, day, hour=9)
    night_at(store, local(2026, 11, 16, 23))

    night_at(store, local(2026, 11, 20, 10))  # started Friday 10:00

    assert store.recipients() == [f"c{n}@example.com" for n in range(1, 5)]
    assert "2026-11-19" in covered(store) and "2026-11-20" not in covered(store)
    night_at(store, local(2026, 11, 20, 23))
    assert len(store.recipients()) == 5


@pytest.fixture
def travel() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(local(2026, 11, 18, 23), tick=False) as traveller:
        yield traveller


def test_a_pos_down_at_23_and_back_at_1_sends_the_night_once(
    night_store: Store, travel: time_machine.Coordinates
) -> None:
    """The night is retried with growing pauses, each attempt logged; once the POS answers
    again at 01:00 every survey goes out, once."""
    store = night_store
    sale_on(store, "C1", 18)
    sale_on(store, "C2", 18, hour=11)
    settings = store.settings()
    pos_file = store.root / "pos.sqlite"
    shutil.move(pos_file, store.root / "pos.offline")
    back_at = local(2026, 11, 19, 1)

    def wait(seconds: float) -> bool:
        travel.shift(timedelta(seconds=seconds))
        if datetime.now(UTC) >= back_at and not pos_file.exists():
            shutil.move(store.root / "pos.offline", pos_file)
        return False

    with capture_logs() as logs:
        report = Daemon(settings, wait=wait).night()

    assert report is not None and report.status == "succeeded"
    assert store.recipients() == ["c1@example.com", "c2@example.com"]
    retries = [e for e in logs if e["event"] == "night.retry"]
    assert [e["attempt"] for e in retries] == list(range(1, len(retries) + 1))
    assert len(retries) >= 4  # 23:00, 23:02, 23:06, 23:14, 23:30, … until 01:00
    statuses = [s for (s,) in store.ledger_rows("SELECT status FROM runs ORDER BY started_at")]
    assert statuses[-1] == "succeeded" and set(statuses[:-1]) == {"failed"}


def test_a_pos_down_all_night_gives_up_at_5_and_the_next_night_covers_it(
    night_store: Store, travel: time_machine.Coordinates
) -> None:
    """No retry is started after 05:00; the run stays failed and the next night sends."""
    store = night_store
    sale_on(store, "C1", 18)
    settings = store.settings()
    shutil.move(store.root / "pos.sqlite", store.root / "pos.offline")
    waited: list[float] = []

    def wait(seconds: float) -> bool:
        waited.append(seconds)
        travel.shift(timedelta(seconds=seconds))
        return False

    with capture_logs() as logs:
        report = Daemon(settings, wait=wait).night()

    assert report is not None and report.status == "failed"
    assert datetime.now(UTC) <= local(2026, 11, 19, 5)
    assert max(waited) == 30 * 60  # pauses grow to retry_max_minutes and stop there
    assert [e["event"] for e in logs if e["event"] == "night.gave_up"] == ["night.gave_up"]
    shutil.move(store.root / "pos.offline", store.root / "pos.sqlite")
    travel.move_to(local(2026, 11, 19, 23))
    Daemon(settings).night()
    assert store.recipients() == ["c1@example.com"]


class StoppingProvider:
    """An email service during which the daemon is told to stop, half-way through a night."""

    name = "stopping"
    max_batch_size = 2
    honours_idempotency_key = False
    renders_templates = False

    def __init__(self, stop_on_call: int | None) -> None:
        self.stop_on_call = stop_on_call
        self.daemon: Daemon | None = None
        self.delivered: list[str] = []
        self.calls = 0

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        self.calls += 1
        if self.calls == self.stop_on_call and self.daemon is not None:
            self.daemon.stop("SIGTERM")  # arrives while this batch is in hand
        self.delivered.extend(e.message.recipient.addr_spec for e in batch)
        return [SendResult(e.request_id, "sent") for e in batch]

    def check(self) -> str:
        return "stopping"

    def close(self) -> None:
        return None


def test_a_stop_mid_batch_settles_the_batch_and_a_restart_asks_everyone_once(
    night_store: Store,
) -> None:
    """SIGTERM during the second batch: that batch is settled, the run is recorded as
    stopped, nothing is left in 'sending', and the restarted daemon asks the rest, once."""
    store = night_store
    for n in range(7):
        sale_on(store, f"C{n}", 18, hour=9 + n)
    settings = store.settings()
    provider = StoppingProvider(stop_on_call=2)
    daemon = Daemon(settings, clock=lambda: local(2026, 11, 18, 23), provider=provider)
    provider.daemon = daemon

    report = daemon.night()

    assert report is not None and report.status == "stopped"
    assert len(provider.delivered) == 4
    assert store.ledger_rows("SELECT COUNT(*) FROM requests WHERE status = 'sending'") == [(0,)]

    restarted = StoppingProvider(stop_on_call=None)
    night_at(store, local(2026, 11, 18, 23, 5), provider=restarted)
    everyone = sorted(provider.delivered + restarted.delivered)
    assert everyone == [f"c{n}@example.com" for n in range(7)]


def test_each_night_writes_a_heartbeat_with_the_next_fire(night_store: Store) -> None:
    """After a night the heartbeat names the last run and tomorrow's 23:00; status reads it
    and says the daemon is not overdue."""
    store = night_store
    store.extra["schedule"] = {"heartbeat_file": f'"{(store.root / "beat.json").as_posix()}"'}
    sale_on(store, "C1", 18)
    with time_machine.travel(local(2026, 11, 18, 23, 1), tick=False):
        night_at(store, local(2026, 11, 18, 23, 1))
        beat = heartbeat.read(store.root / "beat.json")
        assert beat is not None and beat.last_run is not None
        assert beat.last_run["status"] == "succeeded"
        assert beat.next_fire == local(2026, 11, 19, 23).isoformat()
        result = store.cli("status")
    assert result.exit_code == 0, result.output
    assert "next nightly run: 2026-11-19 23:00" in result.output
    assert "daemon: idle" in result.output


def test_status_exits_1_when_the_daemon_missed_its_fire(night_store: Store) -> None:
    """A heartbeat whose next fire is long past means the daemon died: status says so, and
    its exit code tells the monitoring tool."""
    store = night_store
    store.extra["schedule"] = {"heartbeat_file": f'"{(store.root / "beat.json").as_posix()}"'}
    with time_machine.travel(local(2026, 11, 18, 23, 1), tick=False):
        night_at(store, local(2026, 11, 18, 23, 1))
    with time_machine.travel(local(2026, 11, 20, 12), tick=False):
        result = store.cli("status", "--json")
    assert result.exit_code == 1
    assert '"overdue": true' in result.output


def test_the_real_scheduler_fires_the_night_at_23_store_time(night_store: Store) -> None:
    """Started at 22:59:59 with nothing to catch up, the scheduler's own clock brings the
    night at 23:00 and not before."""
    store = night_store
    fired: list[datetime] = []
    caught_up, done = threading.Event(), threading.Event()

    class Recording(Daemon):
        def night(self) -> None:  # type: ignore[override]
            fired.append(datetime.now(self.tz))
            (caught_up if len(fired) == 1 else done).set()

    at_23 = local(2026, 11, 18, 23)
    # The clock stands still until the catch-up is done, however long starting takes on a
    # busy machine, then reaches 23:00: only the scheduler decides when the night fires.
    with time_machine.travel(at_23 - timedelta(seconds=1), tick=False) as clock:
        daemon = Recording(store.settings())
        runner = threading.Thread(target=daemon.serve)
        runner.start()
        try:
            assert caught_up.wait(timeout=60)
            clock.move_to(at_23)
            assert done.wait(timeout=60)
        finally:
            daemon.stop("test")
            runner.join(timeout=30)
    assert not runner.is_alive()
    catch_up, nightly = fired
    assert catch_up < at_23 and nightly == at_23


class TakenLock:
    """An instance lock another surveysync took while this one's session was gone."""

    def ensure_held(self) -> bool:
        raise LockHeld("test", None)


def test_a_daemon_whose_lock_was_taken_sends_nothing_and_stops(night_store: Store) -> None:
    """Before a night, a daemon that finds its lock held by another process logs it, sends
    nothing, and stops instead of running beside the other one."""
    store = night_store
    sale_on(store, "C1", 18)
    daemon = Daemon(store.settings(), clock=lambda: local(2026, 11, 18, 23))
    daemon.lock = TakenLock()  # type: ignore[assignment]
    with capture_logs() as logs:
        assert daemon.night() is None
    assert daemon.stopping.is_set() and store.messages() == []
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["daemon.lock_lost"]
