"""One run's lifecycle: open what it needs, pick its window, record it as running, read its
days newest first, and record how it ended (succeeded, stopped or failed).

Only a run that finishes moves the bookmark the next sync starts from; a failed run's days
are read again by the next one, which the ledger makes harmless. A run asked to stop
finishes the provider batch in hand, records itself as ``stopped`` and returns.
"""

from __future__ import annotations

import time as monotonic_clock
from collections.abc import Sequence
from datetime import datetime

import structlog

from surveysync import pos as pos_registry
from surveysync import providers as provider_registry
from surveysync.config import Settings
from surveysync.ledger import InstanceLock, Ledger, LedgerError, open_ledger
from surveysync.logging import SensitiveMasker, secret_values
from surveysync.model import RequestStatus
from surveysync.pos import PosError, PosUnavailable, SalesSource
from surveysync.providers import OutgoingEmail, Provider, ProviderError, ProviderUnavailable
from surveysync.render import Renderer
from surveysync.sync.context import RunContext
from surveysync.sync.days import DayReader, count_unplaced
from surveysync.sync.delivery import Delivery
from surveysync.sync.followups import run_followups
from surveysync.sync.people import People
from surveysync.sync.request import ProgressHook, RunReport, Stopped, SyncError, SyncRequest
from surveysync.sync.resume import pull_suppressions, resume_unsettled
from surveysync.windows import backfill_bounds, day_start, slice_days, sync_start

log = structlog.get_logger("surveysync.sync")


def run_sync(
    settings: Settings,
    request: SyncRequest,
    *,
    provider: Provider | None = None,
    progress: ProgressHook | None = None,
    lock_held: bool = False,
) -> RunReport:
    """Run once. Raises SyncError (with the report attached) if the run fails.

    ``lock_held``: the caller holds the store's instance lock, so any run of this store
    still marked running belongs to a dead process and is recorded as crashed first."""
    ledger = _open_ledger(settings, request.dry_run)
    try:
        pos = _open_pos(settings)
        chosen = provider or provider_registry.create(settings.provider)
        try:
            ctx = _context(
                settings,
                request,
                ledger,
                pos,
                DryRunProvider() if request.dry_run else chosen,
                progress or (lambda event, amount: None),
            )
            if lock_held and not request.dry_run:
                _record_crashed(ledger, ctx.clock())
            return _Lifecycle(ctx).execute()
        finally:
            pos.close()
            if provider is None:
                chosen.close()
    finally:
        ledger.close()


def run_exclusive(
    settings: Settings, request: SyncRequest, *, progress: ProgressHook | None = None
) -> RunReport:
    """``run_sync`` holding the store's instance lock, as ``sync`` and ``backfill`` do, so
    that they never run beside the daemon; a dry run writes nothing and needs no lock.
    Raises LockHeld (a LedgerError naming the holder) when another surveysync runs."""
    if request.dry_run:
        return run_sync(settings, request, progress=progress)
    url = settings.ledger.url.get_secret_value()
    with InstanceLock(url, settings.store.id, request.kind):
        return run_sync(settings, request, progress=progress, lock_held=True)


def _context(
    settings: Settings,
    request: SyncRequest,
    ledger: Ledger,
    pos: SalesSource,
    provider: Provider,
    progress: ProgressHook,
) -> RunContext:
    tz = settings.store.tz
    now = request.now.astimezone(tz)
    start, end = _window(settings, request, ledger, now)
    report = RunReport("", request.kind, request.dry_run, start, end)
    renderer = Renderer(settings.store, settings.email, remote_bodies=provider.renders_templates)
    return RunContext(
        settings,
        request,
        ledger,
        pos,
        provider,
        renderer,
        progress,
        report,
        now,
        tz,
        request.wall_clock(),
    )


def _window(
    settings: Settings, request: SyncRequest, ledger: Ledger, now: datetime
) -> tuple[datetime, datetime]:
    tz = settings.store.tz
    if request.kind == "backfill" and request.since is not None:
        return backfill_bounds(request.since, request.until, now, tz)
    floor = _first_run_start(settings, ledger, now)
    start = sync_start(ledger.runs.sync_bookmark(), floor, settings.sync.lookback_days)
    # No look-back or catch-up reads past the floor: surveysync never asks about a sale
    # from before it was installed (only ``backfill`` goes earlier).
    start = max(start, floor)
    end = (request.cutoff or now).astimezone(tz)
    return min(start, end), end


def _first_run_start(settings: Settings, ledger: Ledger, now: datetime) -> datetime:
    """``sync.first_run_start`` (naive means store time), else the start of the day this
    store first ran, kept in the ledger from that first run on."""
    tz = settings.store.tz
    configured = settings.sync.first_run_start
    if configured is not None:
        return configured.replace(tzinfo=tz) if configured.tzinfo is None else configured
    name = f"first_run_start:{settings.store.id}"
    stored = ledger.install.get(name)
    if stored is not None:
        return datetime.fromisoformat(stored)
    first = ledger.runs.first_started() or now
    floor = day_start(first.astimezone(tz).date(), tz)
    ledger.install.set(name, floor.isoformat())
    return floor


def _record_crashed(ledger: Ledger, now: datetime) -> None:
    try:
        crashed = ledger.runs.mark_crashed(now)
    except LedgerError as exc:
        raise SyncError(str(exc)) from exc
    if crashed:
        log.warning("runs.crashed", run_ids=crashed, count=len(crashed))


def _open_ledger(settings: Settings, dry_run: bool) -> Ledger:
    try:
        return open_ledger(settings, dry_run=dry_run)
    except LedgerError as exc:
        raise SyncError(str(exc)) from exc


def _open_pos(settings: Settings) -> SalesSource:
    try:
        return pos_registry.create(settings.pos, settings.store.tz)
    except PosError as exc:
        raise SyncError(str(exc), retryable=_retryable(exc)) from exc


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, PosUnavailable | ProviderUnavailable)


class DryRunProvider:
    """Stands in for the real provider in a dry run: accepts everything, sends nothing."""

    name = "dry-run"
    max_batch_size = 1_000
    honours_idempotency_key = True
    renders_templates = False

    def send(self, batch: Sequence[OutgoingEmail]) -> list[provider_registry.SendResult]:
        return [provider_registry.SendResult(e.request_id, RequestStatus.SENT) for e in batch]

    def check(self) -> str:
        return "dry run: nothing is sent"

    def close(self) -> None:
        return None


class _Lifecycle:
    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._started = monotonic_clock.monotonic()

    def execute(self) -> RunReport:
        ctx, report = self._ctx, self._ctx.report
        report.run_id = ctx.ledger.runs.start(report.kind, ctx.clock(), dry_run=report.dry_run)
        ctx.ledger.runs.set_window(report.run_id, report.window_start, report.window_end)
        bound: dict[str, object] = {"run_id": report.run_id, "store": ctx.settings.store.id}
        if report.dry_run:  # every event of a dry run says so
            bound["dry_run"] = True
        structlog.contextvars.bind_contextvars(**bound)
        try:
            return self._run()
        finally:
            structlog.contextvars.unbind_contextvars(*bound)

    def _run(self) -> RunReport:
        report = self._ctx.report
        log.info(
            "run.started",
            kind=report.kind,
            window_start=report.window_start.isoformat(),
            window_end=report.window_end.isoformat(),
        )
        try:
            self._read_days()
        except Stopped:
            return self._stopped()
        except (PosError, ProviderError, LedgerError) as exc:
            return self._fail(exc)
        return self._succeeded()

    def _read_days(self) -> None:
        ctx = self._ctx
        people = People(ctx.ledger, ctx.report.run_id)
        delivery = Delivery(ctx, people)
        pull_suppressions(ctx)
        resume_unsettled(ctx, delivery)
        count_unplaced(ctx)
        days = slice_days(ctx.report.window_start, ctx.report.window_end, ctx.tz)
        ctx.progress("days", len(days))
        reader = DayReader(ctx, people, delivery)
        # Newest day first: a person is asked about their most recent sale of the run,
        # and their older sales on earlier days are then duplicate_in_run.
        for day in reversed(days):
            reader.process(day)
        run_followups(ctx)

    def _succeeded(self) -> RunReport:
        ctx, report = self._ctx, self._ctx.report
        report.status = "succeeded"
        ctx.ledger.runs.finish(report.run_id, ctx.clock(), report.status, dict(report.counts))
        log.info(
            "run.finished",
            run_id=report.run_id,
            store=ctx.settings.store.id,
            window_start=report.window_start.isoformat(),
            window_end=report.window_end.isoformat(),
            counts=dict(report.counts),
            duration_s=self._duration(),
        )
        return report

    def _fail(self, exc: Exception) -> RunReport:
        ctx, report = self._ctx, self._ctx.report
        # Masked before it is stored or shown: runs.error is read by status, unmasked.
        message = SensitiveMasker(secret_values(ctx.settings)).mask(str(exc))
        report.status, report.error = "failed", message
        log.error(
            "run.failed",
            run_id=report.run_id,
            store=ctx.settings.store.id,
            error=message,
            error_type=type(exc).__name__,
            counts=dict(report.counts),
            duration_s=self._duration(),
        )
        try:
            counts = dict(report.counts)
            ctx.ledger.runs.finish(report.run_id, ctx.clock(), "failed", counts, message)
        except LedgerError:
            log.exception("run.not_recorded", run_id=report.run_id)
        error = SyncError(f"run {report.run_id} failed: {message}", retryable=_retryable(exc))
        error.report = report
        raise error from exc

    def _stopped(self) -> RunReport:
        ctx, report = self._ctx, self._ctx.report
        report.status = "stopped"
        ctx.ledger.runs.finish(report.run_id, ctx.clock(), "stopped", dict(report.counts))
        log.warning(
            "run.stopped",
            run_id=report.run_id,
            store=ctx.settings.store.id,
            days_covered=[d.isoformat() for d in report.days],
            counts=dict(report.counts),
            duration_s=self._duration(),
        )
        return report

    def _duration(self) -> float:
        return round(monotonic_clock.monotonic() - self._started, 3)
