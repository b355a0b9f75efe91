"""Small named values the program keeps in the ledger: the person-key secret made on first
open, and cursors such as a provider's suppression-list position."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from surveysync.ledger.db import LedgerDb, upsert
from surveysync.ledger.schema import install

_SECRET_NAME = "person_key_secret"


class InstallValues:
    def __init__(self, db: LedgerDb) -> None:
        self._db = db

    def get(self, name: str) -> str | None:
        with self._db.reading() as conn:
            value = conn.scalar(select(install.c.value).where(install.c.name == name))
        return None if value is None else str(value)

    def set(self, name: str, value: str) -> None:
        with self._db.transaction() as conn:
            conn.execute(upsert(conn, install, ["name"], {"name": name, "value": value}))

    def person_secret(self, configured: str | None) -> bytes:
        """``ledger.hash_secret`` when set; else one random key made once and kept here, so
        that every store sharing the ledger names people alike."""
        if configured:
            return configured.encode("utf-8")
        with self._db.transaction() as conn:
            row = {"name": _SECRET_NAME, "value": secrets.token_hex(32)}
            conn.execute(upsert(conn, install, ["name"], row, update=False))
            stored = conn.scalar(select(install.c.value).where(install.c.name == _SECRET_NAME))
        return str(stored).encode("utf-8")
