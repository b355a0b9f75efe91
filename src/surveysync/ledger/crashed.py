"""Runs left ``running`` by a process that died (kill -9, a power cut): recorded as crashed
by whoever can prove that no surveysync of the store is alive, i.e. whoever gets its lock."""

from __future__ import annotations

from datetime import datetime

from surveysync.config import Settings
from surveysync.ledger.lock import InstanceLock, LockHeld
from surveysync.ledger.store import Ledger


def record_crashed_runs(settings: Settings, ledger: Ledger, now: datetime) -> list[str]:
    """For ``status``: when no surveysync holds this store's lock, its runs still marked
    running belong to dead processes; record them as crashed. Returns their ids."""
    url = settings.ledger.url.get_secret_value()
    try:
        with InstanceLock(url, settings.store.id, "status"):
            return ledger.runs.mark_crashed(now)
    except LockHeld:  # a live surveysync owns the running run
        return []
