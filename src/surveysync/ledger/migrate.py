"""Bringing a ledger database to the newest schema, by the program itself, on start.

Every open checks; a ledger already at the newest revision (nearly always) is recognised by
one plain read of ``alembic_version``, without importing Alembic (a third of a read-only
command's start) or taking a write lock. Revisions are numbered like their files
(``0007_reminders.py`` is revision ``0007``, after ``0006``), so the newest is the highest
file number; a test holds that to Alembic's own answer.
"""

from __future__ import annotations

import threading
from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import Connection, column, inspect, select, table

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic's ``op`` and ``context`` are process-wide proxies, set up and torn down around each
# run of env.py: two threads upgrading at once (two ledgers opened together) would tear down
# each other's. One upgrade at a time per process.
_UPGRADING = threading.Lock()
_VERSION = table("alembic_version", column("version_num"))


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "surveysync.ledger:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision the package ships: the highest numbered migration file."""
    versions = files("surveysync.ledger.migrations").joinpath("versions")
    numbers = [
        entry.name.split("_", 1)[0]
        for entry in versions.iterdir()
        if entry.name.endswith(".py") and entry.name[:4].isdigit()
    ]
    return max(numbers)


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; None for a database without a ledger yet."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.scalar(select(_VERSION.c.version_num))


def is_current(connection: Connection) -> bool:
    return current_revision(connection) == head_revision()


def upgrade(connection: Connection) -> None:
    """Apply every migration not yet applied, inside the caller's transaction."""
    from alembic import command

    with _UPGRADING:
        command.upgrade(_alembic_config(connection), "head")


def alembic_head() -> str | None:
    """Alembic's own idea of the newest revision (for the test that keeps the two equal)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()
