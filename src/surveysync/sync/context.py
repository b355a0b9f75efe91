"""The one small object every stage of a run shares: what it was asked, where it reads and
writes, its clock, and the report it fills in. Stages take it; none reaches into another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from surveysync.config import Settings
from surveysync.ledger import Ledger
from surveysync.pos import SalesSource
from surveysync.providers import Provider
from surveysync.render import Renderer
from surveysync.sync.request import ProgressHook, RunReport, Stopped, SyncRequest


@dataclass
class RunContext:
    settings: Settings
    request: SyncRequest
    ledger: Ledger
    pos: SalesSource
    provider: Provider
    renderer: Renderer
    progress: ProgressHook
    report: RunReport
    # The run's clock: the moment it stands for, in store time. Set once; never read again.
    now: datetime
    tz: ZoneInfo
    # Real times for the record (a run's start and end, each send); never for a decision.
    clock: Callable[[], datetime]

    def check_stop(self) -> None:
        """Raise ``Stopped`` if the daemon asked this run to stop (only between batches)."""
        if self.request.stop is not None and self.request.stop.is_set():
            raise Stopped
