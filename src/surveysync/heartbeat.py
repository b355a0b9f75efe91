"""The daemon's heartbeat: a small JSON file a monitoring tool (or ``status``) can read.

Written atomically (temporary file, then rename) when the daemon starts, when a night
begins and ends, and when it stops. ``overdue`` says whether a daemon that should be
running has missed its fire: the one thing a monitor needs to alert on.

Never holds an email address or a secret; never fails the daemon (a heartbeat that cannot
be written is logged and skipped).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("surveysync.heartbeat")

# How late a fire may be before a monitor should hear about it: a long night's run, or a
# retry until 05:00, keeps the heartbeat's next fire in the past for a while.
OVERDUE_AFTER = timedelta(hours=8)


@dataclass
class Heartbeat:
    store: str
    state: str  # starting | idle | running | stopped
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started_at: str | None = None
    updated_at: str | None = None
    next_fire: str | None = None
    last_run: dict[str, Any] | None = None  # id, status, finished_at, error

    def overdue(self, now: datetime) -> bool:
        """True when the daemon should have fired by now and has not said so."""
        if self.next_fire is None:
            return False
        return now > datetime.fromisoformat(self.next_fire) + OVERDUE_AFTER


def write(path: Path, beat: Heartbeat) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".heartbeat", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(beat), handle, indent=2)
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("heartbeat.not_written", path=str(path), error=exc.strerror or str(exc))


def read(path: Path) -> Heartbeat | None:
    """The last heartbeat, or None when no daemon has run here (or the file is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Heartbeat(**data)
    except (OSError, ValueError, TypeError):
        return None
