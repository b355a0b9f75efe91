"""psycopg loaders that hand over a time they cannot convert, as its text, instead of failing
the whole read: PostgreSQL keeps ``infinity`` and years past 9999, which Python's datetime
cannot hold. The mapping then refuses that one row's column (``unreadable_row``).

Imported only when the POS is read through psycopg; registers on one connection, never
globally, and never changes a value psycopg can convert.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader


def _lenient(loader: type[Any]) -> type[Any]:
    class Lenient(loader):  # type: ignore[misc]
        def load(self, data: Any) -> Any:
            try:
                return super().load(data)
            except psycopg.DataError:
                return bytes(data).decode("utf-8", "replace")

    Lenient.__name__ = f"Lenient{loader.__name__}"
    return Lenient


_LOADERS = {
    "timestamp": _lenient(TimestampLoader),
    "timestamptz": _lenient(TimestamptzLoader),
    "date": _lenient(DateLoader),
}


def register(connection: psycopg.Connection[Any]) -> None:
    """Use the lenient time loaders on this connection (text results)."""
    for name, loader in _LOADERS.items():
        connection.adapters.register_loader(name, loader)
