"""The records every stage shares: a sale as the POS delivers it, and a request's status.

Plain values only. This module imports nothing of surveysync and does no I/O, so ``rules``
(pure), ``pos``, ``ledger``, ``providers`` and the reports can all speak of the same things
without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class SaleKind(StrEnum):
    SALE = "sale"
    RETURN = "return"
    VOID = "void"


@dataclass(frozen=True, slots=True)
class Sale:
    """One POS transaction, as the mapping delivers it; times are aware, in the store's zone."""

    transaction_id: str
    sale_at: datetime
    finalized_at: datetime | None
    customer_id: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    language: str | None
    include_in_communications: bool
    unsubscribed: bool
    location_id: str | None
    location_name: str | None
    employee_name: str | None
    total: Decimal | None
    kind: SaleKind

    @property
    def ref(self) -> SaleRef:
        """What its decision is keyed by: the sale and the person it is about. A POS may
        repeat a transaction id for two customers; each is decided on its own."""
        return (self.transaction_id, self.customer_id or "")


# (transaction id, customer id or ""): one decision each.
SaleRef = tuple[str, str]


class RequestStatus(StrEnum):
    """Where a survey request (or any email surveysync sends) stands. One word per state,
    used alike by the ledger, the providers' results, the run summary and the reports.

    ``pending -> sending -> sent | failed | rejected``; a request found in ``sending`` after
    a crash becomes ``in_doubt`` unless its provider honours idempotency keys. A provider
    that refuses a message for now (a 4xx that outlived its retries) answers ``pending``:
    nothing left the building, and the next run sends it. ``cancelled`` ends a follow-up
    email (a reminder) that was no longer wanted before it went out: never sent, never
    a provider's answer.
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    REJECTED = "rejected"
    IN_DOUBT = "in_doubt"
    CANCELLED = "cancelled"

    @property
    def settled(self) -> bool:
        return self in SETTLED


SETTLED = frozenset(
    {RequestStatus.SENT, RequestStatus.FAILED, RequestStatus.REJECTED, RequestStatus.CANCELLED}
)
UNSETTLED = (RequestStatus.PENDING, RequestStatus.SENDING, RequestStatus.IN_DOUBT)


class ResponseStatus(StrEnum):
    """How a survey's answer counts. A link scanner fetches every score link of an email;
    a person clicks one. So a click is only ``provisional`` until its settle window passes
    without a click on another score of the same email (then ``clicked``); a sent form is
    ``confirmed``; a pass over several scores within seconds is ``scanner`` and never counts.
    """

    PROVISIONAL = "provisional"
    CLICKED = "clicked"
    CONFIRMED = "confirmed"
    SCANNER = "scanner"


# The answers that count towards NPS (a provisional one whose settle window has passed
# counts as clicked, even before a sweep has written it so).
COUNTED = frozenset({ResponseStatus.CLICKED, ResponseStatus.CONFIRMED})
