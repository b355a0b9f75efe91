"""The nightly daemon behind ``surveysync run``.

An APScheduler 3.x ``BackgroundScheduler`` holds one job, ``night``: it fires once on start
(catch-up after the server was off) and then every night at ``schedule.at`` store time, with
a real misfire grace time, coalescing (three missed fires run once) and one instance at a
time. Each night runs ``run_sync`` with the fire time as cutoff; its window starts where the
last successful run ended, so missed nights widen the window and nothing is skipped.

When the POS or the provider cannot be reached, the night is retried with a growing pause
until ``schedule.retry_until`` (05:00 by default), each attempt logged; then it stays failed
and the next night covers the gap.

A stop (SIGTERM, SIGINT, SIGBREAK: ``Daemon.stop``) lets the batch in hand finish and be
settled, records the run as ``stopped``, and ends ``serve`` within ``STOP_TIMEOUT``.

This module never decides anything about sales and never sends: ``run_sync`` does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from surveysync import heartbeat
from surveysync.config import Settings
from surveysync.ledger import LedgerError
from surveysync.ledger.lock import InstanceLock
from surveysync.nightly import Nightly
from surveysync.providers import Provider
from surveysync.sync import RunReport, SyncError, SyncRequest, run_sync

log = structlog.get_logger("surveysync.scheduler")

JOB_ID = "night"
STOP_TIMEOUT = 25.0  # seconds for the batch in hand; systemd and WinSW allow 45
_POLL = 1.0  # how often the main thread looks up from waiting (signals on Windows)

Wait = Callable[[float], bool]  # sleep up to n seconds; True when the daemon is stopping
Clock = Callable[[], datetime]


class NightlyTrigger(Nightly, BaseTrigger):  # type: ignore[misc]
    """``Nightly`` as APScheduler's trigger (its rules are in ``surveysync.nightly``)."""


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        provider: Provider | None = None,
        clock: Clock | None = None,
        wait: Wait | None = None,
    ) -> None:
        self.settings = settings
        self.tz = settings.store.tz
        self.trigger = NightlyTrigger(settings.schedule.at, self.tz)
        self.stopping = threading.Event()
        self._provider = provider  # tests hand one in; else run_sync makes the configured one
        self._clock = clock or (lambda: datetime.now(self.tz))
        self._wait: Wait = wait or self.stopping.wait
        self._idle = threading.Event()
        self._idle.set()
        self._beat = heartbeat.Heartbeat(settings.store.id, "starting")
        self.lock: InstanceLock | None = None  # held while serving

    # --- lifetime --------------------------------------------------------------------------

    def serve(self) -> None:
        """Run until ``stop``: a night now (catch-up), then one every night. Holds the
        ledger's instance lock throughout; raises LockHeld if another process has it."""
        ledger_url = self.settings.ledger.url.get_secret_value()
        with InstanceLock(ledger_url, self.settings.store.id, "run") as self.lock:
            scheduler = self._scheduler()
            self._beat.started_at = self._clock().isoformat()
            scheduler.start()
            log.info("daemon.started", schedule=str(self.trigger), next_fire=self._next_fire())
            self._write_beat("idle")
            try:
                while not self.stopping.wait(_POLL):
                    pass
            finally:
                scheduler.shutdown(wait=False)
                self._finish_stop()

    def stop(self, reason: str) -> None:
        if not self.stopping.is_set():
            log.info("daemon.stopping", reason=reason)
            self.stopping.set()

    def _finish_stop(self) -> None:
        finished = self._idle.wait(STOP_TIMEOUT)
        if not finished:
            log.error("daemon.stop_timeout", waited_s=STOP_TIMEOUT)
        self._write_beat("stopped")
        log.info("daemon.stopped", clean=finished)

    def _scheduler(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(timezone=self.tz)
        scheduler.add_job(
            self.night,
            trigger=self.trigger,
            id=JOB_ID,
            name="nightly sync",
            misfire_grace_time=self.settings.schedule.misfire_grace_minutes * 60,
            coalesce=True,
            max_instances=1,
            next_run_time=self._clock(),  # catch up at once
        )
        scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
        return scheduler

    def _missed(self, event: JobExecutionEvent) -> None:
        # Later than the grace time: the next night's catch-up covers the gap.
        log.warning("night.missed", scheduled=event.scheduled_run_time.isoformat())

    # --- one night -------------------------------------------------------------------------

    def night(self) -> RunReport | None:
        """Sync up to the latest fire time, retrying an unreachable POS or provider until
        retry_until. Returns the last run's report (None if no run could start)."""
        self._idle.clear()
        try:
            if not self._still_the_only_instance():
                return None
            cutoff = self.trigger.last_fire(self._clock())
            self._write_beat("running")
            report = self._night_until(cutoff, self._retry_deadline(cutoff))
            self._remember(report)
            return report
        except Exception:
            # Logged here, masked like every event, rather than by APScheduler's own logger;
            # the daemon lives on and the next night tries again.
            log.exception("night.crashed")
            return None
        finally:
            self._write_beat("idle")
            self._idle.set()

    def _still_the_only_instance(self) -> bool:
        """The lock may have gone with its PostgreSQL session (a server restart); take it
        again, or stop if another surveysync took it meanwhile."""
        if self.lock is None:
            return True
        try:
            if self.lock.ensure_held():
                log.warning("daemon.lock_regained")
        except LedgerError as exc:  # LockHeld names the other process
            log.error("daemon.lock_lost", error=str(exc))
            self.stop("the instance lock was taken by another process")
            return False
        return True

    def _night_until(self, cutoff: datetime, deadline: datetime) -> RunReport | None:
        schedule = self.settings.schedule
        pause = schedule.retry_first_minutes * 60
        attempt = 1
        while True:
            log.info("night.started", cutoff=cutoff.isoformat(), attempt=attempt)
            report, retryable = self._run_once(cutoff)
            if not retryable or self.stopping.is_set():
                return report
            retry_at = self._clock() + timedelta(seconds=pause)
            if retry_at > deadline:
                log.error("night.gave_up", attempts=attempt, until=deadline.isoformat())
                return report
            log.warning("night.retry", attempt=attempt, retry_at=retry_at.isoformat())
            if self._wait(pause):
                return report
            attempt += 1
            pause = min(pause * 2, schedule.retry_max_minutes * 60)

    def _run_once(self, cutoff: datetime) -> tuple[RunReport | None, bool]:
        request = SyncRequest(
            now=self._clock(),
            kind="scheduled",
            cutoff=cutoff,
            stop=self.stopping,
            clock=self._clock,
        )
        try:
            held = self.lock is not None
            return run_sync(self.settings, request, provider=self._provider, lock_held=held), False
        except SyncError as exc:
            return exc.report, exc.retryable

    def _retry_deadline(self, cutoff: datetime) -> datetime:
        """The first retry_until after the cutoff: 05:00 the next morning by default."""
        local = cutoff.astimezone(self.tz)
        until = NightlyTrigger(self.settings.schedule.retry_until, self.tz)
        deadline = until.fire_on(local.date())
        return deadline if deadline > local else until.fire_on(local.date() + timedelta(days=1))

    # --- heartbeat -------------------------------------------------------------------------

    def _next_fire(self) -> str:
        fire = self.trigger.get_next_fire_time(None, self._clock())
        return fire.isoformat() if fire else ""

    def _remember(self, report: RunReport | None) -> None:
        if report is not None:
            self._beat.last_run = {
                "id": report.run_id,
                "status": report.status,
                "finished_at": self._clock().isoformat(),
                "error": report.error,
            }

    def _write_beat(self, state: str) -> None:
        self._beat.state = state
        self._beat.updated_at = self._clock().isoformat()
        self._beat.next_fire = self._next_fire()
        heartbeat.write(self.settings.schedule.heartbeat_file, self._beat)


def stop_on_signals(daemon: Daemon) -> None:
    """SIGTERM, SIGINT and (on Windows) SIGBREAK stop the daemon cleanly."""

    def handle(number: int, _frame: Any) -> None:
        daemon.stop(signal.Signals(number).name)

    # SIGBREAK is Ctrl-Break: how WinSW and NSSM stop a console program on Windows.
    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handle)
