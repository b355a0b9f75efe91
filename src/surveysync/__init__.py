"""surveysync: turn finalized point-of-sale sales into NPS survey requests, under the rules.

The public API (the names in ``__all__``, documented in the README's "Using it as a library"
section; a test keeps the two in step). Each name is imported from its stage only when it is
first used, so ``import surveysync`` (and the CLI's start-up) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    # configuration
    "ConfigError": "surveysync.config",
    "Settings": "surveysync.config",
    "load_settings": "surveysync.config",
    # records every stage shares
    "RequestStatus": "surveysync.model",
    "ResponseStatus": "surveysync.model",
    "Sale": "surveysync.model",
    "SaleKind": "surveysync.model",
    # the rules
    "Decision": "surveysync.rules",
    "PersonHistory": "surveysync.rules",
    "SkipReason": "surveysync.rules",
    "decide": "surveysync.rules",
    # running
    "RunReport": "surveysync.sync",
    "SyncError": "surveysync.sync",
    "SyncRequest": "surveysync.sync",
    "run_exclusive": "surveysync.sync",
    "run_sync": "surveysync.sync",
    # the ledger
    "Ledger": "surveysync.ledger",
    "LedgerError": "surveysync.ledger",
    "open_ledger": "surveysync.ledger",
    # readiness and links
    "Check": "surveysync.checks",
    "run_checks": "surveysync.checks",
    "unsubscribe_by_link": "surveysync.links",
    "verify_link": "surveysync.links",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'surveysync' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
