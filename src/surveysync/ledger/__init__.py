"""The ledger: surveysync's own database (SQLite file by default, PostgreSQL for chains).

``store.Ledger`` opens it and hands out one keeper per kind of record (``runs``,
``decisions``, ``claims``, ``requests``, ``suppressions``, ``install``); ``db`` holds the
transaction and migration plumbing; ``reports`` answers ``status`` and ``explain``;
``schema`` holds the tables, ``migrations`` the Alembic history applied on every open.
"""

from surveysync.ledger.claims import Candidate, CooldownRow, RequestFacts
from surveysync.ledger.db import LedgerError, create_ledger_engine, new_id
from surveysync.ledger.decisions import DecisionRow
from surveysync.ledger.keys import PersonKeys, mask_email
from surveysync.ledger.lock import Holder, InstanceLock, LockHeld
from surveysync.ledger.requests import Claimable, Settlement
from surveysync.ledger.store import Ledger, open_ledger
from surveysync.ledger.suppressions import SuppressionTarget, suppression_target
from surveysync.model import UNSETTLED, RequestStatus

__all__ = [
    "UNSETTLED",
    "Candidate",
    "Claimable",
    "CooldownRow",
    "DecisionRow",
    "Holder",
    "InstanceLock",
    "Ledger",
    "LedgerError",
    "LockHeld",
    "PersonKeys",
    "RequestFacts",
    "RequestStatus",
    "Settlement",
    "SuppressionTarget",
    "create_ledger_engine",
    "mask_email",
    "new_id",
    "open_ledger",
    "suppression_target",
]
