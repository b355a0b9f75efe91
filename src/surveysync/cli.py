"""The ``surveysync`` command. A thin edge: each command calls one library function and turns
its result into output and its errors into messages and exit codes.

Exit codes: 0 ok · 1 the run (or a check) failed · 2 bad usage or configuration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from surveysync import links, logview
from surveysync import logging as log_setup
from surveysync.checks import run_checks
from surveysync.config import ConfigError, Settings, example_config_text, load_settings
from surveysync.console import (
    Output,
    local_time,
    print_checks,
    print_explanation,
    print_preview,
    print_report,
    print_schedule,
    print_status,
    print_suppressions,
)
from surveysync.ledger import (
    Ledger,
    LedgerError,
    SuppressionTarget,
    open_ledger,
    reports,
    suppression_target,
)
from surveysync.render import InvalidLink, Renderer, RenderError
from surveysync.render.templates import copy_builtin_templates
from surveysync.rules import InvalidEmail, normalize_email
from surveysync.scheduler import Daemon, next_fire, schedule_status, stop_on_signals
from surveysync.sync import RunReport, SyncError, SyncRequest, record_crashed_runs, run_exclusive

EXIT_FAILED = 1
EXIT_USAGE = 2


class ConfigProblem(click.ClickException):
    exit_code = EXIT_USAGE


class RunFailed(click.ClickException):
    exit_code = EXIT_FAILED


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


def _settings(ctx: click.Context) -> Settings:
    """The configuration every command but ``init``, ``demo`` and ``--help`` needs: without a
    config file, nothing runs against defaults (exit 2, saying where it looked)."""
    try:
        settings = load_settings(ctx.obj["config_path"], require_file=True)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    _configure_logs(settings)
    return settings


def _configure_logs(settings: Settings) -> None:
    """Console always; JSON-lines files too when logging.dir is set. Once per process."""
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


def _now(settings: Settings) -> datetime:
    return datetime.now(settings.store.tz)


@contextmanager
def _ledger(settings: Settings) -> Iterator[Ledger]:
    try:
        ledger = open_ledger(settings)
    except LedgerError as exc:
        raise RunFailed(str(exc)) from None
    try:
        yield ledger
    except LedgerError as exc:
        raise RunFailed(str(exc)) from None
    finally:
        ledger.close()


# --- init and check ---------------------------------------------------------------------


@main.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path("surveysync.toml"))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented configuration file with every setting."""
    if path.exists() and not force:
        raise ConfigProblem(f"{path} already exists (use --force to overwrite)")
    path.write_text(example_config_text(), encoding="utf-8")
    click.echo(f"wrote {path}; edit it, then run: surveysync --config {path} check")


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check config, POS, mapped columns, ledger and provider: one line each."""
    out = Output()
    try:
        settings = load_settings(ctx.obj["config_path"], require_file=True)
    except ConfigError as exc:
        out.line(f"config    failed  {exc}")
        ctx.exit(EXIT_USAGE)
    _configure_logs(settings)
    results = run_checks(settings)
    print_checks(out, results)
    ctx.exit(0 if all(r.ok for r in results) else EXIT_FAILED)


# --- the daemon, sync and backfill -----------------------------------------------------


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run as a daemon: catch up now, then sync every night at schedule.at (store time).

    Stops cleanly on SIGTERM, SIGINT or Ctrl-Break, exit code 0. Refuses to start while
    another surveysync runs for this store on the same ledger.
    """
    settings = _settings(ctx)
    daemon = Daemon(settings)
    stop_on_signals(daemon)
    upcoming = local_time(next_fire(settings, _now(settings)), settings.store.tz)
    click.echo(
        f"surveysync {settings.store.id}: nightly at {settings.schedule.at:%H:%M} "
        f"{settings.store.timezone}; next {upcoming}"
    )
    try:
        daemon.serve()
    except LedgerError as exc:
        raise RunFailed(str(exc)) from None


@main.command()
@click.option("--dry-run", is_flag=True, help="Show what would happen; write and send nothing.")
@click.pass_context
def sync(ctx: click.Context, dry_run: bool) -> None:
    """Run once now: every day not yet covered, up to this moment."""
    settings = _settings(ctx)
    _run(settings, SyncRequest(now=_now(settings), dry_run=dry_run))


@main.command()
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    required=True,
    help="First business day to read (YYYY-MM-DD).",
)
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Last business day to read (default: up to now).",
)
@click.option("--dry-run", is_flag=True, help="Show what would happen; write and send nothing.")
@click.pass_context
def backfill(ctx: click.Context, since: datetime, until: datetime | None, dry_run: bool) -> None:
    """Run the same pipeline over an explicit range of days."""
    if until is not None and until < since:
        raise click.BadParameter("--until is before --since", param_hint="--until")
    settings = _settings(ctx)
    _run(
        settings,
        SyncRequest(
            now=_now(settings),
            kind="backfill",
            since=since.date(),
            until=until.date() if until else None,
            dry_run=dry_run,
        ),
    )


def _run(settings: Settings, request: SyncRequest) -> RunReport:
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


# --- status and explain ----------------------------------------------------------------


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
    settings = _settings(ctx)
    now = _now(settings)
    with _ledger(settings) as ledger:
        record_crashed_runs(settings, ledger, now)
        limit = None if show_all else 50
        result = reports.status(ledger, now, settings.store.tz, days, unsettled_limit=limit)
    schedule = schedule_status(settings, now)
    if as_json:
        data = result.as_dict() | {"schedule": schedule}
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
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
def explain(
    ctx: click.Context,
    email: str | None,
    customer_id: str | None,
    transaction_id: str | None,
    as_json: bool,
) -> None:
    """Why a person did or did not get a survey: each sale, its decision and the rule; for
    each survey its answer (score, comment, how it counted), review click and reminder."""
    if sum(v is not None for v in (email, customer_id, transaction_id)) != 1:
        raise click.UsageError("give exactly one of --email, --customer or --transaction")
    settings = _settings(ctx)
    normalized = _normalized_or_usage(email) if email is not None else None
    with _ledger(settings) as ledger:
        result = reports.explain(
            ledger,
            email=normalized,
            customer_id=customer_id,
            transaction_id=transaction_id,
            cooldown_months=settings.rules.cooldown_months,
            tz=settings.store.tz,
            now=_now(settings),
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        print_explanation(Output(), result, settings)


def _normalized_or_usage(email: str) -> str:
    try:
        return normalize_email(email)
    except InvalidEmail as exc:
        raise click.BadParameter(str(exc), param_hint="--email") from None


# --- logs ----------------------------------------------------------------------------------


@main.command("logs")
@click.option("--run", "run_id", help="Only this run's events; 'last' for the latest run.")
@click.option(
    "--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%d %H:%M"]), help="From (store time)."
)
@click.option("--level", type=click.Choice(logview.LEVELS), help="This level and worse.")
@click.option("--event", "event_name", help="An event name or pattern, e.g. 'request.*'.")
@click.option("--customer", "customer_id", help="Events about this POS customer id.")
@click.option("--email", help="Events about this address (matched by its keyed hash).")
@click.option("--follow", is_flag=True, help="Keep showing new events as they are written.")
@click.option("--json", "as_json", is_flag=True, help="The JSON lines as they are stored.")
@click.pass_context
def logs_command(ctx: click.Context, /, **options: Any) -> None:
    """Read the log files (logging.dir): filtered, in store time."""
    settings = _settings(ctx)
    if settings.logging.dir is None:
        raise RunFailed("logging.dir is not set: events go to the console (or the journal) only")
    reader = logview.LogReader(settings.logging.dir)
    log_filter = _log_filter(settings, reader, options)
    out = Output()
    events = (
        logview.follow(reader, log_filter, _pause)
        if options["follow"]
        else logview.select(reader.events(), log_filter)
    )
    for event in events:
        if options["as_json"]:
            out.line(json.dumps(event, ensure_ascii=False))
        else:
            out.log_line(logview.render(event, settings.store.tz), logview.level_of(event))


def _log_filter(settings: Settings, reader: logview.LogReader, options: Any) -> logview.LogFilter:
    run_id = options["run_id"]
    if run_id == "last":
        run_id = reader.last_run_id()
        if run_id is None:
            raise RunFailed(f"no run in the log files in {settings.logging.dir}")
    since = options["since"]
    person = None
    if options["email"] is not None:
        with _ledger(settings) as ledger:
            target = _suppression_target(ledger, options["email"], None, None)
        person = target.key[2:14]
    return logview.LogFilter(
        run_id=run_id,
        since=since.replace(tzinfo=settings.store.tz) if since else None,
        level=options["level"],
        event=options["event_name"],
        customer_id=options["customer_id"],
        person=person,
    )


def _pause() -> bool:
    time.sleep(1.0)  # --follow polls the files; an interrupt (Ctrl+C) ends it
    return False


# --- suppress ------------------------------------------------------------------------------


@main.group()
def suppress() -> None:
    """Never ask a person (by email or customer id), or never ask about one transaction."""


def _suppression_target(
    ledger: Ledger, email: str | None, customer_id: str | None, transaction_id: str | None
) -> SuppressionTarget:
    if sum(v is not None for v in (email, customer_id, transaction_id)) != 1:
        raise click.UsageError("give exactly one of --email, --customer or --transaction")
    try:
        return suppression_target(ledger.keys, email, customer_id, transaction_id)
    except InvalidEmail as exc:
        raise click.BadParameter(str(exc), param_hint="--email") from None


_target_options = [
    click.option("--email", help="An email address (stored only as a keyed hash)."),
    click.option("--customer", "customer_id", help="A POS customer id."),
    click.option("--transaction", "transaction_id", help="One POS transaction id."),
]


def _with_targets(func: Any) -> Any:
    for option in reversed(_target_options):
        func = option(func)
    return func


@suppress.command("add")
@_with_targets
@click.option(
    "--link",
    help="A survey or unsubscribe link, its token, or the subject of a mailto unsubscribe.",
)
@click.option("--reason", help="Why, for the record.")
@click.pass_context
def suppress_add(
    ctx: click.Context,
    email: str | None,
    customer_id: str | None,
    transaction_id: str | None,
    link: str | None,
    reason: str | None,
) -> None:
    """Add a suppression; takes effect from the next run."""
    settings = _settings(ctx)
    if link is not None:
        if any(v is not None for v in (email, customer_id, transaction_id)):
            raise click.UsageError("give exactly one of --email, --customer, --transaction, --link")
        _unsubscribe_by_link(settings, link, reason)
        return
    with _ledger(settings) as ledger:
        target = _suppression_target(ledger, email, customer_id, transaction_id)
        added = ledger.suppressions.add(*target, "admin", reason, _now(settings))
    click.echo(f"{'suppressed' if added else 'already suppressed'}: {target.display}")


def _unsubscribe_by_link(settings: Settings, link: str, reason: str | None) -> None:
    signer = links.link_signer(settings.email)
    with _ledger(settings) as ledger:
        try:
            verified = links.unsubscribe_by_link(
                ledger, signer, link, _now(settings), source="admin", reason=reason
            )
        except InvalidLink as exc:
            raise RunFailed(f"link refused ({exc}); nothing was changed") from None
    request = verified.request
    verb = "already suppressed" if verified.already_suppressed else "suppressed"
    click.echo(f"{verb}: {request.email_masked} (store {request.store}, {request.request_id})")


@suppress.command("remove")
@_with_targets
@click.pass_context
def suppress_remove(
    ctx: click.Context, email: str | None, customer_id: str | None, transaction_id: str | None
) -> None:
    """Remove a suppression."""
    settings = _settings(ctx)
    with _ledger(settings) as ledger:
        target = _suppression_target(ledger, email, customer_id, transaction_id)
        removed = ledger.suppressions.remove(target.kind, target.key)
    if not removed:
        raise RunFailed(f"no suppression for {target.display}")
    click.echo(f"removed: {target.display}")


@suppress.command("list")
@click.option(
    "--show-addresses", is_flag=True, help="Show the addresses the ledger still holds (unmasked)."
)
@click.pass_context
def suppress_list(ctx: click.Context, show_addresses: bool) -> None:
    """List every suppression (emails shown masked unless --show-addresses)."""
    settings = _settings(ctx)
    with _ledger(settings) as ledger:
        rows = ledger.suppressions.all(show_addresses=show_addresses)
    print_suppressions(Output(), rows, settings.store.tz)


# --- demo ----------------------------------------------------------------------------------


@main.command()
@click.option("--locale", help="Language of the sample (default: the store's default_locale).")
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the HTML part to FILE, to open in a browser.",
)
@click.option(
    "--eml",
    "eml_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the whole message to FILE (.eml), to open in a mail program.",
)
@click.option("--to", "recipient", default="customer@example.com", show_default=True)
@click.option(
    "--copy-templates",
    "copy_to",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the built-in templates into this folder, to start your own.",
)
@click.pass_context
def preview(
    ctx: click.Context,
    locale: str | None,
    html_path: Path | None,
    eml_path: Path | None,
    recipient: str,
    copy_to: Path | None,
) -> None:
    """Show the survey email a customer of this store would get, with sample data."""
    settings = _settings(ctx)
    if copy_to is not None:
        written, kept = copy_builtin_templates(copy_to)
        click.echo(f"wrote {written} template(s) to {copy_to} ({kept} already there, left alone)")
        click.echo(
            f"set email.templates_dir = {str(copy_to.resolve())!r}, then run `surveysync check`"
        )
        return
    renderer = Renderer(settings.store, settings.email)
    for problem in renderer.templates.problems:
        click.echo(f"warning: the built-in template replaces {problem}", err=True)
    try:
        email = renderer.preview(locale or settings.store.default_locale, recipient, _now(settings))
    except RenderError as exc:
        raise ConfigProblem(str(exc)) from None
    print_preview(Output(), email)
    if html_path is not None:
        html_path.write_text(email.html, encoding="utf-8")
        click.echo(f"wrote the HTML part to {html_path}")
    if eml_path is not None:
        eml_path.write_bytes(email.to_mime().as_bytes())
        click.echo(f"wrote the message to {eml_path}")


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=Path("surveysync-demo"),
    show_default=True,
    help="Where the demo POS, ledger and config go (recreated).",
)
@click.option(
    "--outbox",
    type=click.Path(path_type=Path),
    default=Path("outbox"),
    show_default=True,
    help="Where the survey emails (.eml) are written.",
)
@click.option("--sales", default=3_000, show_default=True, help="How many sales to generate.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same store).")
def demo(directory: Path, outbox: Path, sales: int, seed: int) -> None:
    """Create a demo store with two months of sales, run its nights into the outbox, play a
    month of answers and write the HTML report."""
    from surveysync import demo as demo_store

    out = Output()
    with out.progress("Running the nights") as hook:
        try:
            played = demo_store.play(directory, outbox, sales, seed, hook)
        except SyncError as exc:
            raise RunFailed(str(exc)) from None
    out.line(
        f"demo store: {sales} sales over {demo_store.DEMO_DAYS} days in {directory}/pos.sqlite"
    )
    report, config_path = played.report, played.config_path
    print_report(out, report, played.settings)
    out.line("")
    out.line(f"The survey emails are in {outbox}/ (one .eml file each; open one in a mail client).")
    out.line("Ask why someone was or was not asked, for example:")
    out.line(f"  surveysync --config {config_path} explain --customer {played.example_customer}")
    out.line(f"  surveysync --config {config_path} status")
    out.line(f"  surveysync --config {config_path} sync    # a second run sends nothing new")
    out.line(f"  surveysync --config {config_path} report --html nps.html")
    out.line("")
    for line in demo_store.page_hint(config_path, outbox):
        out.line(line)
    out.line("")
    for line in demo_store.answer_lines(played):
        out.line(line)
    if report.counts["sent"] == 0:
        raise RunFailed("the demo sent nothing, which should not happen")


# --- report ----------------------------------------------------------------------------------


@main.command("report")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    help="First day of surveys sent (default: 89 days before --until).",
)
@click.option(
    "--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day of surveys sent (default: today)."
)
@click.option(
    "--by",
    default="",
    help="Group by location, employee, month or week; combine with commas (location,month).",
)
@click.option(
    "--min-responses",
    type=click.IntRange(min=1),
    help="Fewest answers for a group to be ranked (default: [report] min_responses).",
)
@click.option("--json", "as_json", is_flag=True, help="The same figures as JSON, for scripts.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write one self-contained HTML report (charts, comments) to FILE.",
)
@click.pass_context
def report_command(
    ctx: click.Context,
    since: datetime | None,
    until: datetime | None,
    by: str,
    min_responses: int | None,
    as_json: bool,
    html_path: Path | None,
) -> None:
    """NPS with its 90 % margin of error, answers and response rate, by location, employee,
    month or week. Reads only the ledger, and never writes to it."""
    from surveysync import report as nps_report  # the report's modules load only for it

    settings = _settings(ctx)
    try:
        options = nps_report.ReportOptions(
            since=since.date() if since else None,
            until=until.date() if until else None,
            by=nps_report.parse_by(by),
            min_responses=min_responses,
            as_json=as_json,
            html=html_path,
        )
        nps_report.run_report(settings, options, Output())
    except nps_report.ReportUsageError as exc:
        raise click.UsageError(str(exc)) from None
    except (nps_report.ReportError, LedgerError) as exc:
        raise RunFailed(str(exc)) from None


# --- the survey page ------------------------------------------------------------------------


@main.command()
@click.option("--host", help="Address to listen on (default: web.host, 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port to listen on (default: web.port, 8080; 0 picks a free one).",
)
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the survey page: score links, the comment form, unsubscribe, review invitations.

    Runs until stopped (SIGTERM, SIGINT, Ctrl-Break), beside `surveysync run` on the same
    ledger. Put a reverse proxy with TLS in front of it and set web.public_url.
    """
    from surveysync import web as survey_page

    settings = _settings(ctx)
    try:
        survey_page.serve(
            settings, host, port, ready=lambda url: click.echo(f"surveysync web: {url}")
        )
    except (survey_page.WebError, LedgerError) as exc:
        raise RunFailed(str(exc)) from None
