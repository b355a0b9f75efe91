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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from surveysync.config import SqlPosSettings, Timestamps
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

# Sale times outside this range are not times a sale was made at: '', text, an integer,
# MariaDB's zero date or PostgreSQL's infinity, compared as the database compares them.
# The preset places such a sale by its creation time instead, so that it is read (and
# decided as ``unreadable_row``) rather than never matched; ``UNPLACED_QUERY`` counts the
# rows whose both times are outside it.
EARLIEST = datetime(1900, 1, 1)
LATEST = datetime(9000, 1, 1)
_USABLE = "t.{0} >= :earliest AND t.{0} <= :latest"
_PLACED_BY_CREATION = (
    "(t.finalized_at IS NULL OR t.finalized_at < :earliest OR t.finalized_at > :latest)"
)

# The Ascend-like schema: customers, transactions, locations, employees. Both branches of the
# WHERE clause can use an index on the column they test; they are disjoint, and together
# they read every transaction whose finalized (else creation) time is in the window.
ASCEND_QUERY = f"""
SELECT t.id AS transaction_id,
       CASE WHEN {_USABLE.format("finalized_at")} THEN t.finalized_at ELSE t.created_at END
           AS sale_at,
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
   OR ({_PLACED_BY_CREATION} AND t.created_at > :start AND t.created_at <= :end)
"""

# The preset's transactions that no window reads: neither time is a usable one.
UNPLACED_QUERY = f"""
SELECT t.id AS transaction_id FROM transactions t
WHERE {_PLACED_BY_CREATION}
  AND (t.created_at IS NULL OR t.created_at < :earliest OR t.created_at > :latest)
"""

_TRUE_WORDS = frozenset({"1", "y", "yes", "true", "t", "on", "-1"})
_FALSE_WORDS = frozenset({"0", "n", "no", "false", "f", "off", ""})


class _BadValue(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PosValues:
    """How this POS writes what the columns mean, beyond the words every mapping knows:
    its own kind words (``pos.kind_values``) and the customer ids of a walk-in
    (``pos.walk_in_customer_ids``)."""

    kinds: tuple[tuple[str, SaleKind], ...] = ()
    walk_in_ids: frozenset[str] = frozenset()

    @classmethod
    def of(cls, settings: SqlPosSettings) -> PosValues:
        kinds = tuple(sorted(settings.kind_values.items()))
        return cls(kinds, frozenset(settings.walk_in_customer_ids))


PLAIN = PosValues()


def row_to_sale(
    row: Mapping[str, Any], tz: ZoneInfo, timestamps: Timestamps, words: PosValues = PLAIN
) -> Sale | RowProblem:
    """The row as a Sale, or a RowProblem naming the first column that cannot be read.

    Whatever the value (an unparsable time, hour 25, an integer, a year past 9999, NaN,
    invalid UTF-8), the answer is one of the two; no exception leaves this function."""
    readers = _readers(tz, timestamps, words)
    values: dict[str, Any] = {}
    problem: tuple[str, str] | None = None
    for column, read in readers.items():
        try:
            values[column] = read(row[column])
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            values[column] = None
            problem = problem or (column, _describe(column, row[column], exc))
    if problem is None and values["transaction_id"] is None:
        problem = ("transaction_id", "transaction_id is empty")
    if problem is None and values["sale_at"] is None:
        problem = ("sale_at", "sale_at is empty")
    if problem is not None:
        column, text = problem
        return RowProblem(
            values["transaction_id"],
            text,
            column,
            values["customer_id"],
            values["sale_at"],
            values["location_id"],
        )
    return Sale(**values)


@lru_cache(maxsize=8)
def _readers(
    tz: ZoneInfo, timestamps: Timestamps, words: PosValues
) -> dict[str, Callable[[Any], Any]]:
    """Each column's reader, in REQUIRED_COLUMNS order (built once per zone, frame and
    value words)."""
    def time(value: Any) -> datetime | None:
        return to_store_time(value, tz, timestamps)

    kinds = dict(words.kinds)

    def customer(value: Any) -> str | None:
        found = _text(value)
        return None if found in words.walk_in_ids else found

    return {
        "transaction_id": _text,
        "sale_at": time,
        "finalized_at": time,
        "customer_id": customer,
        "email": _address,
        "first_name": _text,
        "last_name": _text,
        "language": _language,
        "include_in_communications": _flag,
        "unsubscribed": _flag,
        "location_id": _text,
        "location_name": _text,
        "employee_name": _text,
        "total": _decimal,
        "kind": lambda value: _kind(value, kinds),
    }


def _describe(column: str, value: Any, exc: BaseException) -> str:
    reason = str(exc) if isinstance(exc, _BadValue) else f"cannot be read ({type(exc).__name__})"
    return f"{column} {reason}: {mask_value(value)}"


def mask_value(value: Any) -> str:
    """What a bad value was, for a log line, without showing it: its type, first character
    and length (a POS column may hold a name or an address)."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    shown = f"{text[:1]}***" if len(text) > 1 else "***"
    return f"{type(value).__name__} {shown!r} ({len(text)} characters)"


def to_store_time(value: Any, tz: ZoneInfo, timestamps: Timestamps) -> datetime | None:
    """A POS time as an aware datetime in the store's zone (naive values are local or UTC)."""
    value = _decoded(value)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _BadValue("is not a date and time") from None
    if not isinstance(value, datetime):
        raise _BadValue(f"is not a date and time but a {type(value).__name__}")
    try:
        if value.tzinfo is not None:
            return value.astimezone(tz)
        if timestamps is Timestamps.UTC:
            return value.replace(tzinfo=UTC).astimezone(tz)
        return value.replace(tzinfo=tz)
    except (OverflowError, ValueError):
        raise _BadValue("is out of the range of dates") from None


def to_pos_time(moment: datetime, tz: ZoneInfo, timestamps: Timestamps) -> datetime:
    """The inverse of ``to_store_time`` for query parameters: naive, in the POS's frame."""
    frame = UTC if timestamps is Timestamps.UTC else tz
    return moment.astimezone(frame).replace(tzinfo=None)


def _decoded(value: Any) -> Any:
    """Text as str; bytes (a driver's undecoded text) and lone surrogates (SQLite text that
    is not UTF-8) are bad values."""
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _BadValue("is not valid UTF-8 text") from None
    if isinstance(value, str) and not _encodable(value):
        raise _BadValue("is not valid UTF-8 text")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: Any) -> str | None:
    value = _decoded(value)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _address(value: Any) -> str | None:
    """The email as the POS holds it, spaces included: the rules refuse what is not an
    address exactly, rather than trimming it into one."""
    value = _decoded(value)
    if value is None or value == "":
        return None
    return str(value)


def _language(value: Any) -> str | None:
    text = _text(value)
    return text[:2].lower() if text else None


def _flag(value: Any) -> bool:
    value = _decoded(value)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise _BadValue("is not a yes/no value")


def _decimal(value: Any) -> Decimal | None:
    value = _decoded(value)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _BadValue("is not a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise _BadValue("is not a number") from None
    if not number.is_finite():  # NaN, sNaN, Infinity: no total to compare
        raise _BadValue("is not a finite number")
    return number


def _kind(value: Any, kinds: Mapping[str, SaleKind]) -> SaleKind:
    """sale, return or void, or a word ``pos.kind_values`` names; none is a sale."""
    word = (_text(value) or "sale").lower()
    if word in kinds:
        return kinds[word]
    try:
        return SaleKind(word)
    except ValueError:
        raise _BadValue(
            "must be sale, return or void (map other words with pos.kind_values)"
        ) from None
