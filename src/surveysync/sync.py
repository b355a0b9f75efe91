"""One run over a window: stream sales -> decide -> claim -> render -> send -> settle.

The scheduler, ``sync``, ``backfill`` and ``demo`` all call ``run_sync``; the CLI only turns
its result and its errors into output and exit codes.

Days are decided newest first, so that a person who bought on Monday and on Wednesday is
asked about Wednesday (Monday is then ``duplicate_in_run``), and so that after nights off the
freshest visits are asked about first.

Order of proof, per business day: every sale's decision is written (skips in chunks, sends
together with their claim), every request of the day is settled, and only then is the day
marked covered. Only a run that finishes moves the bookmark the next sync starts from; a
failed run's days are read again by the next one, which the ledger makes harmless.

A run asked to stop (``SyncRequest.stop``, set by the daemon on SIGTERM) finishes the
provider batch in hand, records itself as ``stopped`` and returns; what it did not reach is
read again by the next run.

Error tree::

    SyncError          the run failed; already covered days stay covered. ``retryable``
                       when the POS or the provider could not be reached (try again later)
"""

from __future__ import annotations

import bisect
import hashlib
import threading
import time as monotonic_clock
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import structlog

from surveysync import pos as pos_registry
from surveysync import providers as provider_registry
from surveysync.config import Settings
from surveysync.ledger import (
    Candidate,
    Claimable,
    CooldownRow,
    DecisionRow,
    Ledger,
    LedgerError,
    RequestFacts,
    Settlement,
    mask_email,
    new_id,
    open_ledger,
)
from surveysync.model import RequestStatus, Sale
from surveysync.pos import PosError, PosUnavailable, RowProblem, SalesSource
from surveysync.providers import (
    OutgoingEmail,
    Provider,
    ProviderError,
    ProviderUnavailable,
    SendResult,
)
from surveysync.providers.base import SuppressionSource
from surveysync.render import Renderer, RenderError
from surveysync.rules import (
    Decision,
    PersonHistory,
    RunChoices,
    SkipReason,
    decide,
    normalize_email,
)
from surveysync.windows import DaySlice, backfill_bounds, day_start, slice_days, sync_start

log = structlog.get_logger("surveysync.sync")

ProgressHook = Callable[[str, int], None]  # (event, amount): "day" with a total, "sales" read


class SyncError(Exception):
    """The run could not finish; the message says why and what is already safe."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable  # the POS or provider was unreachable: worth another try
        self.report: RunReport | None = None


class _Stopped(Exception):
    """The run was asked to stop; raised between batches, never inside one."""


@dataclass
class RunReport:
    run_id: str
    kind: str
    dry_run: bool
    window_start: datetime
    window_end: datetime
    days: list[date] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    status: str = "running"
    error: str | None = None

    @property
    def skipped(self) -> dict[str, int]:
        return {r.value: self.counts[r.value] for r in SkipReason if self.counts[r.value]}


@dataclass(frozen=True)
class SyncRequest:
    """What to run: a scheduled/manual ``sync`` up to ``now``, or a ``backfill`` range."""

    now: datetime
    kind: str = "sync"
    since: date | None = None
    until: date | None = None
    dry_run: bool = False
    # Where a scheduled run's window ends: the fire time it stands for (default: now).
    cutoff: datetime | None = None
    # Set from another thread to stop the run at the next batch boundary.
    stop: threading.Event | None = None


def run_sync(
    settings: Settings,
    request: SyncRequest,
    *,
    provider: Provider | None = None,
    progress: ProgressHook | None = None,
) -> RunReport:
    """Run once. Raises SyncError (with the report attached) if the run fails."""
    ledger = _open_ledger(settings, request.dry_run)
    try:
        pos = _open_pos(settings)
        chosen = provider or provider_registry.create(settings.provider)
        try:
            run = _Run(
                settings,
                request,
                ledger,
                pos,
                _DryRunProvider() if request.dry_run else chosen,
                progress or (lambda event, amount: None),
            )
            return run.execute()
        finally:
            pos.close()
            if provider is None:
                chosen.close()
    finally:
        ledger.close()


def _open_ledger(settings: Settings, dry_run: bool) -> Ledger:
    try:
        return open_ledger(settings, dry_run=dry_run)
    except LedgerError as exc:
        raise SyncError(str(exc)) from exc


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, PosUnavailable | ProviderUnavailable)


def _open_pos(settings: Settings) -> SalesSource:
    try:
        return pos_registry.create(settings.pos, settings.store.tz)
    except PosError as exc:
        raise SyncError(str(exc), retryable=_retryable(exc)) from exc


class _DryRunProvider:
    """Stands in for the real provider in a dry run: accepts everything, sends nothing."""

    name = "dry-run"
    max_batch_size = 1_000
    honours_idempotency_key = True

    def send(self, batch: Sequence[OutgoingEmail]) -> list[provider_registry.SendResult]:
        return [provider_registry.SendResult(e.request_id, RequestStatus.SENT) for e in batch]

    def check(self) -> str:
        return "dry run: nothing is sent"

    def close(self) -> None:
        return None


@dataclass(slots=True)
class _Facts:
    """Per chunk: what the ledger knows about the people in it, read in a few queries."""

    emails: dict[str, str]  # transaction id -> normalized email
    keys: dict[str, tuple[str, ...]]  # transaction id -> person keys (email key first)
    cooldowns: dict[str, CooldownRow]
    suppressed: set[str]  # person and transaction keys


@dataclass(frozen=True, slots=True)
class _Eligible:
    """A sale that passed every rule, waiting for the day's choice: only what its claim needs,
    so that a busy day does not keep every chunk's facts alive."""

    sale: Sale
    keys: tuple[str, ...]
    email: str  # normalized
    seen: dict[str, str | None]  # person key -> request holding its cooldown when decided


def _eligible(sale: Sale, facts: _Facts) -> _Eligible:
    keys = facts.keys[sale.transaction_id]
    seen = {k: facts.cooldowns[k].request_id if k in facts.cooldowns else None for k in keys}
    return _Eligible(sale, keys, facts.emails[sale.transaction_id], seen)


class _Run:
    def __init__(
        self,
        settings: Settings,
        request: SyncRequest,
        ledger: Ledger,
        pos: SalesSource,
        provider: Provider,
        progress: ProgressHook,
    ) -> None:
        self.settings = settings
        self.request = request
        self.ledger = ledger
        self.pos = pos
        self.provider = provider
        self.progress = progress
        self.tz = settings.store.tz
        self.now = request.now.astimezone(self.tz)
        self.renderer = Renderer(settings.store, settings.email)
        self._asked_not_reached: set[str] = set()  # person keys
        start, end = self._window()
        self.report = RunReport("", request.kind, request.dry_run, start, end)

    def _window(self) -> tuple[datetime, datetime]:
        if self.request.kind == "backfill" and self.request.since is not None:
            return backfill_bounds(self.request.since, self.request.until, self.now, self.tz)
        bookmark = self.ledger.runs.sync_bookmark()
        start = sync_start(bookmark, self._first_start(), self.settings.sync.lookback_days)
        end = (self.request.cutoff or self.now).astimezone(self.tz)
        return min(start, end), end

    def _first_start(self) -> datetime:
        """sync.first_run_start (naive means store-local), else the start of today."""
        first = self.settings.sync.first_run_start
        if first is None:
            return day_start(self.now.date(), self.tz)
        return first.replace(tzinfo=self.tz) if first.tzinfo is None else first

    # --- the run -------------------------------------------------------------------------

    def execute(self) -> RunReport:
        report = self.report
        report.run_id = self.ledger.runs.start(report.kind, self.now, dry_run=report.dry_run)
        self.ledger.runs.set_window(report.run_id, report.window_start, report.window_end)
        structlog.contextvars.bind_contextvars(run_id=report.run_id, store=self.settings.store.id)
        started = monotonic_clock.monotonic()
        log.info(
            "run.started",
            kind=report.kind,
            dry_run=report.dry_run,
            window_start=report.window_start.isoformat(),
            window_end=report.window_end.isoformat(),
        )
        try:
            self._sync_suppressions()
            self._resume_unsettled()
            days = slice_days(report.window_start, report.window_end, self.tz)
            self.progress("days", len(days))
            # Newest day first: a person is asked about their most recent sale of the run,
            # and their older sales on earlier days are then duplicate_in_run.
            for day in reversed(days):
                self._process_day(day)
        except _Stopped:
            return self._stopped(started)
        except (PosError, ProviderError, LedgerError) as exc:
            return self._fail(exc, started)
        finally:
            structlog.contextvars.unbind_contextvars("run_id", "store")
        report.status = "succeeded"
        self.ledger.runs.finish(report.run_id, self.now, report.status, dict(report.counts))
        log.info(
            "run.finished",
            run_id=report.run_id,
            store=self.settings.store.id,
            window_start=report.window_start.isoformat(),
            window_end=report.window_end.isoformat(),
            counts=dict(report.counts),
            duration_s=round(monotonic_clock.monotonic() - started, 3),
        )
        return report

    def _fail(self, exc: Exception, started: float) -> RunReport:
        report = self.report
        report.status, report.error = "failed", str(exc)
        log.error(
            "run.failed",
            run_id=report.run_id,
            store=self.settings.store.id,
            error=str(exc),
            error_type=type(exc).__name__,
            counts=dict(report.counts),
            duration_s=round(monotonic_clock.monotonic() - started, 3),
        )
        try:
            counts = dict(report.counts)
            self.ledger.runs.finish(report.run_id, self.now, "failed", counts, str(exc))
        except LedgerError:
            log.exception("run.not_recorded", run_id=report.run_id)
        error = SyncError(f"run {report.run_id} failed: {exc}", retryable=_retryable(exc))
        error.report = report
        raise error from exc

    def _stopped(self, started: float) -> RunReport:
        report = self.report
        report.status = "stopped"
        self.ledger.runs.finish(report.run_id, self.now, "stopped", dict(report.counts))
        log.warning(
            "run.stopped",
            run_id=report.run_id,
            store=self.settings.store.id,
            days_covered=[d.isoformat() for d in report.days],
            counts=dict(report.counts),
            duration_s=round(monotonic_clock.monotonic() - started, 3),
        )
        return report

    def _check_stop(self) -> None:
        if self.request.stop is not None and self.request.stop.is_set():
            raise _Stopped

    # --- one business day ----------------------------------------------------------------

    def _process_day(self, day: DaySlice) -> None:
        choices = RunChoices()
        eligible: list[_Eligible] = []
        for chunk in self.pos.sales(day.start, day.end):
            self._check_stop()
            eligible.extend(self._decide_chunk(chunk, choices))
        chosen: list[_Eligible] = []
        losers: list[_Eligible] = []
        for item in eligible:
            (chosen if choices.is_chosen(item.sale, item.keys) else losers).append(item)
        self._record_skips([(e.sale, e.keys, SkipReason.DUPLICATE_IN_RUN) for e in losers])
        for batch in _batches(chosen, self.provider.max_batch_size):
            self._check_stop()
            self._claim_and_send(batch)
        self.ledger.runs.mark_covered(day.day, day.end, self.report.run_id)
        bisect.insort(self.report.days, day.day)
        self.progress("day", 1)
        log.info("day.covered", day=day.day.isoformat(), until=day.end.isoformat())

    def _decide_chunk(self, chunk: list[Sale | RowProblem], choices: RunChoices) -> list[_Eligible]:
        """Record the chunk's skips; offer the rest to the day's choice and return them."""
        decided, already = self._decide(self._readable(chunk))
        self.report.counts["already_decided"] += already
        skips: list[tuple[Sale, tuple[str, ...], SkipReason]] = []
        eligible: list[_Eligible] = []
        for sale, facts, decision in decided:
            keys = facts.keys[sale.transaction_id]
            if decision.reason is not None:
                skips.append((sale, keys, decision.reason))
            else:
                choices.offer(sale, keys)
                eligible.append(_eligible(sale, facts))
        self._record_skips(skips)
        self.progress("sales", len(chunk))
        return eligible

    def _decide(self, sales: list[Sale]) -> tuple[list[tuple[Sale, _Facts, Decision]], int]:
        """Decide the sales the ledger has no final decision for; (decisions, how many had)."""
        final = self.ledger.decisions.final([s.transaction_id for s in sales])
        fresh = [s for s in sales if s.transaction_id not in final]
        facts = self._facts(fresh)
        decided = [
            (
                sale,
                facts,
                decide(sale, self._history(sale, facts), self.settings.rules, self.tz, self.now),
            )
            for sale in fresh
        ]
        return decided, len(sales) - len(fresh)

    def _readable(self, chunk: list[Sale | RowProblem]) -> list[Sale]:
        sales: list[Sale] = []
        for item in chunk:
            if isinstance(item, RowProblem):
                self.report.counts["unreadable_rows"] += 1
                log.warning(
                    "pos.row_unreadable", transaction_id=item.transaction_id, problem=item.problem
                )
            else:
                sales.append(item)
        self.report.counts["sales_read"] += len(chunk)
        return sales

    def _facts(self, sales: Sequence[Sale]) -> _Facts:
        emails: dict[str, str] = {}
        keys: dict[str, tuple[str, ...]] = {}
        for sale in sales:
            email = _normalized(sale.email)
            if email:
                emails[sale.transaction_id] = email
            keys[sale.transaction_id] = self._person_keys(sale, email)
        tx_keys = [self.ledger.keys.transaction(s.transaction_id) for s in sales]
        cooldowns, suppressed = self.ledger.claims.known_about(
            [k for ks in keys.values() for k in ks], tx_keys
        )
        return _Facts(emails=emails, keys=keys, cooldowns=cooldowns, suppressed=suppressed)

    def _person_keys(self, sale: Sale, email: str | None) -> tuple[str, ...]:
        keys: list[str] = []
        if email:
            keys.append(self.ledger.keys.email(email))
        if sale.customer_id:
            keys.append(self.ledger.keys.customer(sale.customer_id))
        return tuple(keys)

    def _history(self, sale: Sale, facts: _Facts) -> PersonHistory:
        keys = facts.keys[sale.transaction_id]
        holders = [facts.cooldowns[k] for k in keys if k in facts.cooldowns]
        earlier = [h.last_request_at for h in holders if h.run_id != self.report.run_id]
        return PersonHistory(
            last_request_at=max(earlier) if earlier else None,
            asked_in_this_run=any(h.run_id == self.report.run_id for h in holders)
            or any(k in self._asked_not_reached for k in keys),
            suppressed=any(k in facts.suppressed for k in keys),
            transaction_suppressed=(
                self.ledger.keys.transaction(sale.transaction_id) in facts.suppressed
            ),
        )

    def _record_skips(self, skips: Sequence[tuple[Sale, tuple[str, ...], SkipReason]]) -> None:
        rows = [
            DecisionRow(
                sale.transaction_id,
                sale.sale_at,
                sale.customer_id,
                _email_key(keys),
                sale.location_id,
                reason,
            )
            for sale, keys, reason in skips
        ]
        self.ledger.decisions.record(self.report.run_id, rows, self.now)
        self.report.counts.update(str(reason) for _, _, reason in skips)

    # --- claim, render, send, settle -----------------------------------------------------

    def _claim_and_send(self, batch: Sequence[_Eligible]) -> None:
        candidates = [self._candidate(item) for item in batch]
        won, lost = self.ledger.claims.claim(self.report.run_id, candidates, self.now)
        self.report.counts["cooldown"] += len(lost)
        not_sent = self._deliver([Claimable(c.request_id, c.email, c.payload) for c in won])
        # A refused request gives its cooldown back, but the person's older sales in this
        # run are still theirs: duplicate_in_run, not one refused request per day.
        self._asked_not_reached.update(k for c in won if c.request_id in not_sent for k in c.keys)

    def _candidate(self, item: _Eligible) -> Candidate:
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
            email=sale.email.strip() if sale.email else item.email,
            email_masked=mask_email(item.email),
            payload=_payload(sale),
            facts=RequestFacts(
                location_name=sale.location_name,
                employee_name=sale.employee_name,
                locale=self.renderer.locale_for(sale.language),
                first_name=sale.first_name,
            ),
        )

    def _deliver(self, claimables: Sequence[Claimable], batch_key: str | None = None) -> set[str]:
        """Render and send; returns the ids of the requests that did not go out.

        ``batch_key`` repeats a call that a crash left in flight, under its old key; its
        emails are rendered as of that call (same Date, same link expiry), so the repeat is
        the same body byte for byte, as an idempotency key requires."""
        not_sent: set[str] = set()
        for batch in _batches(list(claimables), self.provider.max_batch_size):
            self._check_stop()  # what is claimed but not sent waits as pending
            key = batch_key or _batch_key([c.request_id for c in batch])
            outgoing, unrenderable = self._render(batch, key)
            self.ledger.requests.settle(unrenderable, self.now)
            self.report.counts["failed"] += len(unrenderable)
            not_sent.update(s.request_id for s in unrenderable)
            if outgoing:
                not_sent.update(self._send(outgoing))
        return not_sent

    def _render(
        self, batch: Sequence[Claimable], batch_key: str
    ) -> tuple[list[OutgoingEmail], list[Settlement]]:
        outgoing: list[OutgoingEmail] = []
        failed: list[Settlement] = []
        for item in batch:
            try:
                as_of = (item.sending_at or self.now) if batch_key == item.batch_key else self.now
                message = self.renderer.render(item.request_id, item.email, item.payload, as_of)
            except RenderError as exc:
                log.warning("request.unrenderable", request_id=item.request_id, error=str(exc))
                failed.append(Settlement(item.request_id, RequestStatus.FAILED, error=str(exc)))
                continue
            outgoing.append(OutgoingEmail(item.request_id, item.request_id, message, batch_key))
        return outgoing, failed

    def _send(self, outgoing: Sequence[OutgoingEmail]) -> set[str]:
        """One provider call, settled; returns the ids of the requests that did not go out."""
        ids = [o.request_id for o in outgoing]
        self.ledger.requests.mark_sending(ids, self.now, self.provider.name, outgoing[0].batch_key)
        try:
            results = self.provider.send(outgoing)
        except ProviderUnavailable as exc:
            # What went out before the provider was lost is recorded; the rest left nothing
            # behind: back to pending, sent by the next run.
            self._settle(exc.results)
            settled = {r.request_id for r in exc.results}
            self.ledger.requests.settle(
                [
                    Settlement(rid, RequestStatus.PENDING, error="provider unavailable")
                    for rid in ids
                    if rid not in settled
                ],
                self.now,
            )
            raise
        self._settle(results)
        self._hold_unanswered(set(ids) - {r.request_id for r in results})
        return {r.request_id for r in results if r.status != "sent"}

    def _settle(self, results: Sequence[SendResult]) -> None:
        in_doubt = [r.request_id for r in results if r.status == "in_doubt"]
        settlements = [
            Settlement(r.request_id, r.status, r.provider_message_id, r.error)
            for r in results
            if r.status != "in_doubt"
        ]
        self.ledger.requests.settle(settlements, self.now)
        self.ledger.requests.mark_in_doubt(in_doubt)
        for result in results:
            self.report.counts[result.status] += 1
            if result.status != "sent":
                log.warning(
                    "request.not_sent",
                    request_id=result.request_id,
                    status=result.status,
                    error=result.error,
                )

    def _hold_unanswered(self, request_ids: set[str]) -> None:
        """A provider that gives no result for a request leaves it in doubt, shown in
        `status`, rather than in `sending` under a day marked covered."""
        if request_ids:
            self.ledger.requests.mark_in_doubt(sorted(request_ids))
            self.report.counts["in_doubt"] += len(request_ids)
            log.error("provider.result_missing", count=len(request_ids))

    def _resume_unsettled(self) -> None:
        """Finish what an earlier run left: pending requests, in-flight ones after a crash,
        and, when the operator chose ``sync.in_doubt = "resend"``, those held in doubt."""
        in_flight = self._all_unsent(RequestStatus.SENDING)
        resend = self.settings.sync.in_doubt.value == "resend"
        if in_flight and not (self.provider.honours_idempotency_key or resend):
            self.ledger.requests.mark_in_doubt([c.request_id for c in in_flight])
            self.report.counts["in_doubt"] += len(in_flight)
            log.warning("requests.in_doubt", count=len(in_flight), policy="skip")
            in_flight = []
        if resend and not self.request.dry_run:
            doubtful = self._all_unsent(RequestStatus.IN_DOUBT)
            if doubtful:
                log.warning("requests.resending_in_doubt", count=len(doubtful), policy="resend")
            in_flight += doubtful
        pending = self._all_unsent(RequestStatus.PENDING)
        if in_flight or pending:
            log.info("requests.resumed", in_flight=len(in_flight), pending=len(pending))
        # A call left in flight is repeated as it was, so its idempotency key still matches.
        for key, group in _by_batch(in_flight).items():
            self._deliver(group, batch_key=key)
        if pending:
            self._deliver(pending)

    def _all_unsent(self, status: RequestStatus) -> list[Claimable]:
        return self.ledger.requests.unsent(status, limit=1_000_000)

    def _sync_suppressions(self) -> None:
        """Pull the provider's suppression list into the ledger, so an unsubscribe made
        through any channel holds here. A failure is logged; the run goes on."""
        provider = self.provider
        if self.request.dry_run or not isinstance(provider, SuppressionSource):
            return
        cursor_name = f"suppression_cursor:{self.provider.name}:{self.settings.store.id}"
        try:
            found, cursor = provider.fetch_suppressions(self.ledger.install.get(cursor_name))
        except ProviderError as exc:
            log.warning("suppressions.sync_failed", provider=self.provider.name, error=str(exc))
            return
        rows = []
        for item in found:
            if (address := _normalized(item.email)) is not None:
                rows.append((self.ledger.keys.email(address), mask_email(address), item.reason))
        added = self.ledger.suppressions.add_emails(rows, "provider", self.now)
        if cursor is not None:
            self.ledger.install.set(cursor_name, cursor)
        log.info(
            "suppressions.synced", provider=self.provider.name, fetched=len(found), added=added
        )


def _normalized(raw: str | None) -> str | None:
    if not raw or not raw.strip():
        return None
    try:
        return normalize_email(raw)
    except ValueError:
        return None


def _email_key(keys: Iterable[str]) -> str | None:
    return next((k for k in keys if k.startswith("e:")), None)


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


def _by_batch(claimables: Sequence[Claimable]) -> dict[str | None, list[Claimable]]:
    groups: dict[str | None, list[Claimable]] = {}
    for item in claimables:
        groups.setdefault(item.batch_key, []).append(item)
    return groups


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
