"""``surveysync suppress``: never ask a person (by email or customer id), or never ask about
one transaction; undo it; list them. Suppressions hold for every store sharing the ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from surveysync.commands import (
    RunFailed,
    ledger_of,
    now_of,
    one_of,
    settings_of,
    target_of,
)
from surveysync.console import Output

if TYPE_CHECKING:
    from surveysync.config import Settings


@click.group()
def suppress() -> None:
    """Never ask a person (by email or customer id), or never ask about one transaction."""


def _with_targets(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--email", help="An email address (stored only as a keyed hash)."),
            click.option("--customer", "customer_id", help="A POS customer id."),
            click.option("--transaction", "transaction_id", help="One POS transaction id."),
        ]
    ):
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
    ctx: click.Context, /, link: str | None, reason: str | None, **who: str | None
) -> None:
    """Add a suppression; takes effect from the next run."""
    settings = settings_of(ctx)
    if link is not None:
        one_of(link, *who.values(), names="--email, --customer, --transaction, --link")
        _unsubscribe_by_link(settings, link, reason)
        return
    with ledger_of(settings) as ledger:
        target = target_of(ledger, **who)
        added = ledger.suppressions.add(*target, "admin", reason, now_of(settings))
    click.echo(f"{'suppressed' if added else 'already suppressed'}: {target.display}")


def _unsubscribe_by_link(settings: Settings, link: str, reason: str | None) -> None:
    from surveysync import links
    from surveysync.render import InvalidLink

    signer = links.link_signer(settings.email)
    with ledger_of(settings) as ledger:
        try:
            verified = links.unsubscribe_by_link(
                ledger, signer, link, now_of(settings), source="admin", reason=reason
            )
        except InvalidLink as exc:
            raise RunFailed(f"link refused ({exc}); nothing was changed") from None
    request = verified.request
    verb = "already suppressed" if verified.already_suppressed else "suppressed"
    click.echo(f"{verb}: {request.email_masked} (store {request.store}, {request.request_id})")


@suppress.command("remove")
@_with_targets
@click.pass_context
def suppress_remove(ctx: click.Context, /, **who: str | None) -> None:
    """Remove a suppression."""
    settings = settings_of(ctx)
    with ledger_of(settings, existing=True) as ledger:
        target = target_of(ledger, **who)
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
    from surveysync.console import print_suppressions

    settings = settings_of(ctx)
    with ledger_of(settings, existing=True) as ledger:
        rows = ledger.suppressions.all(show_addresses=show_addresses)
    print_suppressions(Output(), rows, settings.store.tz)
