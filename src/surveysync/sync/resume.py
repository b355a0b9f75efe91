"""What a run does before reading any day: finish what earlier runs left, and pull the
provider's suppression list so an unsubscribe made through any channel holds tonight.

After a crash, requests found in ``sending`` are in doubt. A provider that honours
idempotency keys gets each call again, as it was, under its old key; for the others
``sync.in_doubt`` decides (``skip``, the default: keep them ``in_doubt`` and list them in
``status``; ``resend``: send again, accepting a rare duplicate).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from surveysync.config import InDoubtPolicy
from surveysync.ledger import Claimable, mask_email
from surveysync.model import RequestStatus
from surveysync.providers import ProviderError
from surveysync.providers.base import SuppressionSource
from surveysync.sync.context import RunContext
from surveysync.sync.delivery import Delivery
from surveysync.sync.people import normalized

log = structlog.get_logger("surveysync.sync")

_ALL = 1_000_000


def resume_unsettled(ctx: RunContext, delivery: Delivery) -> None:
    """Finish what an earlier run left: pending requests, in-flight ones after a crash,
    and, when the operator chose ``sync.in_doubt = "resend"``, those held in doubt."""
    requests = ctx.ledger.requests
    in_flight = requests.unsent(RequestStatus.SENDING, limit=_ALL)
    resend = ctx.settings.sync.in_doubt is InDoubtPolicy.RESEND
    if in_flight and not (ctx.provider.honours_idempotency_key or resend):
        requests.mark_in_doubt([c.request_id for c in in_flight])
        ctx.report.counts["in_doubt"] += len(in_flight)
        log.warning("requests.in_doubt", count=len(in_flight), policy="skip")
        in_flight = []
    if resend and not ctx.request.dry_run:
        doubtful = requests.unsent(RequestStatus.IN_DOUBT, limit=_ALL)
        if doubtful:
            log.warning("requests.resending_in_doubt", count=len(doubtful), policy="resend")
        in_flight += doubtful
    pending = requests.unsent(RequestStatus.PENDING, limit=_ALL)
    if in_flight or pending:
        log.info("requests.resumed", in_flight=len(in_flight), pending=len(pending))
    # A call left in flight is repeated as it was, so its idempotency key still matches.
    for key, group in _by_batch(in_flight).items():
        delivery.deliver(group, batch_key=key)
    if pending:
        delivery.deliver(pending)


def pull_suppressions(ctx: RunContext) -> None:
    """Pull the provider's suppression list into the ledger, so an unsubscribe made
    through any channel holds here. A failure is logged; the run goes on."""
    provider = ctx.provider
    if ctx.request.dry_run or not isinstance(provider, SuppressionSource):
        return
    cursor_name = f"suppression_cursor:{ctx.provider.name}:{ctx.settings.store.id}"
    try:
        found, cursor = provider.fetch_suppressions(ctx.ledger.install.get(cursor_name))
    except ProviderError as exc:
        log.warning("suppressions.sync_failed", provider=ctx.provider.name, error=str(exc))
        return
    rows = []
    for item in found:
        if (address := normalized(item.email)) is not None:
            rows.append((ctx.ledger.keys.email(address), mask_email(address), item.reason))
    added = ctx.ledger.suppressions.add_emails(rows, "provider", ctx.now)
    if cursor is not None:
        ctx.ledger.install.set(cursor_name, cursor)
    log.info("suppressions.synced", provider=ctx.provider.name, fetched=len(found), added=added)


def _by_batch(claimables: Sequence[Claimable]) -> dict[str | None, list[Claimable]]:
    groups: dict[str | None, list[Claimable]] = {}
    for item in claimables:
        groups.setdefault(item.batch_key, []).append(item)
    return groups
