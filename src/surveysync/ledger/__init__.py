"""The ledger: surveysync's own database (SQLite file by default, PostgreSQL for chains).

``store.Ledger`` writes and reads run state; ``reports`` answers ``status`` and ``explain``;
``schema`` holds the tables, ``migrations`` the Alembic history applied on every start.
"""

from surveysync.ledger.keys import PersonKeys, mask_email
from surveysync.ledger.lock import Holder, InstanceLock, LockHeld
from surveysync.ledger.store import (
    FAILED,
    IN_DOUBT,
    PENDING,
    REJECTED,
    SENDING,
    SENT,
    Candidate,
    Claimable,
    CooldownRow,
    Ledger,
    LedgerError,
    Settlement,
    SkipRow,
    create_ledger_engine,
    new_id,
)
from surveysync.model import UNSETTLED

__all__ = [
    "FAILED",
    "IN_DOUBT",
    "PENDING",
    "REJECTED",
    "SENDING",
    "SENT",
    "UNSETTLED",
    "Candidate",
    "Claimable",
    "CooldownRow",
    "Holder",
    "InstanceLock",
    "Ledger",
    "LedgerError",
    "LockHeld",
    "PersonKeys",
    "Settlement",
    "SkipRow",
    "create_ledger_engine",
    "mask_email",
    "new_id",
]
