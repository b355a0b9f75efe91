"""Claims: who may be asked. A person's cooldown and the pending request that asks them are
written in one transaction, with a compare-and-set, so two processes sharing the ledger can
never both claim one person.

Each person key (``e:`` email hash, ``c:`` customer) has one cooldown row naming the request
that started it. A claim replaces it only if it still names what the rules were decided on;
a claim that is given back (a refused email) restores exactly what it replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, select, update

from surveysync.ledger.db import LedgerDb, chunks
from surveysync.ledger.decisions import DecisionRow, Decisions
from surveysync.ledger.driver_sql import (
    placeholder,
    placeholders,
    run_many,
    time_reader,
    time_writer,
)
from surveysync.ledger.schema import cooldowns
from surveysync.ledger.suppressions import suppressed_keys
from surveysync.model import RequestStatus
from surveysync.rules import SkipReason


@dataclass(frozen=True, slots=True)
class CooldownRow:
    """The request that started a person key's cooldown."""

    last_request_at: datetime
    request_id: str
    run_id: str | None  # None only if the request row is gone


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a request keeps after it is settled, for reports, alerts and follow-ups."""

    location_name: str | None = None
    employee_name: str | None = None
    locale: str | None = None
    first_name: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A sale that passed every rule, with the cooldown rows its rules were decided on."""

    request_id: str
    transaction_id: str
    sale_at: datetime
    customer_id: str | None
    location_id: str | None
    person_key: str
    keys: tuple[str, ...]
    seen: dict[str, str | None]  # cooldown key -> request_id read when deciding
    email: str
    email_masked: str
    payload: dict[str, Any]
    facts: RequestFacts = RequestFacts()

    def decision(self, reason: SkipReason | None) -> DecisionRow:
        request_id = self.request_id if reason is None else None
        return DecisionRow(
            self.transaction_id,
            self.sale_at,
            self.customer_id,
            self.person_key,
            self.location_id,
            reason,
            request_id,
        )


class Claims:
    def __init__(self, db: LedgerDb, store: str, decisions: Decisions) -> None:
        self._db = db
        self._store = store
        self._decisions = decisions

    def known_about(
        self, person_keys: Iterable[str], transaction_keys: Iterable[str]
    ) -> tuple[dict[str, CooldownRow], set[str]]:
        """For one chunk of sales, in one read: who holds each person key's cooldown, and
        which of these person and transaction keys are suppressed."""
        people = sorted(set(person_keys))
        with self._db.reading() as conn:
            held = _cooldown_rows(conn, people)
            suppressed = suppressed_keys(conn, [*people, *sorted(set(transaction_keys))])
        return held, suppressed

    def claim(
        self, run_id: str, candidates: Sequence[Candidate], now: datetime
    ) -> tuple[list[Candidate], list[Candidate]]:
        """Claim the cooldown of each candidate and write its pending request, atomically.

        A candidate wins only if every one of its cooldown rows still holds what its rules
        were decided on (compare-and-set); losers are recorded as ``cooldown``.
        """
        if not candidates:
            return [], []
        with self._db.transaction() as conn:
            won, lost = _compare_and_set(conn, candidates, now)
            self._write_requests(conn, run_id, won, now)
            rows = [c.decision(None) for c in won] + [c.decision(SkipReason.COOLDOWN) for c in lost]
            self._decisions.write(conn, run_id, rows, now)
        return won, lost

    def _write_requests(
        self, conn: Connection, run_id: str, won: Sequence[Candidate], now: datetime
    ) -> None:
        stored = time_writer(conn)
        created, store, pending = stored(now), self._store, str(RequestStatus.PENDING)
        rows = [
            (
                c.request_id,
                store,
                c.transaction_id,
                run_id,
                c.person_key,
                c.customer_id,
                pending,
                c.email,
                c.email_masked,
                json.dumps(c.payload, ensure_ascii=False),
                created,
                stored(c.sale_at),
                c.location_id,
                c.facts.location_name,
                c.facts.employee_name,
                c.facts.locale,
                c.facts.first_name,
            )
            for c in won
        ]
        sql = (
            f"INSERT INTO requests ({', '.join(_REQUEST_COLUMNS)}) "
            f"VALUES ({placeholders(conn, len(_REQUEST_COLUMNS))})"
        )
        run_many(conn, sql, rows)


_REQUEST_COLUMNS = (
    "id",
    "store",
    "transaction_id",
    "run_id",
    "person_key",
    "customer_id",
    "status",
    "email",
    "email_masked",
    "payload",
    "created_at",
    "sale_at",
    "location_id",
    "location_name",
    "employee_name",
    "locale",
    "first_name",
)


def _cooldown_rows(conn: Connection, keys: Sequence[str]) -> dict[str, CooldownRow]:
    found: dict[str, CooldownRow] = {}
    read_time = time_reader(conn)
    for part in chunks(keys):
        sql = (
            "SELECT c.person_key, c.last_request_at, c.request_id, r.run_id FROM cooldowns c "
            "LEFT OUTER JOIN requests r ON r.id = c.request_id "
            f"WHERE c.person_key IN ({placeholders(conn, len(part))})"
        )
        for key, at, request_id, run_id in conn.exec_driver_sql(sql, tuple(part)):
            found[key] = CooldownRow(read_time(at), request_id, run_id)
    return found


def _compare_and_set(
    conn: Connection, candidates: Sequence[Candidate], now: datetime
) -> tuple[list[Candidate], list[Candidate]]:
    at = time_writer(conn)(now)
    # Rows are locked in key order, the same in every process: two processes claiming
    # overlapping people can wait for each other but never deadlock.
    params = sorted((key, at, c.request_id, c.seen.get(key)) for c in candidates for key in c.keys)
    run_many(conn, _claim_sql(conn), params)
    holders = _holders(conn, [p[0] for p in params])
    won: list[Candidate] = []
    lost: list[Candidate] = []
    for c in candidates:
        (won if all(holders.get(k) == c.request_id for k in c.keys) else lost).append(c)
    give_back(
        conn, [(k, c.request_id) for c in lost for k in c.keys if holders.get(k) == c.request_id]
    )
    return won, lost


def _holders(conn: Connection, keys: Sequence[str]) -> dict[str, str]:
    held: dict[str, str] = {}
    for part in chunks(keys):
        sql = (
            "SELECT person_key, request_id FROM cooldowns "
            f"WHERE person_key IN ({placeholders(conn, len(part))})"
        )
        held.update((key, rid) for key, rid in conn.exec_driver_sql(sql, tuple(part)))
    return held


def give_back(conn: Connection, held: Sequence[tuple[str, str]]) -> None:
    """Undo claims (person key, request id): restore what each cooldown row held before, or
    drop a row the claim created."""
    if not held:
        return
    params = [{"k": key, "rid": request_id} for key, request_id in sorted(held)]
    mine = and_(
        cooldowns.c.person_key == bindparam("k"), cooldowns.c.request_id == bindparam("rid")
    )
    conn.execute(delete(cooldowns).where(mine, cooldowns.c.prev_request_id.is_(None)), params)
    conn.execute(
        update(cooldowns)
        .where(mine)
        .values(
            last_request_at=cooldowns.c.prev_request_at,
            request_id=cooldowns.c.prev_request_id,
            prev_request_at=None,
            prev_request_id=None,
        ),
        params,
    )


def release(conn: Connection, request_ids: Sequence[str]) -> None:
    """Give back every cooldown these requests hold: they never reached the person."""
    held: list[tuple[str, str]] = []
    for part in chunks(request_ids):
        query = select(cooldowns.c.person_key, cooldowns.c.request_id).where(
            cooldowns.c.request_id.in_(part)
        )
        held.extend((row[0], row[1]) for row in conn.execute(query))
    give_back(conn, held)


def _claim_sql(conn: Connection) -> str:
    """Claim a person key: (key, time, request id, the request id its rules read)."""
    return (
        "INSERT INTO cooldowns (person_key, last_request_at, request_id) "
        f"VALUES ({placeholders(conn, 3)}) "
        "ON CONFLICT (person_key) DO UPDATE SET "
        "prev_request_at = cooldowns.last_request_at, prev_request_id = cooldowns.request_id, "
        "last_request_at = excluded.last_request_at, request_id = excluded.request_id "
        # The compare-and-set: only if nobody claimed this person since we looked.
        f"WHERE cooldowns.request_id = {placeholder(conn)}"
    )
