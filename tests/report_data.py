"""A data builder for report tests and examples: surveys sent and their answers, written
straight into a real ledger (SQLite or PostgreSQL) through SQLAlchemy.

The survey page that records answers is built elsewhere; a report test needs exact rows it
chose (this score, that status, sent at that minute), not a browser session per answer, so it
inserts ``requests`` and ``responses`` rows as the sending side and the page leave them.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, text

from surveysync.ledger import Ledger
from surveysync.ledger.schema import metadata, requests, responses, runs
from surveysync.model import RequestStatus, ResponseStatus
from tests.conftest import TZ, Store

LOCATIONS = {"1": "Centrum", "2": "Noord", "3": "Magazijn"}
COMMENTS = [
    "Heel goed geholpen, de fiets was dezelfde dag klaar.",
    "<script>alert('x')</script> & te duur",
    "Muy amables, volveré. Een heel lange opmerking zonder spaties: " + "x" * 80,
    "사장님 친절해요 🚲",
]
_ids = itertools.count(1)


class SurveyLedger:
    """Sent surveys and answers of one store, in the ledger a ``Store`` is configured with."""

    def __init__(self, store: Store, store_id: str = "test") -> None:
        self.ledger = Ledger.open(store.ledger_url, store_id)  # creates and migrates it
        self.store_id = store_id
        self.run_id = f"run{next(_ids):06d}"
        with self.ledger.transaction() as conn:
            conn.execute(
                insert(runs).values(
                    id=self.run_id,
                    store=store_id,
                    kind="sync",
                    status="succeeded",
                    dry_run=False,
                    started_at=datetime(2026, 1, 1, tzinfo=UTC),
                )
            )

    def close(self) -> None:
        self.ledger.close()

    def sent(
        self,
        at: datetime,
        *,
        location: str | None = "1",
        employee: str | None = "Anouk",
        status: RequestStatus = RequestStatus.SENT,
    ) -> str:
        """A survey request settled at ``at`` (its send time); returns its id."""
        request_id = f"req{next(_ids):08d}"
        with self.ledger.transaction() as conn:
            conn.execute(
                insert(requests).values(**self._request(request_id, at, location, employee, status))
            )
        return request_id

    def _request(
        self, request_id: str, at: datetime, location: str | None, employee: str | None, status: str
    ) -> dict[str, Any]:
        return {
            "id": request_id,
            "store": self.store_id,
            "transaction_id": f"T{request_id}",
            "run_id": self.run_id,
            "person_key": f"e:{request_id}",
            "status": status,
            "email_masked": "k***@example.com",
            "created_at": at - timedelta(minutes=5),
            "settled_at": at,
            "sale_at": at - timedelta(hours=3),
            "location_id": location,
            "location_name": LOCATIONS.get(location or ""),
            "employee_name": employee,
            "locale": "nl",
            "first_name": "Kim",
        }

    def answer(
        self,
        request_id: str,
        score: int | None,
        *,
        status: ResponseStatus = ResponseStatus.CONFIRMED,
        seen_at: datetime,
        comment: str | None = None,
        settle_due_at: datetime | None = None,
    ) -> None:
        """The page's record of that survey's answer."""
        counted = status in (ResponseStatus.CONFIRMED, ResponseStatus.CLICKED)
        row = {
            "request_id": request_id,
            "store": self.store_id,
            "score": score,
            "comment": comment,
            "status": status,
            "first_seen_at": seen_at,
            "updated_at": seen_at,
            "settle_due_at": settle_due_at,
            "answered_at": seen_at if counted else None,
        }
        with self.ledger.transaction() as conn:
            conn.execute(insert(responses).values(**row))

    def survey(
        self,
        at: datetime,
        score: int | None,
        *,
        status: ResponseStatus = ResponseStatus.CONFIRMED,
        comment: str | None = None,
        location: str | None = "1",
        employee: str | None = "Anouk",
        settle_due_at: datetime | None = None,
    ) -> str:
        """A survey sent at ``at`` and answered an hour later."""
        request_id = self.sent(at, location=location, employee=employee)
        self.answer(
            request_id,
            score,
            status=status,
            seen_at=at + timedelta(hours=1),
            comment=comment,
            settle_due_at=settle_due_at,
        )
        return request_id

    def surveys(self, at: datetime, scores: list[int], **kwargs: Any) -> None:
        """One answered survey per score, a minute apart from ``at``."""
        for n, score in enumerate(scores):
            self.survey(at + timedelta(minutes=n), score, **kwargs)

    def fingerprint(self) -> str:
        """A digest of every row of every table (and the schema revision)."""
        digest = hashlib.sha256()
        with self.ledger.reading() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(select(table).order_by(*table.c)):
                    digest.update(repr((table.name, tuple(row))).encode())
            for row in conn.execute(text("SELECT version_num FROM alembic_version")):
                digest.update(repr(tuple(row)).encode())
        return digest.hexdigest()


def three_months(surveys: SurveyLedger) -> None:
    """Three months of surveys at three locations by four employees, some answered."""
    scores = [10, 9, 8, 0, 6, 7, 10, 3, 9, 10, 5, 9]
    for n in range(72):
        at = datetime(2026, 9, 3, 12, tzinfo=TZ) + timedelta(days=n, hours=n % 5)
        location, employee = str(1 + n % 3), ["Anouk", "Bram", "Carmen", None][n % 4]
        if n % 5 == 4:
            surveys.sent(at, location=location, employee=employee)
        else:
            comment = COMMENTS[n % len(COMMENTS)] if n % 3 == 0 else None
            surveys.survey(
                at, scores[n % 12], location=location, employee=employee, comment=comment
            )
