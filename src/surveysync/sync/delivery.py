"""Delivery: claim → render → mark sending → send → settle, one provider call at a time.

A claim (the person's cooldown and the pending request) is written before anything is sent;
``sending`` is committed before the provider is called; the results are settled after it.
A provider lost half-way through a call settles what it already answered and hands the rest
back as pending. A request the provider gave no result for is held ``in_doubt``, never left
``sending`` under a day marked covered. A request settled as sent hands its address to the
reminders the settings plan for it (``reminder_rules.reminder_plan``), in the same
transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import structlog

from surveysync.addresses import AcceptedAddress
from surveysync.ledger import (
    Candidate,
    Claimable,
    RequestFacts,
    Settlement,
    mask_email,
    new_id,
)
from surveysync.model import RequestStatus, Sale
from surveysync.providers import OutgoingEmail, ProviderLost, ProviderUnavailable, SendResult
from surveysync.providers.base import SplitsRefusedBatches
from surveysync.reminder_rules import reminder_plan
from surveysync.render import RenderError
from surveysync.sync.context import RunContext
from surveysync.sync.people import Eligible, People, normalized, person_tag

log = structlog.get_logger("surveysync.sync")


class Delivery:
    def __init__(self, ctx: RunContext, people: People) -> None:
        self._ctx = ctx
        self._people = people
        self._named: dict[str, tuple[str, str | None]] = {}  # request id -> (masked, person)
        self._addresses: dict[str, str] = {}  # request id -> address, while it is sent
        # request id -> its address as this run's rules accepted it: rendered without a
        # second check. Only the batch being claimed; resumed requests are checked again.
        self._accepted: dict[str, AcceptedAddress] = {}
        settings = ctx.settings
        self._reminders = reminder_plan(settings.review, settings.reminders, ctx.tz)
        if isinstance(ctx.provider, SplitsRefusedBatches):
            ctx.provider.on_split = ctx.ledger.requests.rekey_each  # recorded before sent

    def claim_and_send(self, batch: Sequence[Eligible]) -> None:
        ctx = self._ctx
        candidates = [self._candidate(item) for item in batch]
        pairs = zip(candidates, batch, strict=True)
        self._accepted = {candidate.request_id: item.address for candidate, item in pairs}
        won, lost = ctx.ledger.claims.claim(ctx.report.run_id, candidates, ctx.now)
        ctx.report.counts["cooldown"] += len(lost)
        not_sent = self.deliver(
            [Claimable(c.request_id, c.email, c.payload, person_key=c.person_key) for c in won]
        )
        # A refused request gives its cooldown back, but the person's older sales in this
        # run are still theirs: duplicate_in_run, not one refused request per day.
        self._people.asked_not_reached.update(
            k for c in won if c.request_id in not_sent for k in c.keys
        )

    def deliver(self, claimables: Sequence[Claimable], batch_key: str | None = None) -> set[str]:
        """Render and send; returns the ids of the requests that did not go out.

        ``batch_key`` repeats a call that a crash left in flight, under its old key; its
        emails are rendered as of that call (same Date, same link expiry), so the repeat is
        the same body byte for byte, as an idempotency key requires."""
        ctx = self._ctx
        not_sent: set[str] = set()
        self._named = {
            c.request_id: (mask_email(c.email), person_tag([c.person_key or ""]))
            for c in claimables
        }
        self._addresses = {c.request_id: c.email for c in claimables}
        for batch in batches(list(claimables), ctx.provider.max_batch_size):
            ctx.check_stop()  # what is claimed but not sent waits as pending
            key = batch_key or _batch_key([c.request_id for c in batch])
            moment = ctx.clock()  # the call's time: its emails' Date and link expiry
            outgoing, unrenderable = self._render(batch, key, moment)
            ctx.ledger.requests.settle(unrenderable, moment)
            ctx.report.counts["failed"] += len(unrenderable)
            not_sent.update(s.request_id for s in unrenderable)
            if outgoing:
                not_sent.update(self._send(outgoing, moment, repeat=batch_key is not None))
        return not_sent

    def _candidate(self, item: Eligible) -> Candidate:
        sale = item.sale
        return Candidate(
            request_id=new_id(),
            transaction_id=sale.transaction_id,
            sale_at=sale.sale_at,
            customer_id=sale.customer_id,
            location_id=sale.location_id,
            person_key=item.keys[0],
            keys=item.keys,
            seen=item.seen,
            email=sale.email or item.email,  # exactly what the rules accepted
            email_masked=mask_email(item.email),
            payload=_payload(sale),
            facts=RequestFacts(
                location_name=sale.location_name,
                employee_name=sale.employee_name,
                locale=self._ctx.renderer.locale_for(sale.language),
                first_name=sale.first_name,
            ),
        )

    def _render(
        self, batch: Sequence[Claimable], batch_key: str, moment: datetime
    ) -> tuple[list[OutgoingEmail], list[Settlement]]:
        ctx = self._ctx
        outgoing: list[OutgoingEmail] = []
        failed: list[Settlement] = []
        for item in batch:
            # A repeated call is rendered as of its first attempt: the same bytes again.
            repeat = batch_key == item.batch_key and item.sending_at is not None
            as_of = (item.sending_at if repeat and item.sending_at else moment).astimezone(ctx.tz)
            try:
                accepted = self._accepted.pop(item.request_id, None)
                message = ctx.renderer.render(
                    item.request_id, item.email, item.payload, as_of, accepted
                )
            except RenderError as exc:
                log.warning("request.unrenderable", request_id=item.request_id, error=str(exc))
                failed.append(Settlement(item.request_id, RequestStatus.FAILED, error=str(exc)))
                continue
            outgoing.append(OutgoingEmail(item.request_id, item.request_id, message, batch_key))
        return outgoing, failed

    def _send(
        self, outgoing: Sequence[OutgoingEmail], moment: datetime, *, repeat: bool
    ) -> set[str]:
        """One provider call, settled; returns the ids of the requests that did not go out.
        ``repeat``: the call repeats one a crash left in flight, which may have gone out."""
        ctx = self._ctx
        ids = [o.request_id for o in outgoing]
        ctx.ledger.requests.mark_sending(ids, moment, ctx.provider.name, outgoing[0].batch_key)
        try:
            results = ctx.provider.send(outgoing)
        except ProviderUnavailable as exc:
            self._provider_lost(exc, ids, outgoing[0].batch_key, repeat=repeat)
            raise
        self._settle(results)
        self._hold_unanswered(set(ids) - {r.request_id for r in results})
        return {r.request_id for r in results if r.status != RequestStatus.SENT}

    def _provider_lost(
        self, exc: ProviderUnavailable, ids: Sequence[str], key: str, *, repeat: bool
    ) -> None:
        """What went out before the provider was lost is recorded. What may have reached it
        (``ProviderLost``, or anything unsettled of a call that repeats one a crash left in
        flight) stays ``sending`` under the key it went out under, repeated so by the next
        run; the rest left nothing behind: back to pending, sent by the next run."""
        requests = self._ctx.ledger.requests
        self._settle(exc.results)
        kept = set(exc.lost) if isinstance(exc, ProviderLost) else set()
        if repeat:
            kept = set(ids) - {r.request_id for r in exc.results}
        if isinstance(exc, ProviderLost) and exc.key != key:  # it went out alone
            requests.rekey(exc.lost, exc.key)
        if kept:
            log.warning("requests.kept_in_flight", count=len(kept), error=str(exc))
        settled = {r.request_id for r in exc.results} | kept
        back = [
            Settlement(rid, RequestStatus.PENDING, error="provider unavailable")
            for rid in ids
            if rid not in settled
        ]
        requests.settle(back, self._ctx.clock())

    def _settle(self, results: Sequence[SendResult]) -> None:
        ctx = self._ctx
        in_doubt = [r.request_id for r in results if r.status == RequestStatus.IN_DOUBT]
        settlements = [
            Settlement(r.request_id, r.status, r.provider_message_id, r.error)
            for r in results
            if r.status != RequestStatus.IN_DOUBT
        ]
        ctx.ledger.requests.settle(settlements, ctx.clock(), reminders=self._reminders)
        ctx.ledger.requests.mark_in_doubt(in_doubt)
        self._suppress_refused([r for r in results if r.address_refused])
        ctx.progress("sent", sum(r.status == RequestStatus.SENT for r in results))
        for result in results:
            ctx.report.counts[result.status] += 1
            if result.status == RequestStatus.SENT:
                masked, person = self._named.get(result.request_id, ("", None))
                log.info(
                    "request.sent",
                    request_id=result.request_id,
                    email=masked,
                    person=person,
                    provider=ctx.provider.name,
                    provider_message_id=result.provider_message_id,
                )
            else:
                log.warning(
                    "request.not_sent",
                    request_id=result.request_id,
                    status=result.status,
                    error=result.error,
                )

    def _suppress_refused(self, results: Sequence[SendResult]) -> None:
        """An address the provider refused for good is suppressed (reason ``rejected``,
        shown by `suppress list`, removable there), so no later sale tries it again."""
        ctx = self._ctx
        rows = []
        for result in results:
            address = normalized(self._addresses.get(result.request_id, ""))
            if result.status == RequestStatus.REJECTED and address is not None:
                rows.append((ctx.ledger.keys.email(address), mask_email(address), "rejected"))
        if rows:
            added = ctx.ledger.suppressions.add_emails(rows, "provider", ctx.clock())
            log.info("suppressions.rejected_addresses", count=len(rows), added=added)

    def _hold_unanswered(self, request_ids: set[str]) -> None:
        """A provider that gives no result for a request leaves it in doubt, shown in
        `status`, rather than in `sending` under a day marked covered."""
        if request_ids:
            self._ctx.ledger.requests.mark_in_doubt(sorted(request_ids))
            self._ctx.report.counts["in_doubt"] += len(request_ids)
            log.error("provider.result_missing", count=len(request_ids))


def _payload(sale: Sale) -> dict[str, Any]:
    return {
        "first_name": sale.first_name,
        "last_name": sale.last_name,
        "language": sale.language,
        "location_id": sale.location_id,
        "location_name": sale.location_name,
        "employee_name": sale.employee_name,
        "finalized_at": sale.finalized_at.isoformat() if sale.finalized_at else None,
    }


def _batch_key(request_ids: Sequence[str]) -> str:
    """The same for the same requests, whatever their order."""
    return hashlib.sha256("\n".join(sorted(request_ids)).encode("ascii")).hexdigest()[:40]


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
