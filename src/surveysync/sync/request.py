"""What a run is asked to do (``SyncRequest``) and what it answers (``RunReport``,
``SyncError``). Plain values: every caller (scheduler, CLI, demo, tests) builds and reads them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from surveysync.rules import SkipReason

# (event, amount): "days" (how many), then "day" (one done), "sales" (read), "sent", "skipped"
ProgressHook = Callable[[str, int], None]


class SyncError(Exception):
    """The run could not finish; the message says why and what is already safe."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable  # the POS or provider was unreachable: worth another try
        self.report: RunReport | None = None


class Stopped(Exception):
    """The run was asked to stop; raised between batches, never inside one."""


@dataclass
class RunReport:
    run_id: str
    kind: str
    dry_run: bool
    window_start: datetime
    window_end: datetime
    days: list[date] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    status: str = "running"
    error: str | None = None

    @property
    def skipped(self) -> dict[str, int]:
        return {r.value: self.counts[r.value] for r in SkipReason if self.counts[r.value]}


@dataclass(frozen=True)
class SyncRequest:
    """What to run: a scheduled/manual ``sync`` up to ``now``, or a ``backfill`` range."""

    now: datetime
    kind: str = "sync"
    since: date | None = None
    until: date | None = None
    dry_run: bool = False
    # Where a scheduled run's window ends: the fire time it stands for (default: now).
    cutoff: datetime | None = None
    # Set from another thread to stop the run at the next batch boundary.
    stop: threading.Event | None = None
    # What the ledger records as the real time of a run's start and end and of each send
    # (default: ``now`` moved on by the time that really passed). Tests inject their own.
    clock: Callable[[], datetime] | None = None

    def wall_clock(self) -> Callable[[], datetime]:
        if self.clock is not None:
            return self.clock
        anchor, started = self.now, time.monotonic()
        return lambda: anchor + timedelta(seconds=time.monotonic() - started)
