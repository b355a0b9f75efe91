"""Answers for people: ``status`` (how are the nights going?) and ``explain`` (why did this
customer get, or not get, a survey, and what became of it: ``ledger.activity``). Read-only
queries over the ledger.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from surveysync.ledger import activity
from surveysync.ledger.data_problems import PosDataProblem, pos_data_problems
from surveysync.ledger.schema import cooldowns, coverage, decisions, requests, runs, suppressions
from surveysync.ledger.store import Ledger
from surveysync.model import UNSETTLED
from surveysync.rules import next_eligible_at
from surveysync.windows import day_start


@dataclass(frozen=True, slots=True)
class RunRow:
    id: str
    kind: str
    status: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    counts: dict[str, int]
    error: str | None


@dataclass(frozen=True, slots=True)
class UnsettledRow:
    request_id: str
    status: str
    email_masked: str
    transaction_id: str
    created_at: datetime


@dataclass
class Status:
    store: str
    runs: list[RunRow]
    last_success: RunRow | None
    covered_until: datetime | None
    covered_days: list[date]
    missed_days: list[date]
    reasons: Counter[str]
    requests_by_status: Counter[str]
    unsettled: list[UnsettledRow] = field(default_factory=list)
    unsettled_total: int = 0  # all of them, when ``unsettled`` shows only the first ones
    pos_problems: list[PosDataProblem] = field(default_factory=list)  # in the days shown

    @property
    def failing(self) -> bool:
        """The latest run failed or crashed: monitoring should hear of it."""
        return bool(self.runs) and self.runs[0].status in ("failed", "crashed")

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "last_success": _run_dict(self.last_success) if self.last_success else None,
            "covered_until": _iso(self.covered_until),
            "covered_days": [d.isoformat() for d in self.covered_days],
            "missed_days": [d.isoformat() for d in self.missed_days],
            "decisions_by_reason": dict(self.reasons),
            "requests_by_status": dict(self.requests_by_status),
            "unsettled_total": self.unsettled_total,
            "unsettled": [
                {
                    "request_id": u.request_id,
                    "status": u.status,
                    "email": u.email_masked,
                    "transaction_id": u.transaction_id,
                    "created_at": _iso(u.created_at),
                }
                for u in self.unsettled
            ],
            "runs": [_run_dict(r) for r in self.runs],
            "pos_data_problems": [p.as_dict() for p in self.pos_problems],
        }


def status(
    ledger: Ledger, now: datetime, tz: ZoneInfo, days: int = 14, unsettled_limit: int | None = 50
) -> Status:
    """``unsettled_limit``: how many unsettled requests to list (None: every one)."""
    since = now.astimezone(tz).date() - timedelta(days=days - 1)
    recent = _recent_runs(ledger, 10)
    covered = _covered_days(ledger, since)
    by_status = _request_counts(ledger)
    return Status(
        store=ledger.store,
        runs=recent,
        last_success=_last_success(ledger),
        covered_until=ledger.runs.covered_end(),
        covered_days=covered,
        missed_days=_missed(covered, since, now.astimezone(tz).date(), ledger),
        reasons=reason_counts(ledger),
        requests_by_status=by_status,
        unsettled=_unsettled(ledger, unsettled_limit),
        unsettled_total=sum(by_status[s] for s in UNSETTLED),
        pos_problems=pos_data_problems(ledger, day_start(since, tz)),
    )


def _recent_runs(ledger: Ledger, limit: int) -> list[RunRow]:
    query = (
        select(runs)
        .where(runs.c.store == ledger.store, runs.c.dry_run.is_(False))
        .order_by(runs.c.started_at.desc())
        .limit(limit)
    )
    with ledger.reading() as conn:
        return [_run_row(row) for row in conn.execute(query).mappings()]


def _last_success(ledger: Ledger) -> RunRow | None:
    query = (
        select(runs)
        .where(
            runs.c.store == ledger.store, runs.c.status == "succeeded", runs.c.dry_run.is_(False)
        )
        .order_by(runs.c.started_at.desc())
        .limit(1)
    )
    with ledger.reading() as conn:
        row = conn.execute(query).mappings().first()
    return _run_row(row) if row else None


def _covered_days(ledger: Ledger, since: date) -> list[date]:
    query = (
        select(coverage.c.day)
        .where(coverage.c.store == ledger.store, coverage.c.day >= since)
        .order_by(coverage.c.day)
    )
    with ledger.reading() as conn:
        return list(conn.scalars(query))


def _missed(covered: list[date], since: date, today: date, ledger: Ledger) -> list[date]:
    """Days before today, after the store's first covered day, that no run has covered."""
    with ledger.reading() as conn:
        first = conn.scalar(
            select(func.min(coverage.c.day)).where(coverage.c.store == ledger.store)
        )
    if first is None:
        return []
    start = max(first, since)
    seen = set(covered)
    return [
        start + timedelta(days=n)
        for n in range((today - start).days)
        if start + timedelta(days=n) not in seen
    ]


def reason_counts(ledger: Ledger) -> Counter[str]:
    """Every sale the store's ledger has decided, by its decision (``requested`` or a reason)."""
    query = (
        select(decisions.c.reason, func.count())
        .where(decisions.c.store == ledger.store)
        .group_by(decisions.c.reason)
    )
    with ledger.reading() as conn:
        return Counter({(reason or "requested"): count for reason, count in conn.execute(query)})


def _request_counts(ledger: Ledger) -> Counter[str]:
    query = (
        select(requests.c.status, func.count())
        .where(requests.c.store == ledger.store)
        .group_by(requests.c.status)
    )
    with ledger.reading() as conn:
        return Counter({status: count for status, count in conn.execute(query)})


def _unsettled(ledger: Ledger, limit: int | None) -> list[UnsettledRow]:
    query = (
        select(
            requests.c.id,
            requests.c.status,
            requests.c.email_masked,
            requests.c.transaction_id,
            requests.c.created_at,
        )
        .where(requests.c.store == ledger.store, requests.c.status.in_(UNSETTLED))
        .order_by(requests.c.created_at, requests.c.id)
        .limit(limit)
    )
    with ledger.reading() as conn:
        return [UnsettledRow(*row) for row in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class RequestRow:
    """One survey request as a landing page or support sees it: no address, only its mask."""

    request_id: str
    store: str
    status: str
    transaction_id: str
    customer_id: str | None
    person_key: str
    email_masked: str
    created_at: datetime
    settled_at: datetime | None


def find_request(ledger: Ledger, request_id: str) -> RequestRow | None:
    """The request with this id, in whichever store sharing the ledger made it."""
    query = select(
        requests.c.id,
        requests.c.store,
        requests.c.status,
        requests.c.transaction_id,
        requests.c.customer_id,
        requests.c.person_key,
        requests.c.email_masked,
        requests.c.created_at,
        requests.c.settled_at,
    ).where(requests.c.id == request_id)
    with ledger.reading() as conn:
        row = conn.execute(query).first()
    return RequestRow(*row) if row else None


# --- explain ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Explanation:
    transaction_id: str
    sale_at: datetime
    location_id: str | None
    customer_id: str | None
    reason: str | None  # None: a survey request was made
    request_status: str | None
    next_eligible: datetime | None  # None: now, or never when unsubscribed
    unsubscribed: bool
    location_name: str | None = None  # as the request kept it (skips have only the id)
    sent_at: datetime | None = None  # when the provider took the email (sent requests)
    detail: str | None = None  # more about the reason: an unreadable row's column
    request_id: str | None = None
    survey: activity.SurveyActivity | None = None  # requests only: answer, review, reminder

    @property
    def decision(self) -> str:
        return "request" if self.reason is None else "skip"

    @property
    def rule(self) -> str:
        """The reason as shown: ``unreadable_row (finalized_at)``."""
        if self.reason is None:
            return "all rules passed"
        return f"{self.reason} ({self.detail})" if self.detail else self.reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "sale_at": _iso(self.sale_at),
            "location_id": self.location_id,
            "location_name": self.location_name,
            "customer_id": self.customer_id,
            "decision": self.decision,
            "reason": self.reason,
            "detail": self.detail,
            "request_id": self.request_id,
            "request_status": self.request_status,
            "sent_at": _iso(self.sent_at),
            "survey": _survey_dict(self.survey) if self.survey else None,
        }


@dataclass
class ExplainResult:
    subject: str
    rows: list[Explanation]
    covered_until: datetime | None
    suppressed: list[str]

    @property
    def next_eligible(self) -> datetime | None:
        return self.rows[-1].next_eligible if self.rows else None

    def as_dict(self) -> dict[str, Any]:
        """What ``explain --json`` prints: times in ISO 8601 with their offset."""
        return {
            "subject": self.subject,
            "covered_until": _iso(self.covered_until),
            "suppressed": self.suppressed,
            "next_eligible": None if self.suppressed else _iso(self.next_eligible),
            "sales": [row.as_dict() for row in self.rows],
        }


def _survey_dict(survey: activity.SurveyActivity) -> dict[str, Any]:
    answer, reminder = survey.answer, survey.reminder
    return {
        "answer": None
        if answer is None
        else {
            "status": answer.status.value,
            "counted": answer.counted,
            "score": answer.score,
            "comment": answer.comment,
            "first_seen_at": _iso(answer.first_seen_at),
            "answered_at": _iso(answer.answered_at),
            "settle_due_at": _iso(answer.settle_due_at),
        },
        "review_clicks": [_iso(at) for at in survey.review_clicks],
        "uncounted_visits": survey.uncounted_visits,
        "uncounted_since": _iso(survey.uncounted_since),
        "reminder": None
        if reminder is None
        else {"kind": reminder.kind, "status": reminder.status, "sent_at": _iso(reminder.sent_at)},
    }


def explain(
    ledger: Ledger,
    *,
    email_key: str | None = None,
    customer_id: str | None = None,
    transaction_id: str | None = None,
    cooldown_months: int,
    tz: ZoneInfo,
    now: datetime,
) -> ExplainResult:
    """Every recorded decision for one person (by email or customer id) or one transaction,
    and for each survey request what became of it, as of ``now``."""
    condition, subject, person_keys = _subject(ledger, email_key, customer_id, transaction_id)
    with ledger.reading() as conn:
        found = (
            conn.execute(
                select(
                    decisions,
                    requests.c.status.label("request_status"),
                    requests.c.location_name,
                    requests.c.settled_at,
                )
                .outerjoin(requests, requests.c.id == decisions.c.request_id)
                .where(decisions.c.store == ledger.store, condition)
                .order_by(decisions.c.sale_at)
            )
            .mappings()
            .all()
        )
    person_keys |= {k for row in found for k in _row_keys(ledger, row)}
    suppressed = _suppression_sources(ledger, person_keys)
    next_at = _next_eligible(ledger, person_keys, cooldown_months, tz, now)
    asked = [row["request_id"] for row in found if row["request_id"]]
    surveys = activity.for_requests(ledger, asked, now)
    rows = [
        Explanation(
            row["transaction_id"],
            row["sale_at"],
            row["location_id"],
            row["customer_id"],
            row["reason"],
            row["request_status"],
            next_at,
            bool(suppressed),
            row["location_name"],
            row["settled_at"] if row["request_status"] == "sent" else None,
            row["detail"],
            row["request_id"],
            surveys.get(row["request_id"]),
        )
        for row in found
    ]
    return ExplainResult(subject, rows, ledger.runs.covered_end(), suppressed)


def _subject(
    ledger: Ledger, email_key: str | None, customer_id: str | None, transaction_id: str | None
) -> tuple[Any, str, set[str]]:
    if email_key is not None:  # the keyed hash of the address: the ledger keeps no other
        return decisions.c.person_key == email_key, "that email address", {email_key}
    if customer_id is not None:
        return (
            decisions.c.customer_id == customer_id,
            f"customer {customer_id}",
            {ledger.keys.customer(customer_id)},
        )
    assert transaction_id is not None
    return decisions.c.transaction_id == transaction_id, f"transaction {transaction_id}", set()


def _row_keys(ledger: Ledger, row: Any) -> set[str]:
    keys = {row["person_key"]} if row["person_key"] else set()
    if row["customer_id"]:
        keys.add(ledger.keys.customer(row["customer_id"]))
    return keys


def _suppression_sources(ledger: Ledger, keys: set[str]) -> list[str]:
    if not keys:
        return []
    with ledger.reading() as conn:
        found = conn.execute(
            select(suppressions.c.kind, suppressions.c.source, suppressions.c.display).where(
                suppressions.c.key.in_(sorted(keys))
            )
        ).all()
    return [f"{display} (by {source})" for _kind, source, display in found]


def _next_eligible(
    ledger: Ledger, keys: set[str], months: int, tz: ZoneInfo, now: datetime
) -> datetime | None:
    if not keys:
        return None
    with ledger.reading() as conn:
        last = conn.scalar(
            select(func.max(cooldowns.c.last_request_at)).where(
                cooldowns.c.person_key.in_(sorted(keys))
            )
        )
    if last is None:
        return None
    eligible = next_eligible_at(last, months, tz)
    return eligible if eligible > now else None


def _run_row(row: Any) -> RunRow:
    return RunRow(
        row["id"],
        row["kind"],
        row["status"],
        row["dry_run"],
        row["started_at"],
        row["finished_at"],
        row["window_start"],
        row["window_end"],
        json.loads(row["counts"] or "{}"),
        row["error"],
    )


def _run_dict(run: RunRow) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "window_start": _iso(run.window_start),
        "window_end": _iso(run.window_end),
        "counts": run.counts,
        "error": run.error,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
