"""From POS rows to ``Sale`` records: the column contract, the Ascend-like preset, conversions.

A mapping is one SQL query that yields the columns in ``REQUIRED_COLUMNS`` (by name, in any
order) for the transactions whose ``sale_at`` lies in (:start, :end]. ``sale_at`` is the time
a sale enters a window: the finalized time, or the creation time while it is still open, so
that open sales are seen (and recorded as ``not_finalized``) and then seen again once closed.

Times are converted once, here, from the POS's naive local or UTC times to aware datetimes in
the store's zone. A row that cannot be read becomes a ``RowProblem``, never an exception: one
bad row must not stop a night.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from surveysync.config import Timestamps
from surveysync.model import Sale, SaleKind
from surveysync.pos.base import RowProblem

REQUIRED_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "sale_at",
    "finalized_at",
    "customer_id",
    "email",
    "first_name",
    "last_name",
    "language",
    "include_in_communications",
    "unsubscribed",
    "location_id",
    "location_name",
    "employee_name",
    "total",
    "kind",
)
TIME_COLUMNS = frozenset({"sale_at", "finalized_at"})

# The Ascend-like schema: customers, transactions, locations, employees. Both branches of the
# WHERE clause can use an index on the column they test.
ASCEND_QUERY = """
SELECT t.id AS transaction_id,
       COALESCE(t.finalized_at, t.created_at) AS sale_at,
       t.finalized_at AS finalized_at,
       t.customer_id AS customer_id,
       c.email AS email,
       c.first_name AS first_name,
       c.last_name AS last_name,
       c.language AS language,
       c.include_in_communications AS include_in_communications,
       c.unsubscribed AS unsubscribed,
       t.location_id AS location_id,
       l.name AS location_name,
       e.name AS employee_name,
       t.total AS total,
       t.kind AS kind
FROM transactions t
LEFT JOIN customers c ON c.id = t.customer_id
LEFT JOIN locations l ON l.id = t.location_id
LEFT JOIN employees e ON e.id = t.employee_id
WHERE (t.finalized_at > :start AND t.finalized_at <= :end)
   OR (t.finalized_at IS NULL AND t.created_at > :start AND t.created_at <= :end)
"""

_TRUE_WORDS = frozenset({"1", "y", "yes", "true", "t", "on", "-1"})
_FALSE_WORDS = frozenset({"0", "n", "no", "false", "f", "off", ""})


class _BadValue(ValueError):
    pass


def row_to_sale(row: Mapping[str, Any], tz: ZoneInfo, timestamps: Timestamps) -> Sale | RowProblem:
    transaction_id = _text(row["transaction_id"])
    if transaction_id is None:
        return RowProblem(None, "transaction_id is empty")
    try:
        return _build_sale(transaction_id, row, tz, timestamps)
    except _BadValue as exc:
        return RowProblem(transaction_id, str(exc))


def _build_sale(
    transaction_id: str, row: Mapping[str, Any], tz: ZoneInfo, timestamps: Timestamps
) -> Sale:
    sale_at = to_store_time(row["sale_at"], tz, timestamps, "sale_at")
    if sale_at is None:
        raise _BadValue("sale_at is empty")
    return Sale(
        transaction_id=transaction_id,
        sale_at=sale_at,
        finalized_at=to_store_time(row["finalized_at"], tz, timestamps, "finalized_at"),
        customer_id=_text(row["customer_id"]),
        email=_text(row["email"]),
        first_name=_text(row["first_name"]),
        last_name=_text(row["last_name"]),
        language=_language(row["language"]),
        include_in_communications=_flag(
            row["include_in_communications"], "include_in_communications", default=False
        ),
        unsubscribed=_flag(row["unsubscribed"], "unsubscribed", default=False),
        location_id=_text(row["location_id"]),
        location_name=_text(row["location_name"]),
        employee_name=_text(row["employee_name"]),
        total=_decimal(row["total"]),
        kind=_kind(row["kind"]),
    )


def to_store_time(value: Any, tz: ZoneInfo, timestamps: Timestamps, column: str) -> datetime | None:
    """A POS time as an aware datetime in the store's zone (naive values are local or UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _BadValue(f"{column} is not a date and time: {value[:40]!r}") from None
    if not isinstance(value, datetime):
        raise _BadValue(f"{column} is not a date and time: {type(value).__name__}")
    if value.tzinfo is not None:
        return value.astimezone(tz)
    if timestamps is Timestamps.UTC:
        return value.replace(tzinfo=UTC).astimezone(tz)
    return value.replace(tzinfo=tz)


def to_pos_time(moment: datetime, tz: ZoneInfo, timestamps: Timestamps) -> datetime:
    """The inverse of ``to_store_time`` for query parameters: naive, in the POS's frame."""
    frame = UTC if timestamps is Timestamps.UTC else tz
    return moment.astimezone(frame).replace(tzinfo=None)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _language(value: Any) -> str | None:
    text = _text(value)
    return text[:2].lower() if text else None


def _flag(value: Any, column: str, *, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise _BadValue(f"{column} is not a yes/no value: {word[:20]!r}")


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise _BadValue(f"total is not a number: {str(value)[:20]!r}") from None


def _kind(value: Any) -> SaleKind:
    word = (_text(value) or "sale").lower()
    try:
        return SaleKind(word)
    except ValueError:
        raise _BadValue(f"kind must be sale, return or void, not {word[:20]!r}") from None
