"""The commands about what a store's customers see and say: ``preview`` (the survey email),
``demo`` (a whole store played through), ``report`` (NPS) and ``web`` (the survey page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from surveysync.commands import (
    DATE,
    ConfigProblem,
    RunFailed,
    now_of,
    settings_of,
)
from surveysync.console import Output

_file = click.Path(path_type=Path, dir_okay=False)


@click.command()
@click.option("--locale", help="Language of the sample (default: the store's default_locale).")
@click.option("--html", "html_path", type=_file, help="Also write the HTML part to FILE.")
@click.option("--eml", "eml_path", type=_file, help="Also write the whole message to FILE (.eml).")
@click.option("--to", "recipient", default="customer@example.com", show_default=True)
@click.option(
    "--copy-templates",
    "copy_to",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the built-in templates into this folder, to start your own.",
)
@click.pass_context
def preview(ctx: click.Context, /, copy_to: Path | None, **options: Any) -> None:
    """Show the survey email a customer of this store would get, with sample data."""
    from surveysync.console import print_preview
    from surveysync.render import RenderError
    from surveysync.render.preview import copy_templates, preview_email

    settings = settings_of(ctx)
    out = Output()
    if copy_to is not None:
        for line in copy_templates(copy_to):
            out.line(line)
        return
    try:
        email, notes = preview_email(settings, now_of(settings), **options)
    except RenderError as exc:
        raise ConfigProblem(str(exc)) from None
    print_preview(out, email)
    for note in notes:
        click.echo(note, err=note.startswith("warning"))


@click.command()
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
    from surveysync.console import print_demo
    from surveysync.sync import SyncError

    out = Output()
    with out.progress("Running the nights") as hook:
        try:
            played = demo_store.play(directory, outbox, sales, seed, hook)
        except SyncError as exc:
            raise RunFailed(str(exc)) from None
    print_demo(out, played, demo_store.summary_lines(played, directory, outbox, sales))
    if played.report.counts["sent"] == 0:
        raise RunFailed("the demo sent nothing, which should not happen")


@click.command("report")
@click.option(
    "--since", type=DATE, help="First day of surveys sent (default: 89 days before --until)."
)
@click.option("--until", type=DATE, help="Last day of surveys sent (default: today).")
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
    "--html", "html_path", type=_file, help="Write one self-contained HTML report to FILE."
)
@click.pass_context
def report_command(ctx: click.Context, /, **options: Any) -> None:
    """NPS with its 90 % margin of error, answers and response rate, by location, employee,
    month or week. Reads only the ledger, and never writes to it."""
    from surveysync import report as nps_report
    from surveysync.ledger import LedgerError

    settings = settings_of(ctx)
    try:
        nps_report.run_report(settings, nps_report.ReportOptions.parse(**options), Output())
    except nps_report.ReportUsageError as exc:
        raise click.UsageError(str(exc)) from None
    except (nps_report.ReportError, LedgerError) as exc:
        raise RunFailed(str(exc)) from None


@click.command()
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
    from surveysync.ledger import LedgerError

    settings = settings_of(ctx)
    try:
        survey_page.serve(
            settings, host, port, ready=lambda url: click.echo(f"surveysync web: {url}")
        )
    except (survey_page.WebError, LedgerError) as exc:
        raise RunFailed(str(exc)) from None
