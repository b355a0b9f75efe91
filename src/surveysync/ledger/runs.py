"""Runs and coverage: which run read which window, how it ended, and which business days
are decided and settled. The bookmark the next sync starts from is derived here.

A day is marked covered only by a run that decided every sale in it and settled every
request; coverage never moves backwards. A run's status is ``running`` until it ends as
``succeeded``, ``stopped`` or ``failed``; one whose process died is found ``running`` by the
next process that holds the store's lock, and recorded as ``crashed``.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import date, datetime

from sqlalchemy import func, insert, select, update

from surveysync.ledger.db import LedgerDb, dialect_insert, later, new_id
from surveysync.ledger.schema import coverage, runs

CRASHED = "the process ended before the run did (killed, or the machine went down)"


class Runs:
    def __init__(self, db: LedgerDb, store: str) -> None:
        self._db = db
        self._store = store

    def start(self, kind: str, now: datetime, *, dry_run: bool) -> str:
        run_id = new_id()
        with self._db.transaction() as conn:
            conn.execute(
                insert(runs).values(
                    id=run_id,
                    store=self._store,
                    kind=kind,
                    status="running",
                    dry_run=dry_run,
                    started_at=now,
                    pid=os.getpid(),
                    host=socket.gethostname()[:255],
                )
            )
        return run_id

    def set_window(self, run_id: str, start: datetime, end: datetime) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                update(runs).where(runs.c.id == run_id).values(window_start=start, window_end=end)
            )

    def finish(
        self,
        run_id: str,
        now: datetime,
        status: str,
        counts: dict[str, int],
        error: str | None = None,
    ) -> None:
        values = {
            "status": status,
            "finished_at": now,
            "counts": json.dumps(counts, sort_keys=True),
            "error": error,
        }
        with self._db.transaction() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))

    def covered_end(self) -> datetime | None:
        """The latest moment any run (backfill included) has decided and settled up to."""
        with self._db.reading() as conn:
            end: datetime | None = conn.scalar(
                select(func.max(coverage.c.covered_until)).where(coverage.c.store == self._store)
            )
        return end

    def first_started(self) -> datetime | None:
        """When this store's first real run started (None: it never ran)."""
        query = select(func.min(runs.c.started_at)).where(
            runs.c.store == self._store, runs.c.dry_run.is_(False)
        )
        with self._db.reading() as conn:
            first: datetime | None = conn.scalar(query)
        return first

    def sync_bookmark(self) -> datetime | None:
        """Where the next sync picks up: the cutoff of the latest successful sync run.

        A successful sync started at (or, with its look-back, before) the bookmark it found,
        so everything up to its cutoff is covered. A failed run moves nothing, even for the
        days it finished (the next run reads them again; their decisions stand), and a
        backfill moves nothing, so that one reaching the present after a gap cannot make the
        next sync jump over that gap.
        """
        query = select(func.max(runs.c.window_end)).where(
            runs.c.store == self._store,
            runs.c.kind != "backfill",
            runs.c.status == "succeeded",
            runs.c.dry_run.is_(False),
        )
        with self._db.reading() as conn:
            end: datetime | None = conn.scalar(query)
        return end

    def mark_covered(self, day: date, until: datetime, run_id: str) -> None:
        """Record that ``day`` is decided and settled up to ``until``; never moves backwards."""
        row = {"store": self._store, "day": day, "covered_until": until, "run_id": run_id}
        with self._db.transaction() as conn:
            statement = dialect_insert(conn)(coverage).values(**row)
            new = statement.excluded
            statement = statement.on_conflict_do_update(
                index_elements=["store", "day"],
                set_={
                    "covered_until": later(new.covered_until, coverage.c.covered_until),
                    "run_id": new.run_id,
                },
            )
            conn.execute(statement)

    def mark_crashed(self, now: datetime) -> list[str]:
        """Record as ``crashed`` every run of this store still marked ``running``. Call it only
        while holding the store's instance lock: then no live process owns such a run (a
        process killed with kill -9 never got to say how its run ended)."""
        stale = (
            (runs.c.store == self._store) & (runs.c.status == "running") & runs.c.dry_run.is_(False)
        )
        with self._db.transaction() as conn:
            found = list(conn.scalars(select(runs.c.id).where(stale)))
            if found:
                conn.execute(
                    update(runs)
                    .where(stale)
                    .values(status="crashed", error=CRASHED, finished_at=None)
                )
        return found
