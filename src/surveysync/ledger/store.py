"""The ledger: surveysync's own database and the only place its state lives.

``Ledger`` opens the database (migrating it on the way) and hands out one small keeper per
kind of record; each keeper owns its tables and writes them in short transactions that
move state one step on proof:

    ledger.runs          runs, their windows, covered days, the sync bookmark
    ledger.decisions     one decision per sale
    ledger.claims        cooldowns and pending requests, claimed atomically
    ledger.requests      sending and settling requests
    ledger.suppressions  people and transactions never to ask
    ledger.install       the person-key secret and named cursors
    ledger.alerts        the store manager's detractor alerts and digests
    ledger.answers       visits to the survey page's links and the answers they amount to
    ledger.reminders     review reminders and reminders to people who did not answer
    ledger.keys          how people are named without keeping their addresses

Error tree::

    LedgerError            the ledger database cannot be used (unreachable, too new, corrupt)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from surveysync.config import Settings
from surveysync.ledger.alerts import Alerts
from surveysync.ledger.answers import Answers
from surveysync.ledger.claims import Claims
from surveysync.ledger.db import LedgerDb
from surveysync.ledger.decisions import Decisions
from surveysync.ledger.install import InstallValues
from surveysync.ledger.keys import PersonKeys
from surveysync.ledger.reminders import Reminders
from surveysync.ledger.requests import Requests
from surveysync.ledger.runs import Runs
from surveysync.ledger.suppressions import Suppressions


class Ledger:
    def __init__(self, db: LedgerDb, store: str, hash_secret: str | None = None) -> None:
        self.db = db
        self.store = store
        db.migrate()
        self.install = InstallValues(db)
        self.keys = PersonKeys(self.install.person_secret(hash_secret), store)
        self.runs = Runs(db, store)
        self.decisions = Decisions(db, store)
        self.claims = Claims(db, store, self.decisions)
        self.requests = Requests(db, store)
        self.suppressions = Suppressions(db)
        self.alerts = Alerts(db, store)
        self.answers = Answers(db, store)
        self.reminders = Reminders(db, store, self.keys)

    @classmethod
    def open(
        cls,
        url: str,
        store: str,
        hash_secret: str | None = None,
        *,
        dry_run: bool = False,
        existing: bool = False,
    ) -> Ledger:
        """Open (and migrate) the ledger at ``url`` for ``store``; ``dry_run`` pins it so
        that closing it rolls back everything written; ``existing``: a ledger that is not
        there yet is an error (LedgerError naming where), never made."""
        return cls(LedgerDb.open(url, pinned=dry_run, existing=existing), store, hash_secret)

    @property
    def engine(self) -> Engine:
        return self.db.engine

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.db.transaction() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.db.reading() as conn:
            yield conn


def open_ledger(settings: Settings, *, dry_run: bool = False, existing: bool = False) -> Ledger:
    """The ledger this configuration names, for its store: the one way every command, the
    daemon, the survey page and the demo open it. ``existing`` for commands that only read:
    they never make a ledger (a missing one is a LedgerError naming where it was looked for)."""
    secret = settings.ledger.hash_secret
    return Ledger.open(
        settings.ledger.url.get_secret_value(),
        settings.store.id,
        secret.get_secret_value() if secret else None,
        dry_run=dry_run,
        existing=existing,
    )
