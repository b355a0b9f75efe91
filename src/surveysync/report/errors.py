"""Why a report could not be made. The tree (``surveysync.report`` raises only these, plus the
ledger's own ``LedgerError`` when its database fails mid-read)::

    ReportError             the report cannot be made (exit 1)
    ├── LedgerNotReady      no ledger yet, or one this version cannot read without migrating
    └── ReportUsageError    the options make no sense (exit 2): bad --by, --until before --since
"""

from __future__ import annotations


class ReportError(Exception):
    """The report cannot be made; the message says why in the operator's words."""


class LedgerNotReady(ReportError):
    """There is no ledger to read, or it is not at this version's schema."""


class ReportUsageError(ReportError):
    """The options asked for something that cannot be reported."""
