"""Bringing a ledger database to the newest schema, by the program itself, on start."""

from __future__ import annotations

import threading

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

# Alembic's ``op`` and ``context`` are process-wide proxies, set up and torn down around each
# run of env.py: two threads upgrading at once (two ledgers opened together) would tear down
# each other's. One upgrade at a time per process.
_UPGRADING = threading.Lock()


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "surveysync.ledger:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the package ships at least one migration"
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> None:
    """Apply every migration not yet applied, inside the caller's transaction."""
    with _UPGRADING:
        command.upgrade(_alembic_config(connection), "head")
