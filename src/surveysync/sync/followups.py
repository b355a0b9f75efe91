"""After the night's surveys: what the answers call for. Clicked answers whose settle window
has passed are counted; detractor alerts that are due (and
the digest of every store day that is over) go to the store manager through the same
provider; then the customers' reminders that are due (review reminders, and reminders to
those who did not answer) go out, and those that can no longer go out are cancelled. A dry
run does none of it.

Alerts before reminders: a handful of emails the manager acts on are never held behind a
night's bulk of reminders, nor lost to a stop asked for during it. Both come after the
answers are counted, so that a click of the last half hour counts for a reminder too.

Never fails the run for a provider that cannot take an alert or a reminder: it waits,
counted, and the survey page's tick (alerts) or the next night tries again. A stop asked for
during the reminders ends them between provider calls; the rest wait for the next night.
"""

from __future__ import annotations

import structlog

from surveysync.alerts import send_due
from surveysync.reminders import send_due_reminders
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
    reminded = send_due_reminders(
        ctx.ledger, ctx.provider, ctx.settings, ctx.clock, stop=ctx.request.stop
    )
    done |= {f"reminders_{name}": n for name, n in reminded.as_dict().items() if n}
    ctx.report.counts.update(done)
    if done:
        log.info("followups.done", **done)
