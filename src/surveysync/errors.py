"""What every stage's error translation shares: the one line of a foreign error worth showing.

Each stage turns foreign errors (SQLAlchemy, drivers, httpx) into its own error tree at its
boundary; they all quote the driver's first line the same way, through ``first_line``.
Imports nothing of surveysync.
"""

from __future__ import annotations

_LIMIT = 300


def first_line(exc: BaseException) -> str:
    """The first line of the driver's own message (SQLAlchemy wraps it as ``orig``), bounded;
    the exception's class name when it says nothing."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip()
    return text.splitlines()[0][:_LIMIT] if text else type(original).__name__
