"""What the crash harness checks after its final clean sync, and how it explains a failure.

The promises (README, issue 11), each read from the ledger (plain SQL), the POS and the
receiver's durable record, and a reference: the same POS run once, in process, on a fresh
ledger with a provider that takes everything (and refuses the receiver's bad addresses)::

    duplicates          no request delivered twice (under two keys: one key delivers once)
    people_twice        no person (address) asked twice within the cooldown
    decisions           every sale read has exactly one decision; a request decision names
                        one request of that sale, and every request has its decision
    unsettled           nothing left ``sending`` or ``pending``
    sent_not_held       ledger ``sent`` but the receiver never took it: a loss
    held_not_sent       the receiver took it but the ledger says otherwise (in_doubt, ...)
    missing_people      a person the reference asked, neither asked nor in_doubt: a loss
    unexpected_people   asked here, not by the reference
    repeats_differ      one key, two bodies: a repeat that is not byte-identical (also when
                        the receiver had not taken the key, since the client cannot know)
    conflicts           of those, the ones the receiver had taken: answered 409
    key_changes         a request the receiver had taken, sent again under another key

The first eight are the issue's properties; the last three say why a duplicate or an
in_doubt happened (item 1: a key that changed; item 2: a repeat that was not identical).

It only reads; it never changes the ledger, the POS or the record.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import create_engine

from surveysync.config import Settings, load_settings
from surveysync.model import RequestStatus
from surveysync.providers import OutgoingEmail, SendResult
from surveysync.sync import SyncRequest, run_sync
from tests.crash_harness import CrashRun, SyncResult
from tests.crash_shop import BAD_MARKER

PROPERTIES = (
    "duplicates",
    "people_twice",
    "decisions",
    "unsettled",
    "sent_not_held",
    "held_not_sent",
    "missing_people",
    "unexpected_people",
    "repeats_differ",
    "conflicts",
    "key_changes",
)
# A sync's own events, shown in every story that sync is part of.
_RUN_EVENTS = {"run.started", "run.failed", "run.finished", "requests.resumed", "requests.in_doubt"}
# Provider events, shown when within 2 s of a call that carried the request.
_CALL_EVENTS = {
    "http.retry",
    "http.wait_too_long",
    "http.batch_refused",
    "http.in_doubt",
    "http.key_conflict",
    "provider.result_missing",
}


@dataclass(frozen=True)
class Post:
    seq: int
    at: float
    key: str
    body_sha: str
    request_ids: tuple[str, ...]
    fault: str | None
    outcome: str
    status: int | None


@dataclass(frozen=True)
class Delivery:
    request_id: str
    key: str
    to_addr: str
    post_seq: int


@dataclass(frozen=True)
class LedgerRequest:
    request_id: str
    transaction_id: str
    person_key: str
    status: str
    batch_key: str | None
    error: str | None


@dataclass
class Evidence:
    """Everything the checks read, read once."""

    sales: list[str]  # transaction ids in the POS
    requests: dict[str, LedgerRequest]
    decisions: dict[str, tuple[str | None, str | None]]  # transaction -> (reason, request id)
    posts: list[Post]
    deliveries: list[Delivery]
    receiver_events: list[tuple[float, str, int | None, str]]
    reference: dict[str, str]  # person key -> "sent" | "rejected"


@dataclass
class Findings:
    violations: dict[str, list[str]] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)

    def of(self, name: str) -> list[str]:
        return self.violations.get(name, [])


# --- reading -------------------------------------------------------------------------------


def gather(run: CrashRun, now: datetime) -> Evidence:
    with contextlib.closing(sqlite3.connect(run.root / "pos.sqlite")) as pos:
        sales = [str(row[0]) for row in pos.execute("SELECT id FROM transactions")]
    requests, decisions = read_ledger(run.ledger_url)
    posts, deliveries, events = read_record(run.root / "receiver.sqlite")
    reference = reference_people(run.config_path, run.root / "reference.sqlite", now)
    return Evidence(sales, requests, decisions, posts, deliveries, events, reference)


def read_ledger(
    url: str,
) -> tuple[dict[str, LedgerRequest], dict[str, tuple[str | None, str | None]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT id, transaction_id, person_key, status, batch_key, error FROM requests"
            ).fetchall()
            decided = conn.exec_driver_sql(
                "SELECT transaction_id, reason, request_id FROM decisions"
            ).fetchall()
    finally:
        engine.dispose()
    requests = {
        str(r[0]): LedgerRequest(str(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], r[5])
        for r in rows
    }
    return requests, {str(d[0]): (d[1], d[2]) for d in decided}


def read_record(
    path: Path,
) -> tuple[list[Post], list[Delivery], list[tuple[float, str, int | None, str]]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        posts = [
            Post(seq, at, key or "", sha, tuple(json.loads(ids)), fault, outcome, status)
            for seq, at, key, sha, ids, fault, outcome, status in conn.execute(
                "SELECT seq, at, key, body_sha, request_ids, fault, outcome, status FROM posts"
                " ORDER BY seq"
            )
        ]
        deliveries = [
            Delivery(*row)
            for row in conn.execute(
                "SELECT request_id, key, to_addr, post_seq FROM deliveries ORDER BY id"
            )
        ]
        events = list(conn.execute("SELECT at, kind, seq, detail FROM events ORDER BY id"))
    return posts, deliveries, events


class _ReferenceProvider:
    """Takes every email but the receiver's bad addresses, as a fault-free receiver would."""

    name = "reference"
    max_batch_size = 500
    honours_idempotency_key = True
    renders_templates = False

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        return [
            SendResult(
                e.request_id,
                RequestStatus.REJECTED
                if e.message.recipient.addr_spec.lower().startswith(BAD_MARKER)
                else RequestStatus.SENT,
            )
            for e in batch
        ]

    def check(self) -> str:
        return "reference"

    def close(self) -> None:
        return None


def reference_people(config_path: Path, ledger_path: Path, now: datetime) -> dict[str, str]:
    """Person key -> what one clean run over the same POS did: "sent" or "rejected"."""
    ledger_path.unlink(missing_ok=True)
    settings = load_settings(config_path)
    ledger = settings.ledger.model_copy(update={"url": SecretStr(f"sqlite:///{ledger_path}")})
    reference: Settings = settings.model_copy(update={"ledger": ledger})
    run_sync(reference, SyncRequest(now=now), provider=_ReferenceProvider())
    requests, _ = read_ledger(f"sqlite:///{ledger_path}")
    return {r.person_key: r.status for r in requests.values()}


# --- checking ------------------------------------------------------------------------------


def check(evidence: Evidence) -> Findings:
    findings = Findings()
    v = findings.violations
    v["duplicates"], v["key_changes"] = _duplicates(evidence)
    v["people_twice"] = _people_twice(evidence)
    v["decisions"] = _decisions(evidence)
    v["unsettled"] = [
        f"{r.request_id} left {r.status}"
        for r in evidence.requests.values()
        if r.status in (RequestStatus.SENDING, RequestStatus.PENDING)
    ]
    v["sent_not_held"], v["held_not_sent"] = _sent_vs_held(evidence)
    v["missing_people"], v["unexpected_people"] = _people(evidence)
    v["repeats_differ"] = _repeats_differ(evidence)
    v["conflicts"] = [
        f"call {p.seq}: key {p.key[:12]} repeated with another body ({len(p.request_ids)} msgs)"
        for p in evidence.posts
        if p.outcome == "conflict"
    ]
    findings.stats = _stats(evidence)
    return findings


def _duplicates(evidence: Evidence) -> tuple[list[str], list[str]]:
    keys: dict[str, list[str]] = defaultdict(list)
    first_taken: dict[str, tuple[int, str]] = {}
    for d in evidence.deliveries:
        keys[d.request_id].append(d.key)
        first_taken.setdefault(d.request_id, (d.post_seq, d.key))
    duplicates = [
        f"{rid} delivered {len(ks)} times, under keys {', '.join(k[:12] for k in ks)}"
        for rid, ks in keys.items()
        if len(ks) > 1
    ]
    changes = []
    for p in evidence.posts:
        for rid in p.request_ids:
            taken = first_taken.get(rid)
            # A call refused whole for a bad address took nothing; any other may have.
            later = taken is not None and p.seq > taken[0] and p.outcome != "bad_address"
            if taken is not None and later and p.key != taken[1]:
                changes.append(
                    f"{rid} taken in call {taken[0]} under {taken[1][:12]}, sent again in "
                    f"call {p.seq} under {p.key[:12]} ({p.outcome})"
                )
    return duplicates, changes


def _repeats_differ(evidence: Evidence) -> list[str]:
    first: dict[str, Post] = {}
    found = []
    for p in evidence.posts:
        if not p.key:
            continue
        earlier = first.setdefault(p.key, p)
        if p.body_sha != earlier.body_sha:
            found.append(
                f"key {p.key[:12]}: call {p.seq} ({p.outcome}) differs from call {earlier.seq}"
                f" ({earlier.outcome}); order kept: {p.request_ids == earlier.request_ids}"
            )
    return found


def _people_twice(evidence: Evidence) -> list[str]:
    asked: dict[str, set[str]] = defaultdict(set)
    for d in evidence.deliveries:
        asked[d.to_addr].add(d.request_id)
    return [
        f"{addr.split('@')[0][:3]}…: requests {', '.join(sorted(rids))}"
        for addr, rids in asked.items()
        if len(rids) > 1
    ]


def _decisions(evidence: Evidence) -> list[str]:
    problems = [f"sale {t} has no decision" for t in evidence.sales if t not in evidence.decisions]
    by_sale: dict[str, list[str]] = defaultdict(list)
    for r in evidence.requests.values():
        by_sale[r.transaction_id].append(r.request_id)
    for sale, rids in by_sale.items():
        reason, request_id = evidence.decisions.get(sale, ("missing", None))
        if len(rids) > 1:
            problems.append(f"sale {sale} has {len(rids)} requests")
        if reason is not None or request_id not in rids:
            problems.append(f"sale {sale}: request {rids[0]} but decision {reason}/{request_id}")
    return problems


def _sent_vs_held(evidence: Evidence) -> tuple[list[str], list[str]]:
    held = {d.request_id for d in evidence.deliveries}
    sent = {r.request_id for r in evidence.requests.values() if r.status == RequestStatus.SENT}
    lost = [f"{rid} is sent in the ledger; the receiver never took it" for rid in sent - held]
    unknown = [
        f"{rid} taken by the receiver; ledger says "
        f"{evidence.requests[rid].status if rid in evidence.requests else 'nothing'}"
        for rid in sorted(held - sent)
    ]
    return lost, unknown


def _people(evidence: Evidence) -> tuple[list[str], list[str]]:
    statuses: dict[str, set[str]] = defaultdict(set)
    for r in evidence.requests.values():
        statuses[r.person_key].add(r.status)
    reached = {RequestStatus.SENT.value, RequestStatus.IN_DOUBT.value}
    missing = [
        f"person {key[:14]}: reference {status}, here {sorted(statuses.get(key, set())) or 'none'}"
        for key, status in evidence.reference.items()
        if (status == "sent" and not statuses.get(key, set()) & reached)
        or (status == "rejected" and "rejected" not in statuses.get(key, set()))
    ]
    unexpected = [
        f"person {key[:14]}: here {sorted(found)}, reference "
        f"{evidence.reference.get(key, 'not asked')}"
        for key, found in statuses.items()
        if found & reached and evidence.reference.get(key) != "sent"
    ]
    return missing, unexpected


def _stats(evidence: Evidence) -> Counter[str]:
    stats: Counter[str] = Counter()
    stats["calls"] = len(evidence.posts)
    stats.update(f"fault:{p.fault}" for p in evidence.posts if p.fault)
    stats.update(f"outcome:{p.outcome}" for p in evidence.posts)
    stats["receiver_deaths"] = sum(1 for e in evidence.receiver_events if e[1] == "dying")
    stats["receiver_errors"] = sum(
        1 for e in evidence.receiver_events if e[1] in ("receiver_error", "bad_signature")
    )
    stats["delivered"] = len({d.request_id for d in evidence.deliveries})
    stats["sales"] = len(evidence.sales)
    stats.update(f"ledger:{r.status}" for r in evidence.requests.values())
    held = {d.request_id for d in evidence.deliveries}
    stats["in_doubt_delivered"] = sum(
        1 for r in evidence.requests.values() if r.status == "in_doubt" and r.request_id in held
    )
    return stats


# --- explaining ----------------------------------------------------------------------------


def story(request_id: str, evidence: Evidence, syncs: Sequence[SyncResult]) -> list[str]:
    """What happened to one request, in time order: the calls that carried it, the syncs
    around them (started, killed, ended), the receiver's deaths, and the sync log events."""
    lines: list[tuple[float, str]] = []
    posts = [p for p in evidence.posts if request_id in p.request_ids]
    if not posts:
        return [f"{request_id}: never reached the receiver"]
    first = posts[0].at - 0.5
    for p in posts:
        lines.append(
            (
                p.at,
                f"call {p.seq}: key {p.key[:12]}, {len(p.request_ids)} msg(s), "
                f"fault {p.fault or '-'}, {p.outcome} ({p.status})",
            )
        )
    for at, kind, seq, detail in evidence.receiver_events:
        if kind in ("dying", "started") and first <= at <= posts[-1].at + 1:
            lines.append((at, f"receiver {kind} {detail} (call {seq})"))
    for s in syncs:
        if s.ended < first or s.started > posts[-1].at:
            continue
        end = f"killed ({s.kill})" if s.killed else f"exit {s.exit_code}"
        lines.append((s.started, f"sync {s.index} starts"))
        lines.append((s.killed_at or s.ended, f"sync {s.index} ends: {end}"))
        lines.extend(_log_lines(s, request_id, [p.at for p in posts]))
    ledger = evidence.requests.get(request_id)
    tail = (
        f"ledger: {ledger.status}, batch_key {str(ledger.batch_key)[:12]}, {ledger.error}"
        if ledger
        else "ledger: no such request"
    )
    ordered = [
        f"  {datetime.fromtimestamp(at, UTC):%H:%M:%S.%f}"[:-3] + f"  {text}"
        for at, text in sorted(lines)
    ]
    return [f"{request_id}:", *ordered, f"  {tail}"]


def _log_lines(
    sync: SyncResult, request_id: str, moments: Sequence[float]
) -> list[tuple[float, str]]:
    """The sync's log events about this request, and its provider events within 2 s of a
    call that carried it."""
    found: list[tuple[float, str]] = []
    for line in sync.log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        at = datetime.fromisoformat(str(event.get("timestamp", "")).replace("Z", "+00:00"))
        stamp = at.timestamp() - sync.clock_offset
        mine = event.get("request_id") == request_id
        nearby = event.get("event") in _RUN_EVENTS or (
            event.get("event") in _CALL_EVENTS and any(abs(stamp - m) <= 2.0 for m in moments)
        )
        if mine or nearby:
            extra = {
                k: v
                for k, v in event.items()
                if k not in ("timestamp", "event", "level", "run_id", "store")
            }
            found.append((stamp, f"sync {sync.index} log: {event.get('event')} {extra}"))
    return found


# --- why -----------------------------------------------------------------------------------


class _Syncs:
    """Which sync made a call, and how each sync ended (read from its log once)."""

    def __init__(self, syncs: Sequence[SyncResult]) -> None:
        self._syncs = list(syncs)
        self._lost: dict[int, bool] = {}

    def at(self, moment: float) -> SyncResult | None:
        return next((s for s in self._syncs if s.started <= moment <= s.ended), None)

    def provider_lost(self, sync: SyncResult) -> bool:
        """The run failed because the provider could not be reached (ProviderUnavailable)."""
        if sync.index not in self._lost:
            text = sync.log.read_text(encoding="utf-8", errors="replace")
            self._lost[sync.index] = '"error_type": "ProviderUnavailable"' in text
        return self._lost[sync.index]

    def last_provider_lost(
        self, first: SyncResult | None, until: SyncResult | None, carried: set[int]
    ) -> SyncResult | None:
        """The last sync from ``first`` up to (not including) ``until`` that made a call
        carrying the request (its index in ``carried``) and then lost the provider: that
        sync put the request back to pending."""
        if first is None or until is None:
            return None
        between = [s for s in self._syncs if first.index <= s.index < until.index]
        return next(
            (s for s in reversed(between) if s.index in carried and self.provider_lost(s)),
            None,
        )

    def carrying(self, request_id: str, posts: Sequence[Post], before: int) -> set[int]:
        """The syncs that made a call carrying this request before call ``before``."""
        return {
            s.index
            for p in posts
            if p.seq < before and request_id in p.request_ids and (s := self.at(p.at))
        }

    def ending(self, sync: SyncResult | None) -> str:
        if sync is None:
            return "no sync"
        if self.provider_lost(sync):  # also when killed afterwards, while it closed
            return "provider lost"
        return "killed" if sync.killed else f"exit {sync.exit_code}"


def causes(evidence: Evidence, syncs: Sequence[SyncResult]) -> dict[str, list[str]]:
    """Each duplicate and each repeat answered 409, sorted by the path that led to it, with
    the calls that show it: the evidence behind the findings."""
    known = _Syncs(syncs)
    found: dict[str, list[str]] = defaultdict(list)
    taken: dict[str, Post] = {}
    by_key: dict[str, list[Post]] = defaultdict(list)
    for p in evidence.posts:
        by_key[p.key].append(p)
        if p.outcome == "delivered":
            for rid in p.request_ids:
                if rid in taken:
                    cause, example = _duplicate_cause(rid, taken[rid], p, evidence.posts, known)
                    found[cause].append(example)
                taken.setdefault(rid, p)
        elif p.outcome == "conflict":
            cause, example = _conflict_cause(p, by_key[p.key], evidence.posts, known)
            found[cause].append(example)
    return dict(found)


def _duplicate_cause(
    rid: str, first: Post, again: Post, posts: Sequence[Post], known: _Syncs
) -> tuple[str, str]:
    """Only one path gives a request a new key: it went back to pending when a run lost the
    provider (ProviderUnavailable). Which run, and how the one that had it taken ended."""
    sync_a, sync_b = known.at(first.at), known.at(again.at)
    lost = known.last_provider_lost(sync_a, sync_b, known.carrying(rid, posts, again.seq))
    alone = len(first.request_ids) == 1
    when = (
        "in that same sync"
        if lost is not None and lost is sync_a
        else f"in a later sync ({lost.index})"
        if lost is not None
        else "(no sync lost the provider: unexplained)"
    )
    cause = (
        f"duplicate: taken {'alone (batch refused 400, split)' if alone else 'in a batch'}, "
        f"its sync {known.ending(sync_a)}; back to pending when a sync lost the provider; "
        "sent again under a new key"
    )
    example = (
        f"{rid}: taken in call {first.seq} (key {first.key[:12]}, "
        f"{len(first.request_ids)} msgs, sync {_index(sync_a)}: {known.ending(sync_a)}), "
        f"back to pending {when}, again in call {again.seq} (key {again.key[:12]}, "
        f"{len(again.request_ids)} msgs, sync {_index(sync_b)})"
    )
    return cause, example


def _index(sync: SyncResult | None) -> str:
    return str(sync.index) if sync is not None else "?"


def _conflict_cause(
    p: Post, calls: list[Post], posts: list[Post], known: _Syncs
) -> tuple[str, str]:
    first = next(c for c in calls if c.outcome == "delivered")
    sync_a, sync_b = known.at(first.at), known.at(p.at)
    # Calls that carried these requests in other syncs before this one, under any key:
    # each was a repeat whose mark_sending moved sending_at.
    rid = p.request_ids[0]
    repeats = sorted(
        {
            s.index
            for c in posts
            if c.seq < p.seq and rid in c.request_ids and (s := known.at(c.at)) is not None
        }
        - {sync_b.index if sync_b else -1}
    )
    order = "same order" if p.request_ids == first.request_ids else "another order"
    if known.last_provider_lost(sync_a, sync_b, known.carrying(rid, posts, p.seq)):
        cause = f"409: back to pending when a sync lost the provider, same key, {order}"
    elif order == "another order":
        cause = "409: repeated after a crash, the messages in another order"
    elif len(repeats) > 1:
        cause = "409: same order, re-rendered as of a later repeat's sending_at"
    else:
        cause = f"409: same order, re-rendered; the first call's sync {known.ending(sync_a)}"
    example = (
        f"key {p.key[:12]} ({len(p.request_ids)} msgs): taken in call {first.seq} (sync "
        f"{sync_a.index if sync_a else '?'}: {known.ending(sync_a)}), repeated in call "
        f"{p.seq} (sync {sync_b.index if sync_b else '?'}); earlier syncs that sent these "
        f"requests: {repeats}"
    )
    return cause, example
