"""Survey requests on their way out: pending -> sending -> sent | failed | rejected, or
in_doubt after a crash.

``sending`` is committed before a provider is called, with the call's batch key, so that
after a crash we know what was in flight and in which call. Settling forgets the address
(and the render data) of every request that is done, and gives back the cooldown of one
that never reached the person. A request settled sent that reminders may follow first hands
its address to them (``ledger.reminders.keep_addresses``), in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from surveysync.ledger.claims import release
from surveysync.ledger.db import LedgerDb
from surveysync.ledger.driver_sql import placeholder, run_many, time_writer
from surveysync.ledger.reminders import keep_addresses
from surveysync.ledger.schema import requests
from surveysync.model import RequestStatus
from surveysync.reminder_rules import ReminderPlan


@dataclass(frozen=True, slots=True)
class Settlement:
    request_id: str
    status: RequestStatus  # sent | failed | rejected | pending (nothing left the building)
    provider_message_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Claimable:
    """A request waiting to be sent: what render and the provider need."""

    request_id: str
    email: str
    payload: dict[str, Any]
    batch_key: str | None = None  # set while in flight: the provider call it went out in
    sending_at: datetime | None = None  # when that call was made
    person_key: str | None = None  # the person it asks (for the log)


class Requests:
    def __init__(self, db: LedgerDb, store: str) -> None:
        self._db = db
        self._store = store

    def unsent(self, status: RequestStatus, limit: int) -> list[Claimable]:
        """Requests of this store in ``status`` (pending, or sending after a crash)."""
        query = (
            select(
                requests.c.id,
                requests.c.email,
                requests.c.payload,
                requests.c.batch_key,
                requests.c.sending_at,
                requests.c.person_key,
            )
            .where(requests.c.store == self._store, requests.c.status == status)
            # A call left in flight is repeated in the order it was made (batch_seq); a
            # claim's requests share created_at, so the id only makes the order stable.
            .order_by(
                requests.c.batch_key, requests.c.batch_seq, requests.c.created_at, requests.c.id
            )
            .limit(limit)
        )
        with self._db.reading() as conn:
            return [
                Claimable(
                    row.id,
                    row.email,
                    json.loads(row.payload or "{}"),
                    row.batch_key,
                    row.sending_at,
                    row.person_key,
                )
                for row in conn.execute(query)
            ]

    def mark_sending(
        self, request_ids: Sequence[str], now: datetime, provider: str, batch_key: str
    ) -> None:
        """Committed before the provider is called: after a crash we know what was in flight,
        in which call and in which order, so that the call can be repeated exactly under its
        key. A repeat of the same call keeps the first attempt's ``sending_at`` (the emails
        are rendered as of it, so the repeat is the same body byte for byte)."""
        with self._db.transaction() as conn:
            at = time_writer(conn)(now)
            params = [
                (batch_key, at, provider, batch_key, seq, rid)
                for seq, rid in enumerate(request_ids)
            ]
            run_many(conn, _sending_sql(conn), params)

    def rekey(self, request_ids: Sequence[str], batch_key: str) -> None:
        """Requests that went out again in a call of their own (a refused batch split into
        single messages), under ``batch_key``: a repeat after a lost answer uses that key,
        in that order, rendered as of the same ``sending_at``."""
        self._set_keys([(rid, batch_key, n) for n, rid in enumerate(request_ids)])

    def rekey_each(self, keys: Sequence[tuple[str, str]]) -> None:
        """Each (request id, key): the request's next call is its own, under that key."""
        self._set_keys([(rid, key, 0) for rid, key in keys])

    def _set_keys(self, keys: Sequence[tuple[str, str, int]]) -> None:
        params = [{"rid": rid, "key": key, "seq": seq} for rid, key, seq in keys]
        with self._db.transaction() as conn:
            conn.execute(
                update(requests)
                .where(requests.c.id == bindparam("rid"))
                .values(batch_key=bindparam("key"), batch_seq=bindparam("seq")),
                params,
            )

    def mark_in_doubt(self, request_ids: Sequence[str]) -> None:
        if not request_ids:
            return
        with self._db.transaction() as conn:
            conn.execute(
                update(requests)
                .where(
                    requests.c.id == bindparam("rid"), requests.c.status == RequestStatus.SENDING
                )
                .values(status=RequestStatus.IN_DOUBT),
                [{"rid": rid} for rid in request_ids],
            )

    def settle(
        self,
        settlements: Sequence[Settlement],
        now: datetime,
        reminders: ReminderPlan | None = None,
    ) -> None:
        """Record outcomes; forget the address of every settled request; free failed claims.
        With ``reminders``, a request settled sent first gives its address to the reminders
        the plan has for it, so that the address lives on only there."""
        if not settlements:
            return
        with self._db.transaction() as conn:
            if reminders is not None:
                sent = [s.request_id for s in settlements if s.status == RequestStatus.SENT]
                keep_addresses(conn, sent, now, reminders)
            settled_at = time_writer(conn)(now)
            for status in {s.status for s in settlements}:
                group = [s for s in settlements if s.status == status]
                run_many(
                    conn,
                    _settle_sql(conn, status),
                    [_settle_params(s, settled_at) for s in group],
                )
            refused = (RequestStatus.FAILED, RequestStatus.REJECTED)
            release(conn, [s.request_id for s in settlements if s.status in refused])


def _sending_sql(conn: Connection) -> str:
    """(batch key, now, provider, batch key, its place, request id). A repeat of the same
    call keeps the first attempt's ``sending_at``."""
    p = placeholder(conn)
    return (
        f"UPDATE requests SET status = '{RequestStatus.SENDING}', "
        f"sending_at = CASE WHEN batch_key = {p} AND sending_at IS NOT NULL "
        f"THEN sending_at ELSE {p} END, "
        f"provider = {p}, batch_key = {p}, batch_seq = {p} WHERE id = {p}"
    )


def _settle_params(settlement: Settlement, settled_at: Any) -> tuple[Any, ...]:
    error = settlement.error or None
    error = error and error[:2000]
    if settlement.status == RequestStatus.PENDING:
        return (error, settlement.request_id)
    return (error, settled_at, settlement.provider_message_id, settlement.request_id)


def _settle_sql(conn: Connection, status: RequestStatus) -> str:
    """(error, request id) back to pending, the address kept; else (error, settled at,
    provider message id, request id), the address and render data forgotten."""
    p = placeholder(conn)
    if status == RequestStatus.PENDING:  # nothing was sent: back in the queue, address kept
        return f"UPDATE requests SET status = '{status}', error = {p} WHERE id = {p}"
    return (
        f"UPDATE requests SET status = '{status}', error = {p}, settled_at = {p}, "
        f"provider_message_id = {p}, email = NULL, payload = NULL WHERE id = {p}"
    )
