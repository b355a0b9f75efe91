"""The POS source: read-only access to the store's point-of-sale database.

Error tree (every foreign database error leaves this package as one of these)::

    PosError
    ├── PosUnavailable        cannot connect or the query failed at the server (retryable)
    ├── PosMappingError       the mapped query lacks columns or does not parse (fix the config)
    └── ReadOnlyViolation     something tried to run a statement other than SELECT (a bug)

It must never write to the POS database, hold a transaction open between chunks, or load a
whole result into memory.
"""

from surveysync.pos.engine import ReadOnlyViolation, assert_read_only, create_pos_engine
from surveysync.pos.errors import PosError, PosMappingError, PosUnavailable
from surveysync.pos.mapping import ASCEND_QUERY, REQUIRED_COLUMNS, RowProblem
from surveysync.pos.source import PosSource

__all__ = [
    "ASCEND_QUERY",
    "REQUIRED_COLUMNS",
    "PosError",
    "PosMappingError",
    "PosSource",
    "PosUnavailable",
    "ReadOnlyViolation",
    "RowProblem",
    "assert_read_only",
    "create_pos_engine",
]
