"""Survey requests and their answers written straight into a ledger, as a night's run and the
survey page would leave them, so that alert tests need neither a POS nor a browser."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import count

from sqlalchemy import insert, update

from surveysync.ledger import Ledger, new_id
from surveysync.ledger.schema import requests, responses
from surveysync.model import RequestStatus, ResponseStatus

SETTLE_WINDOW = timedelta(minutes=2)


@dataclass
class AnswerBook:
    """Writes sent survey requests and answers to them into ``ledger``."""

    ledger: Ledger
    store: str | None = None  # default: the ledger's own store
    _run_id: str | None = None
    _numbers: count[int] = field(default_factory=lambda: count(1001))

    def request(
        self,
        sent_at: datetime,
        *,
        first_name: str | None = "Kim",
        customer_id: str | None = "C0042",
        location_name: str | None = "Centrum",
        employee_name: str | None = "Anouk",
        sale_at: datetime | None = None,
    ) -> str:
        """A survey request sent at ``sent_at`` about a sale the day before; its id."""
        request_id = new_id()
        number = next(self._numbers)
        row = {
            "id": request_id,
            "store": self.store or self.ledger.store,
            "transaction_id": f"T-{number}",
            "run_id": self._run(sent_at),
            "person_key": f"c:test:{customer_id or number}",
            "customer_id": customer_id,
            "status": RequestStatus.SENT,
            "email_masked": "k***@example.com",
            "created_at": sent_at,
            "settled_at": sent_at,
            "sale_at": sale_at or sent_at - timedelta(days=1),
            "location_id": "1",
            "location_name": location_name,
            "employee_name": employee_name,
            "locale": "nl",
            "first_name": first_name,
        }
        with self.ledger.transaction() as conn:
            conn.execute(insert(requests).values(**row))
        return request_id

    def answer(
        self,
        request_id: str,
        score: int,
        at: datetime,
        *,
        comment: str | None = None,
        status: ResponseStatus = ResponseStatus.CONFIRMED,
    ) -> None:
        """The customer's answer, first given at ``at``; a provisional one settles after
        ``SETTLE_WINDOW``."""
        provisional = status is ResponseStatus.PROVISIONAL
        counted = status in (ResponseStatus.CLICKED, ResponseStatus.CONFIRMED)
        row = {
            "request_id": request_id,
            "store": self.store or self.ledger.store,
            "score": score,
            "comment": comment,
            "status": status,
            "first_seen_at": at,
            "updated_at": at,
            "settle_due_at": at + SETTLE_WINDOW if provisional else None,
            "answered_at": at if counted else None,
        }
        with self.ledger.transaction() as conn:
            conn.execute(insert(responses).values(**row))

    def change(self, request_id: str, at: datetime, **values: object) -> None:
        """The customer changed their answer (a new score or comment)."""
        with self.ledger.transaction() as conn:
            conn.execute(
                update(responses)
                .where(responses.c.request_id == request_id)
                .values(updated_at=at, **values)
            )

    def answered(
        self, score: int, at: datetime, *, comment: str | None = None, **request: object
    ) -> str:
        """A request sent the day before ``at`` and its confirmed answer; the request id."""
        request_id = self.request(at - timedelta(days=1), **request)  # type: ignore[arg-type]
        self.answer(request_id, score, at, comment=comment)
        return request_id

    def _run(self, at: datetime) -> str:
        if self._run_id is None:
            self._run_id = self.ledger.runs.start("sync", at, dry_run=False)
        return self._run_id
