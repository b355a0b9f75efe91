"""The ``surveysync`` command. A thin edge: each command calls one library function and turns
its result into output and its errors into messages and exit codes.

Exit codes: 0 ok · 1 the run (or a check) failed · 2 bad usage or configuration.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import click

from surveysync import heartbeat, links, pos, providers
from surveysync import logging as logs
from surveysync.config import ConfigError, Settings, load_settings
from surveysync.console import Output, day_list, local_time
from surveysync.ledger import Ledger, LedgerError, mask_email, migrate, open_ledger, reports
from surveysync.ledger.lock import InstanceLock
from surveysync.render import InvalidLink, Renderer, RenderError, SurveyEmail
from surveysync.rules import REASON_TEXT, InvalidEmail, SkipReason, normalize_email
from surveysync.scheduler import Daemon, next_fire
from surveysync.sync import RunReport, SyncError, SyncRequest, run_sync

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
    try:
        settings = load_settings(ctx.obj["config_path"])
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    _configure_logs(settings)
    return settings


def _configure_logs(settings: Settings) -> None:
    """Console always; JSON-lines files too when logging.dir is set. Once per process."""
    try:
        logs.configure(
            settings.logging.level.value,
            logs.secret_values(settings),
            log_dir=settings.logging.dir,
            keep_days=settings.logging.keep_days,
            store=settings.store.id,
        )
    except logs.LogSetupError as exc:
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


def example_config() -> str:
    return (resources.files("surveysync") / "data" / "surveysync.example.toml").read_text("utf-8")


@main.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path("surveysync.toml"))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented configuration file with every setting."""
    if path.exists() and not force:
        raise ConfigProblem(f"{path} already exists (use --force to overwrite)")
    path.write_text(example_config(), encoding="utf-8")
    click.echo(f"wrote {path}; edit it, then run: surveysync --config {path} check")


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check config, POS, mapped columns, ledger and provider: one line each."""
    out = Output()
    try:
        settings = load_settings(ctx.obj["config_path"])
    except ConfigError as exc:
        out.line(f"config    failed  {exc}")
        ctx.exit(EXIT_USAGE)
    _configure_logs(settings)
    out.line(f"config    ok      store {settings.store.id!r}, {settings.store.timezone}")
    results = [
        _check_pos(settings, out),
        _check_ledger(settings, out),
        _check_templates(settings, out),
        _check_provider(settings, out),
    ]
    ctx.exit(0 if all(results) else EXIT_FAILED)


def _check_pos(settings: Settings, out: Output) -> bool:
    results = pos.check(settings.pos, settings.store.tz)
    for result in results:
        out.line(f"{result.name:<9} {'ok' if result.ok else 'failed':<7} {result.detail}")
    return all(result.ok for result in results)


def _check_ledger(settings: Settings, out: Output) -> bool:
    try:
        with _ledger(settings) as ledger, ledger.transaction() as conn:
            revision = migrate.current_revision(conn)
    except (click.ClickException, LedgerError) as exc:
        out.line(f"ledger    failed  {exc}")
        return False
    out.line(f"ledger    ok      migrated to revision {revision} (newest)")
    return True


def _check_templates(settings: Settings, out: Output) -> bool:
    renderer = Renderer(settings.store, settings.email)
    for problem in renderer.templates.problems:
        out.line(f"templates failed  {problem}")
    default = settings.store.default_locale
    available = ", ".join(sorted(renderer.locales))
    if default not in renderer.locales:
        out.line(f"templates failed  store.default_locale {default!r} has none ({available})")
        return False
    if renderer.templates.problems:
        return False
    custom = settings.email.templates_dir
    out.line(f"templates ok      {available}{f', custom folder {custom}' if custom else ''}")
    return True


def _check_provider(settings: Settings, out: Output) -> bool:
    try:
        provider = providers.create(settings.provider)
        try:
            detail = provider.check()
        finally:
            provider.close()
    except providers.ProviderError as exc:
        out.line(f"provider  failed  {exc}")
        return False
    out.line(f"provider  ok      {settings.provider.kind.value}: {detail}")
    return True


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
    _stop_on_signals(daemon)
    upcoming = local_time(next_fire(settings, _now(settings)), settings.store.tz)
    click.echo(
        f"surveysync {settings.store.id}: nightly at {settings.schedule.at:%H:%M} "
        f"{settings.store.timezone}; next {upcoming}"
    )
    try:
        daemon.serve()
    except LedgerError as exc:
        raise RunFailed(str(exc)) from None


def _stop_on_signals(daemon: Daemon) -> None:
    def handle(number: int, _frame: Any) -> None:
        daemon.stop(signal.Signals(number).name)

    # SIGBREAK is Ctrl-Break: how WinSW and NSSM stop a console program on Windows.
    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handle)



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
    if request.dry_run:  # writes nothing: safe beside a running daemon
        return _run_unlocked(settings, request)
    try:
        with InstanceLock(settings.ledger.url.get_secret_value(), settings.store.id, request.kind):
            return _run_unlocked(settings, request)
    except LedgerError as exc:  # LockHeld says who holds it
        raise RunFailed(str(exc)) from None


def _run_unlocked(settings: Settings, request: SyncRequest) -> RunReport:
    out = Output()
    with out.progress("Reading days") as hook:
        try:
            report = run_sync(settings, request, progress=hook)
        except SyncError as exc:
            partial = getattr(exc, "report", None)
            if partial is not None:
                _print_report(out, partial, settings)
            raise RunFailed(str(exc)) from None
    _print_report(out, report, settings)
    return report


def _print_report(out: Output, report: RunReport, settings: Settings) -> None:
    tz = settings.store.tz
    if report.dry_run:
        out.line("DRY RUN: nothing was written to the ledger and nothing was sent.")
    out.line(
        f"{report.kind} {report.status}: {local_time(report.window_start, tz)} -> "
        f"{local_time(report.window_end, tz)} ({len(report.days)} day(s) covered)"
    )
    verb = "would send" if report.dry_run else "sent"
    rows: list[tuple[str, int, str]] = [(verb, report.counts["sent"], "survey requests")]
    for outcome in ("rejected", "failed", "in_doubt"):
        if report.counts[outcome]:
            rows.append((outcome, report.counts[outcome], "see `surveysync status`"))
    if report.counts["pending"]:
        rows.append(("pending", report.counts["pending"], "refused for now; the next run retries"))
    rows += [
        (reason, count, REASON_TEXT[SkipReason(reason)])
        for reason, count in sorted(report.skipped.items(), key=lambda kv: -kv[1])
    ]
    if report.counts["already_decided"]:
        rows.append(
            (
                "already decided",
                report.counts["already_decided"],
                "re-read from an earlier run (look-back), unchanged",
            )
        )
    if report.counts["unreadable_rows"]:
        rows.append(
            (
                "unreadable rows",
                report.counts["unreadable_rows"],
                "POS rows that could not be read; see the log",
            )
        )
    out.table(None, ["outcome", "count", "meaning"], rows)
    if report.error:
        out.line(f"error: {report.error}")


# --- status and explain ----------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--days", default=14, show_default=True, help="How many days back to show.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, days: int) -> None:
    """Next fire, the daemon's heartbeat, last runs, days covered and missed, decisions by
    reason, requests not settled.

    Exits 1 when the most recent run failed or the daemon missed its fire, so monitoring can
    act on the exit code.
    """
    settings = _settings(ctx)
    now = _now(settings)
    with _ledger(settings) as ledger:
        result = reports.status(ledger, now, settings.store.tz, days)
    schedule = _schedule_status(settings, now)
    if as_json:
        data = result.as_dict() | {"schedule": schedule}
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        _print_schedule(Output(), schedule, settings)
        _print_status(Output(), result, settings)
    if (result.runs and result.runs[0].status == "failed") or schedule["overdue"]:
        ctx.exit(EXIT_FAILED)


def _schedule_status(settings: Settings, now: datetime) -> dict[str, Any]:
    beat = heartbeat.read(settings.schedule.heartbeat_file)
    return {
        "next_fire": next_fire(settings, now).isoformat(),
        "heartbeat": None if beat is None else vars(beat),
        "overdue": beat is not None and beat.overdue(now),
    }


def _print_schedule(out: Output, schedule: dict[str, Any], settings: Settings) -> None:
    tz = settings.store.tz
    out.line(f"next nightly run: {local_time(datetime.fromisoformat(schedule['next_fire']), tz)}")
    beat = schedule["heartbeat"]
    if beat is None:
        out.line("daemon: no heartbeat yet (`surveysync run` has not run with this config)")
        return
    updated = local_time(datetime.fromisoformat(beat["updated_at"]), tz)
    out.line(f"daemon: {beat['state']} (pid {beat['pid']} on {beat['host']}), heartbeat {updated}")
    if schedule["overdue"]:
        due = local_time(datetime.fromisoformat(beat["next_fire"]), tz)
        out.line(f"daemon: OVERDUE: it was due to run at {due} and has not reported since")


def _print_status(out: Output, result: reports.Status, settings: Settings) -> None:
    tz = settings.store.tz
    last = result.last_success
    out.line(
        f"store {result.store}: last successful run "
        f"{local_time(last.finished_at, tz) if last else 'never'}; covered until "
        f"{local_time(result.covered_until, tz)}"
    )
    out.line(f"days covered: {day_list(result.covered_days)}")
    out.line(f"days missed:  {day_list(result.missed_days)}")
    out.table(
        "Recent runs",
        ["started", "kind", "status", "window", "sent", "error"],
        [
            (
                local_time(r.started_at, tz),
                r.kind,
                r.status,
                f"{local_time(r.window_start, tz)} -> {local_time(r.window_end, tz)}",
                r.counts.get("sent", 0),
                (r.error or "")[:80],
            )
            for r in result.runs
        ],
    )
    out.table(
        "Decisions by reason",
        ["reason", "count"],
        result.reasons.most_common(),
    )
    out.table("Requests by status", ["status", "count"], sorted(result.requests_by_status.items()))
    if result.unsettled:
        out.table(
            "Requests not settled",
            ["request", "status", "email", "transaction", "created"],
            [
                (
                    u.request_id,
                    u.status,
                    u.email_masked,
                    u.transaction_id,
                    local_time(u.created_at, tz),
                )
                for u in result.unsettled
            ],
        )


@main.command()
@click.option("--email", help="The customer's email address.")
@click.option("--customer", "customer_id", help="The POS customer id.")
@click.option("--transaction", "transaction_id", help="The POS transaction id.")
@click.pass_context
def explain(
    ctx: click.Context, email: str | None, customer_id: str | None, transaction_id: str | None
) -> None:
    """Why a person did or did not get a survey: each sale, its decision and the rule."""
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
    _print_explanation(Output(), result, settings)


def _normalized_or_usage(email: str) -> str:
    try:
        return normalize_email(email)
    except InvalidEmail as exc:
        raise click.BadParameter(str(exc), param_hint="--email") from None


def _print_explanation(out: Output, result: reports.ExplainResult, settings: Settings) -> None:
    tz = settings.store.tz
    if not result.rows:
        out.line(
            f"No decision recorded for {result.subject}. Sales are decided when a run reads "
            f"them; the ledger covers up to {local_time(result.covered_until, tz)}."
        )
        return
    out.table(
        f"Decisions for {result.subject}",
        ["sale", "transaction", "location", "decision", "rule", "request"],
        [
            (
                local_time(r.sale_at, tz),
                r.transaction_id,
                r.location_id or "-",
                r.decision,
                r.reason or "all rules passed",
                r.request_status or "-",
            )
            for r in result.rows
        ],
    )
    for reason in dict.fromkeys(r.reason for r in result.rows if r.reason):
        out.line(f"  {reason}: {REASON_TEXT[SkipReason(reason)]}")
    out.line(_next_ask_line(result, tz))


def _next_ask_line(result: reports.ExplainResult, tz: Any) -> str:
    if result.suppressed:
        return f"May next be asked: never, suppressed ({'; '.join(result.suppressed)})."
    next_at = result.rows[-1].next_eligible
    if next_at is None:
        return "May next be asked: now (on their next eligible sale)."
    return f"May next be asked: from {local_time(next_at, tz)} (cooldown)."


# --- suppress ------------------------------------------------------------------------------


@main.group()
def suppress() -> None:
    """Never ask a person (by email or customer id), or never ask about one transaction."""


def _suppression_target(
    ledger: Ledger, email: str | None, customer_id: str | None, transaction_id: str | None
) -> tuple[str, str, str]:
    if sum(v is not None for v in (email, customer_id, transaction_id)) != 1:
        raise click.UsageError("give exactly one of --email, --customer or --transaction")
    if email is not None:
        normalized = _normalized_or_usage(email)
        return "email", ledger.keys.email(normalized), mask_email(normalized)
    if customer_id is not None:
        return "customer", ledger.keys.customer(customer_id), f"customer {customer_id}"
    assert transaction_id is not None
    return "transaction", ledger.keys.transaction(transaction_id), f"transaction {transaction_id}"


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
        _unsubscribe_by_link(settings, link)
        return
    with _ledger(settings) as ledger:
        kind, key, display = _suppression_target(ledger, email, customer_id, transaction_id)
        added = ledger.suppressions.add(kind, key, display, "admin", reason, _now(settings))
    click.echo(f"{'suppressed' if added else 'already suppressed'}: {display}")


def _unsubscribe_by_link(settings: Settings, link: str) -> None:
    signer = links.link_signer(settings.email)
    with _ledger(settings) as ledger:
        try:
            now = _now(settings)
            verified = links.unsubscribe_by_link(ledger, signer, link, now, source="admin")
        except InvalidLink as exc:
            raise RunFailed(f"link refused ({exc}); nothing was changed") from None
    request = verified.request
    click.echo(f"suppressed: {request.email_masked} (store {request.store}, {request.request_id})")


@suppress.command("remove")
@_with_targets
@click.pass_context
def suppress_remove(
    ctx: click.Context, email: str | None, customer_id: str | None, transaction_id: str | None
) -> None:
    """Remove a suppression."""
    settings = _settings(ctx)
    with _ledger(settings) as ledger:
        kind, key, display = _suppression_target(ledger, email, customer_id, transaction_id)
        removed = ledger.suppressions.remove(kind, key)
    if not removed:
        raise RunFailed(f"no suppression for {display}")
    click.echo(f"removed: {display}")


@suppress.command("list")
@click.pass_context
def suppress_list(ctx: click.Context) -> None:
    """List every suppression (emails shown masked)."""
    settings = _settings(ctx)
    with _ledger(settings) as ledger:
        rows = ledger.suppressions.all()
    Output().table(
        "Suppressions",
        ["kind", "who", "source", "reason", "since"],
        [
            (
                r["kind"],
                r["display"],
                r["source"],
                r["reason"] or "",
                local_time(r["created_at"], settings.store.tz),
            )
            for r in rows
        ],
    )


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
        _copy_templates(copy_to)
        return
    renderer = Renderer(settings.store, settings.email)
    for problem in renderer.templates.problems:
        click.echo(f"warning: the built-in template replaces {problem}", err=True)
    try:
        email = renderer.preview(locale or settings.store.default_locale, recipient, _now(settings))
    except RenderError as exc:
        raise ConfigProblem(str(exc)) from None
    _print_preview(email)
    if html_path is not None:
        html_path.write_text(email.html, encoding="utf-8")
        click.echo(f"wrote the HTML part to {html_path}")
    if eml_path is not None:
        eml_path.write_bytes(email.to_mime().as_bytes())
        click.echo(f"wrote the message to {eml_path}")


def _print_preview(email: SurveyEmail) -> None:
    mime = email.to_mime()
    for name in ("From", "Reply-To", "To", "Subject", "Date", *email.extra_headers()):
        if mime[name] is not None:
            click.echo(f"{name}: {mime[name]}")
    click.echo("")
    click.echo(email.text)


def _copy_templates(folder: Path) -> None:
    """The built-in templates as a starting point; files already there are left alone."""
    written = kept = 0
    for relative, text in _template_files(resources.files("surveysync") / "templates"):
        target = folder.joinpath(*relative)
        if target.exists():
            kept += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written += 1
    click.echo(f"wrote {written} template(s) to {folder} ({kept} already there, left alone)")
    click.echo(f"set email.templates_dir = {str(folder.resolve())!r}, then run `surveysync check`")


TemplateFile = tuple[tuple[str, ...], str]  # (path parts under the folder, text)


def _template_files(root: Any, parts: tuple[str, ...] = ()) -> Iterator[TemplateFile]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _template_files(entry, (*parts, entry.name))
        elif entry.name.endswith((".txt", ".html")):
            yield (*parts, entry.name), entry.read_text("utf-8")


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
    """Create a demo store with two months of sales and run a sync into the outbox."""
    from surveysync import demo as demo_store

    config_path = _build_demo(demo_store, directory, outbox, sales, seed)
    settings = load_settings(config_path)
    logs.configure("warning", logs.secret_values(settings))
    demo_store.suppress_examples(settings, _now(settings))
    out = Output()
    with out.progress("Running the nights") as hook:
        try:
            report = demo_store.run_nights(settings, demo_store.demo_nights(_now(settings)), hook)
        except SyncError as exc:
            raise RunFailed(str(exc)) from None
    _print_report(out, report, settings)
    out.line("")
    out.line(f"The survey emails are in {outbox}/ (one .eml file each; open one in a mail client).")
    out.line("Ask why someone was or was not asked, for example:")
    example = demo_store.interesting_customer(settings)
    out.line(f"  surveysync --config {config_path} explain --customer {example}")
    out.line(f"  surveysync --config {config_path} status")
    out.line(f"  surveysync --config {config_path} sync    # a second run sends nothing new")
    if report.counts["sent"] == 0:
        raise RunFailed("the demo sent nothing, which should not happen")


def _build_demo(demo_store: Any, directory: Path, outbox: Path, sales: int, seed: int) -> Path:
    if directory.exists():
        shutil.rmtree(directory)
    for old in outbox.glob("*.eml") if outbox.is_dir() else ():
        old.unlink()
    now = datetime.now(demo_store.DEMO_TZ).replace(tzinfo=None)
    first = datetime.combine(now.date() - timedelta(days=demo_store.DEMO_DAYS), time(0))
    demo_store.build_demo_pos(directory / "pos.sqlite", now=now, sales=sales, seed=seed)
    config_path = directory / "surveysync.toml"
    config_path.write_text(demo_store.demo_config_toml(directory, outbox, first), encoding="utf-8")
    click.echo(
        f"demo store: {sales} sales over {demo_store.DEMO_DAYS} days in {directory}/pos.sqlite"
    )
    return config_path


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
