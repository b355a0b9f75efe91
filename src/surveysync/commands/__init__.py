"""What every ``surveysync`` command shares: its exit codes and their exceptions, loading the
configuration (and the logs) once, the ledger as a context, and small argument checks.

Imports only what every command needs; each command imports its own stages when it runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from surveysync.config import Settings
    from surveysync.ledger import Ledger, SuppressionTarget

EXIT_FAILED = 1
EXIT_USAGE = 2
DATE = click.DateTime(["%Y-%m-%d"])


class ConfigProblem(click.ClickException):
    exit_code = EXIT_USAGE


class RunFailed(click.ClickException):
    exit_code = EXIT_FAILED


def settings_of(ctx: click.Context) -> Settings:
    """The configuration every command but ``init``, ``demo`` and ``--help`` needs: without a
    config file, nothing runs against defaults (exit 2, saying where it looked)."""
    from surveysync.config import ConfigError, load_settings

    try:
        settings = load_settings(ctx.obj["config_path"], require_file=True)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    configure_logs(settings)
    return settings


def configure_logs(settings: Settings) -> None:
    """Console always; JSON-lines files too when logging.dir is set. Once per process."""
    from surveysync import logging as log_setup

    try:
        log_setup.configure(
            settings.logging.level.value,
            log_setup.secret_values(settings),
            log_dir=settings.logging.dir,
            keep_days=settings.logging.keep_days,
            store=settings.store.id,
            tz=settings.store.tz,
        )
    except log_setup.LogSetupError as exc:
        raise ConfigProblem(str(exc)) from None


def now_of(settings: Settings) -> datetime:
    return datetime.now(settings.store.tz)


@contextmanager
def ledger_of(settings: Settings, *, existing: bool = False) -> Iterator[Ledger]:
    """The configured ledger for one command; ``existing`` for a command that only reads:
    a ledger that is not there is an error naming where, never a new empty one."""
    from surveysync.ledger import LedgerError, open_ledger

    try:
        ledger = open_ledger(settings, existing=existing)
    except LedgerError as exc:
        raise RunFailed(str(exc)) from None
    try:
        yield ledger
    except LedgerError as exc:
        raise RunFailed(str(exc)) from None
    finally:
        ledger.close()


def one_of(*values: object, names: str = "--email, --customer or --transaction") -> None:
    if sum(v is not None for v in values) != 1:
        raise click.UsageError(f"give exactly one of {names}")


def print_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def target_of(
    ledger: Ledger, email: str | None, customer_id: str | None, transaction_id: str | None
) -> SuppressionTarget:
    from surveysync.ledger import suppression_target
    from surveysync.rules import InvalidEmail

    one_of(email, customer_id, transaction_id)
    try:
        return suppression_target(ledger.keys, email, customer_id, transaction_id)
    except InvalidEmail as exc:
        raise click.BadParameter(str(exc), param_hint="--email") from None
