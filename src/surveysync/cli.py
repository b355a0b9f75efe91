"""The ``surveysync`` command. A thin edge: each command parses its arguments, calls one library
function, and turns its result into output and its errors into messages and exit codes.

Each command imports the stages it needs when it runs: ``surveysync --help`` (and a command
that needs no database) never loads SQLAlchemy, Alembic, httpx or Jinja (a test keeps it so).

Exit codes: 0 ok · 1 the run (or a check) failed · 2 bad usage or configuration.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from surveysync.commands import (
    DATE,
    EXIT_FAILED,
    EXIT_USAGE,
    ConfigProblem,
    RunFailed,
    configure_logs,
    ledger_of,
    now_of,
    one_of,
    print_json,
    settings_of,
    target_of,
)
from surveysync.commands.answers import demo, preview, report_command, web
from surveysync.commands.suppress import suppress
from surveysync.console import Output

if TYPE_CHECKING:
    from surveysync.config import Settings
    from surveysync.sync import RunReport, SyncRequest


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="SURVEYSYNC_CONFIG",
    help="Configuration file (default: ./surveysync.toml, if present).",
)
@click.version_option(package_name="surveysync")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """surveysync: turn finalized POS sales into NPS survey requests, under the rules."""
    ctx.obj = {"config_path": config_path}


# --- init and check ---------------------------------------------------------------------


@main.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path("surveysync.toml"))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the ledger, outbox and heartbeat paths under this folder (absolute), "
    "instead of relative to the config file's folder.",
)
def init(path: Path, force: bool, data_dir: Path | None) -> None:
    """Write a commented configuration file with every setting."""
    from surveysync.config import example_config_text

    if path.exists() and not force:
        raise ConfigProblem(f"{path} already exists (use --force to overwrite)")
    path.write_text(example_config_text(data_dir), encoding="utf-8")
    click.echo(f"wrote {path}; edit it, then run: surveysync --config {path} check")


@main.command()
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    help="Also show N sales of the latest day as surveysync reads them, with each decision.",
)
@click.pass_context
def check(ctx: click.Context, sample: int | None) -> None:
    """Check config, POS, mapped columns, the latest day's values, ledger and provider: one
    line each."""
    from surveysync.checks import run_checks
    from surveysync.config import ConfigError, load_settings
    from surveysync.console import print_checks

    out = Output()
    try:
        settings = load_settings(ctx.obj["config_path"], require_file=True)
    except ConfigError as exc:
        out.line(f"config    failed  {exc}")
        ctx.exit(EXIT_USAGE)
    configure_logs(settings)
    results = run_checks(settings)
    print_checks(out, results)
    if sample:
        _print_sample(out, settings, sample)
    ctx.exit(0 if all(r.ok for r in results) else EXIT_FAILED)


def _print_sample(out: Output, settings: Settings, count: int) -> None:
    from surveysync.checks import read_latest_day
    from surveysync.console import print_sample
    from surveysync.pos import PosError
    from surveysync.sync.sample import decisions

    now = now_of(settings)
    try:
        day = read_latest_day(settings, now)
    except PosError as exc:
        out.line(f"sample    failed  {exc}")
        return
    shown = day.sales[:count]
    print_sample(out, settings, day, shown, decisions(settings, shown, now))


# --- the daemon, sync and backfill -----------------------------------------------------

_dry_run = click.option(
    "--dry-run", is_flag=True, help="Show what would happen; write and send nothing."
)


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run as a daemon: catch up now, then sync every night at schedule.at (store time).

    Stops cleanly on SIGTERM, SIGINT or Ctrl-Break, exit code 0. Refuses to start while
    another surveysync runs for this store on the same ledger.
    """
    from surveysync.console import print_daemon_start
    from surveysync.ledger import LedgerError
    from surveysync.nightly import next_fire
    from surveysync.scheduler import Daemon, stop_on_signals

    settings = settings_of(ctx)
    daemon = Daemon(settings)
    stop_on_signals(daemon)
    print_daemon_start(Output(), settings, next_fire(settings, now_of(settings)))
    try:
        daemon.serve()
    except LedgerError as exc:
        raise RunFailed(str(exc)) from None


@main.command()
@_dry_run
@click.pass_context
def sync(ctx: click.Context, dry_run: bool) -> None:
    """Run once now: every day not yet covered, up to this moment."""
    from surveysync.sync import SyncRequest

    settings = settings_of(ctx)
    _run(settings, SyncRequest(now=now_of(settings), dry_run=dry_run))


@main.command()
@click.option("--since", type=DATE, required=True, help="First business day to read (YYYY-MM-DD).")
@click.option("--until", type=DATE, help="Last business day to read (default: up to now).")
@_dry_run
@click.pass_context
def backfill(ctx: click.Context, since: datetime, until: datetime | None, dry_run: bool) -> None:
    """Run the same pipeline over an explicit range of days."""
    from surveysync.sync import SyncRequest

    if until is not None and until < since:
        raise click.BadParameter("--until is before --since", param_hint="--until")
    settings = settings_of(ctx)
    last = until.date() if until else None
    request = SyncRequest(
        now=now_of(settings), kind="backfill", since=since.date(), until=last, dry_run=dry_run
    )
    _run(settings, request)


def _run(settings: Settings, request: SyncRequest) -> RunReport:
    from surveysync.console import print_report
    from surveysync.ledger import LedgerError
    from surveysync.sync import SyncError, run_exclusive

    out = Output()
    with out.progress("Reading days") as hook:
        try:
            report = run_exclusive(settings, request, progress=hook)
        except LedgerError as exc:  # LockHeld says who holds it
            raise RunFailed(str(exc)) from None
        except SyncError as exc:
            if exc.report is not None:
                print_report(out, exc.report, settings)
            raise RunFailed(str(exc)) from None
    print_report(out, report, settings)
    return report


# --- status, explain and logs ----------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--days", default=14, show_default=True, help="How many days back to show.")
@click.option("--all", "show_all", is_flag=True, help="List every unsettled request (not 50).")
@click.pass_context
def status(ctx: click.Context, as_json: bool, days: int, show_all: bool) -> None:
    """Next fire, the daemon's heartbeat, last runs, days covered and missed, decisions by
    reason, requests not settled.

    Exits 1 when the most recent run failed or the daemon missed its fire, so monitoring can
    act on the exit code.
    """
    from surveysync.console import print_schedule, print_status
    from surveysync.ledger import reports
    from surveysync.ledger.crashed import record_crashed_runs
    from surveysync.nightly import schedule_status

    settings = settings_of(ctx)
    now = now_of(settings)
    with ledger_of(settings, existing=True) as ledger:
        record_crashed_runs(settings, ledger, now)
        limit = None if show_all else 50
        result = reports.status(ledger, now, settings.store.tz, days, unsettled_limit=limit)
    schedule = schedule_status(settings, now)
    if as_json:
        print_json(result.as_dict() | {"schedule": schedule})
    else:
        print_schedule(Output(), schedule, settings)
        print_status(Output(), result, settings)
    if result.failing or schedule["overdue"]:
        ctx.exit(EXIT_FAILED)


@main.command()
@click.option("--email", help="The customer's email address.")
@click.option("--customer", "customer_id", help="The POS customer id.")
@click.option("--transaction", "transaction_id", help="The POS transaction id.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def explain(ctx: click.Context, /, as_json: bool, **who: str | None) -> None:
    """Why a person did or did not get a survey: each sale, its decision and the rule; for
    each survey its answer (score, comment, how it counted), review click and reminder."""
    from surveysync.console import print_explanation
    from surveysync.ledger import reports

    one_of(*who.values())
    settings = settings_of(ctx)
    with ledger_of(settings, existing=True) as ledger:
        email = target_of(ledger, who["email"], None, None).key if who["email"] else None
        result = reports.explain(
            ledger,
            email_key=email,
            customer_id=who["customer_id"],
            transaction_id=who["transaction_id"],
            cooldown_months=settings.rules.cooldown_months,
            tz=settings.store.tz,
            now=now_of(settings),
        )
    if as_json:
        print_json(result.as_dict())
    else:
        print_explanation(Output(), result, settings)


@main.command("logs")
@click.option("--run", "run_id", help="Only this run's events; 'last' for the latest run.")
@click.option(
    "--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%d %H:%M"]), help="From (store time)."
)
@click.option(
    "--level",
    type=click.Choice(("debug", "info", "warning", "error", "critical")),
    help="This level and worse.",
)
@click.option("--event", "event_name", help="An event name or pattern, e.g. 'request.*'.")
@click.option("--customer", "customer_id", help="Events about this POS customer id.")
@click.option("--email", help="Events about this address (matched by its keyed hash).")
@click.option("--follow", is_flag=True, help="Keep showing new events as they are written.")
@click.option("--json", "as_json", is_flag=True, help="The JSON lines as they are stored.")
@click.pass_context
def logs_command(ctx: click.Context, /, **options: Any) -> None:
    """Read the log files (logging.dir): filtered, in store time."""
    from surveysync import logview

    settings = settings_of(ctx)
    if settings.logging.dir is None:
        raise RunFailed("logging.dir is not set: events go to the console (or the journal) only")
    reader = logview.LogReader(settings.logging.dir)
    if options["run_id"] == "last":
        options["run_id"] = reader.last_run_id()
        if options["run_id"] is None:
            raise RunFailed(f"no run in the log files in {settings.logging.dir}")
    email = options.pop("email")
    if email is not None:
        with ledger_of(settings, existing=True) as ledger:
            options["person"] = target_of(ledger, email, None, None).key[2:14]
    log_filter = logview.LogFilter.from_options(options, settings.store.tz)
    follow = options["follow"]
    events = logview.follow(reader, log_filter, _pause) if follow else reader.select(log_filter)
    out = Output()
    for event in events:
        if options["as_json"]:
            out.line(json.dumps(event, ensure_ascii=False))
        else:
            out.log_line(logview.render(event, settings.store.tz), logview.level_of(event))


def _pause() -> bool:
    time.sleep(1.0)  # --follow polls the files; an interrupt (Ctrl+C) ends it
    return False


for command in (suppress, preview, demo, report_command, web):
    main.add_command(command)
