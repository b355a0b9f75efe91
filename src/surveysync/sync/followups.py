"""After the night's surveys: what the answers call for. Clicked answers whose settle window
has passed are counted; detractor alerts that are due (and
the digest of every store day that is over) go to the store manager through the same
provider. A dry run does none of it.

Never fails the run for a provider that cannot take an alert: the alert waits, counted, and
the survey page's tick or the next night tries again.
"""

from __future__ import annotations

import structlog

from surveysync.alerts import send_due
from surveysync.sync.context import RunContext

log = structlog.get_logger("surveysync.sync")


def run_followups(ctx: RunContext) -> None:
    if ctx.request.dry_run:
        return
    # Clicks whose settle window passed count now (the survey page's sweep does the same
    # every minute; a page that was not running must not hold answers back).
    settled = ctx.ledger.answers.settle_due(ctx.clock())
    if settled:
        ctx.report.counts["answers_settled"] += len(settled)
    counts = send_due(ctx.ledger, ctx.provider, ctx.settings, ctx.clock(), digests=True)
    done = {f"alerts_{name}": n for name, n in counts.as_dict().items() if n}
    ctx.report.counts.update(done)
    if done:
        log.info("followups.done", **done)
