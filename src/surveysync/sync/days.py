"""One business day of a run: read its sales in chunks, decide each one, record the skips,
then pick one sale per person (their newest) and hand the chosen to delivery.

Every row the day reads gets exactly one decision, keyed by its sale and person
(``Sale.ref``): a row the POS mapping could not read is ``unreadable_row``, naming the
column (the value masked in the log), and the night goes on. Only a row without a
transaction id has no key to be decided under; it is counted and logged.

Order of proof: every sale's decision is written (skips per chunk, requests together with
their claim), every request of the day is settled, and only then is the day marked covered.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime
from logging import DEBUG

import structlog

from surveysync.ledger import DecisionRow, mask_email
from surveysync.model import Sale, SaleRef
from surveysync.pos import RowProblem
from surveysync.rules import Decision, RunChoices, SkipReason, decide
from surveysync.sync.context import RunContext
from surveysync.sync.delivery import Delivery, batches
from surveysync.sync.people import ChunkFacts, Eligible, People, email_key, person_tag
from surveysync.windows import DaySlice

log = structlog.get_logger("surveysync.sync")

Skip = tuple[Sale, tuple[str, ...], SkipReason]
_SAMPLE = 10  # transaction ids named in a log event


class DayReader:
    def __init__(self, ctx: RunContext, people: People, delivery: Delivery) -> None:
        self._ctx = ctx
        self._people = people
        self._delivery = delivery

    def process(self, day: DaySlice) -> None:
        ctx = self._ctx
        eligible: list[Eligible] = []
        rows = _DayRows()
        for chunk in ctx.pos.sales(day.start, day.end):
            ctx.check_stop()
            eligible.extend(self._decide_chunk(chunk, rows, day.start))
        eligible = self._without_repeated(eligible, rows, day)
        choices = RunChoices()
        for item in eligible:
            choices.offer(item.sale, item.keys)
        chosen: list[Eligible] = []
        losers: list[Eligible] = []
        for item in eligible:
            (chosen if choices.is_chosen(item.sale, item.keys) else losers).append(item)
        self._record_skips([(e.sale, e.keys, SkipReason.DUPLICATE_IN_RUN) for e in losers])
        for batch in batches(chosen, ctx.provider.max_batch_size):
            ctx.check_stop()
            self._delivery.claim_and_send(batch)
        ctx.ledger.runs.mark_covered(day.day, day.end, ctx.report.run_id)
        bisect.insort(ctx.report.days, day.day)
        ctx.progress("day", 1)
        log.info("day.covered", day=day.day.isoformat(), until=day.end.isoformat())

    def _decide_chunk(
        self, chunk: list[Sale | RowProblem], rows: _DayRows, day_start: datetime
    ) -> list[Eligible]:
        """Record the chunk's skips; return the sales that may be asked."""
        decided, already = self._decide(self._readable(chunk, rows, day_start))
        self._ctx.report.counts["already_decided"] += already
        skips: list[Skip] = []
        eligible: list[Eligible] = []
        for sale, facts, decision in decided:
            keys = facts.keys[sale.ref]
            if log.is_enabled_for(DEBUG):  # one event per sale: built only when it is shown
                _log_decision(sale, facts, decision)
            if decision.reason is not None:
                skips.append((sale, keys, decision.reason))
            else:
                eligible.append(self._people.eligible(sale, facts))
        self._record_skips(skips)
        self._ctx.progress("sales", len(chunk))
        return eligible

    def _without_repeated(
        self, eligible: list[Eligible], rows: _DayRows, day: DaySlice
    ) -> list[Eligible]:
        """A sale the mapping yielded twice with different values (one row per address of a
        customer, say) is not asked: which row is right is the mapping's to say. Logged with
        the ids, decided ``repeated_row``."""
        if not rows.repeated:
            return eligible
        self._ctx.report.counts["repeated_rows"] += rows.repeated
        log.warning(
            "pos.rows_repeated",
            day=day.day.isoformat(),
            count=rows.repeated,
            conflicting=len(rows.conflicting),
            transaction_ids=sorted({ref[0] for ref in rows.conflicting})[:_SAMPLE],
            hint="the mapping must yield one row per sale and customer (surveysync check --sample)",
        )
        ambiguous = [e for e in eligible if e.sale.ref in rows.conflicting]
        self._record_skips([(e.sale, e.keys, SkipReason.REPEATED_ROW) for e in ambiguous])
        return [e for e in eligible if e.sale.ref not in rows.conflicting]

    def _decide(self, sales: list[Sale]) -> tuple[list[tuple[Sale, ChunkFacts, Decision]], int]:
        """Decide the sales the ledger has no final decision for; (decisions, how many had)."""
        ctx = self._ctx
        final = ctx.ledger.decisions.final([s.ref for s in sales])
        fresh = [s for s in sales if s.ref not in final]
        facts = self._people.facts(fresh)
        rules, tz, now = ctx.settings.rules, ctx.tz, ctx.now
        decided = [
            (sale, facts, decide(sale, self._people.history(sale, facts), rules, tz, now))
            for sale in fresh
        ]
        return decided, len(sales) - len(fresh)

    def _readable(
        self, chunk: list[Sale | RowProblem], rows: _DayRows, day_start: datetime
    ) -> list[Sale]:
        """The chunk's sales, each once; its unreadable rows are decided here."""
        sales: list[Sale] = []
        problems: list[DecisionRow] = []
        for item in chunk:
            if isinstance(item, RowProblem):
                problems.extend(self._unreadable(item, day_start))
            elif rows.first_time(item):
                sales.append(item)
        self._ctx.report.counts["sales_read"] += len(chunk)
        if problems:
            ctx = self._ctx
            ctx.ledger.decisions.record(ctx.report.run_id, problems, ctx.now)
            ctx.report.counts[SkipReason.UNREADABLE_ROW] += len(problems)
        return sales

    def _unreadable(self, problem: RowProblem, day_start: datetime) -> list[DecisionRow]:
        """The decision for a row the mapping could not read; none without a transaction id."""
        self._ctx.report.counts["unreadable_rows"] += 1
        log.warning(
            "pos.row_unreadable",
            transaction_id=problem.transaction_id,
            column=problem.column,
            problem=problem.problem,
        )
        if problem.transaction_id is None:
            return []
        return [
            DecisionRow(
                problem.transaction_id,
                problem.sale_at or day_start,  # the day it was read in, when its time is bad
                problem.customer_id,
                None,
                problem.location_id,
                SkipReason.UNREADABLE_ROW,
                detail=problem.column,
            )
        ]

    def _record_skips(self, skips: Sequence[Skip]) -> None:
        rows = [
            DecisionRow(
                sale.transaction_id,
                sale.sale_at,
                sale.customer_id,
                email_key(keys),
                sale.location_id,
                reason,
            )
            for sale, keys, reason in skips
        ]
        ctx = self._ctx
        ctx.ledger.decisions.record(ctx.report.run_id, rows, ctx.now)
        ctx.report.counts.update(str(reason) for _, _, reason in skips)
        ctx.progress("skipped", len(skips))


class _DayRows:
    """The sales a day has read, to tell a row the mapping yields twice: the same values
    again (a join that multiplies rows) is harmless, other values make the sale ambiguous."""

    def __init__(self) -> None:
        # ref -> hash of the first row's values: a busy day's rows are not kept alive.
        self._first: dict[SaleRef, int] = {}
        self.repeated = 0
        self.conflicting: set[SaleRef] = set()

    def first_time(self, sale: Sale) -> bool:
        values = hash(sale)
        first = self._first.get(sale.ref)
        if first is None:
            self._first[sale.ref] = values
            return True
        self.repeated += 1
        if first != values:
            self.conflicting.add(sale.ref)
        return False


def _log_decision(sale: Sale, facts: ChunkFacts, decision: Decision) -> None:
    email = facts.emails.get(sale.ref)
    log.debug(
        "sale.decided",
        transaction_id=sale.transaction_id,
        customer_id=sale.customer_id,
        person=person_tag(facts.keys[sale.ref]),
        email=mask_email(email) if email else None,
        decision="request" if decision.reason is None else "skip",
        reason=str(decision.reason) if decision.reason else None,
    )


def count_unplaced(ctx: RunContext) -> None:
    """Once per run: the POS rows no window reads (a sale time that is empty or no time at
    all), counted in the report and logged with a few of their ids, never lost in silence."""
    found = ctx.pos.unplaced()
    if found is None or not found.count:
        return
    ctx.report.counts["unplaced_rows"] = found.count
    log.warning(
        "pos.rows_unplaced",
        count=found.count,
        transaction_ids=list(found.sample_ids),
        hint="their finalized and creation times are empty or not times; fix them in the POS",
    )
