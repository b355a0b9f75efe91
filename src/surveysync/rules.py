"""Eligibility: may this customer be asked about this sale?

Pure functions over plain values: a ``Sale``, what the ledger knows about the person
(``PersonHistory``), the rule settings and the run's ``now``. Nothing here reads a clock,
a database, a file or the network; the run passes everything in. That keeps every rule
testable on its own and makes ``explain`` give the same answer the nightly run gave.

Rules are evaluated in the order of ``SkipReason`` below; the first that fails is the
recorded reason. ``unreadable_row`` is first and is not a rule: the sync records it for a
POS row that could not be turned into a sale, so no rule could be asked. Facts about the
sale come first, facts about the person next, and the
one-request-per-person-per-run choice last, because it compares sales that passed
everything else (otherwise a return could "win" and leave the real sale unasked).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum, StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from surveysync.addresses import InvalidAddress, accept
from surveysync.model import Sale

if TYPE_CHECKING:  # settings arrive as arguments: no config loading for the rules' users
    from surveysync.config import RuleSettings


class SkipReason(StrEnum):
    """Stable reason codes, in evaluation order. Documented in README.md; never rename one."""

    UNREADABLE_ROW = "unreadable_row"
    NOT_FINALIZED = "not_finalized"
    WALK_IN = "walk_in"
    LOCATION_EXCLUDED = "location_excluded"
    KIND_EXCLUDED = "kind_excluded"
    BELOW_MINIMUM_TOTAL = "below_minimum_total"
    CUSTOMER_EXCLUDED = "customer_excluded"
    TRANSACTION_EXCLUDED = "transaction_excluded"
    NO_EMAIL = "no_email"
    INVALID_EMAIL = "invalid_email"
    NOT_IN_COMMUNICATIONS = "not_in_communications"
    TOO_OLD = "too_old"
    UNSUBSCRIBED = "unsubscribed"
    COOLDOWN = "cooldown"
    REPEATED_ROW = "repeated_row"
    DUPLICATE_IN_RUN = "duplicate_in_run"


# What each code means, for `explain`, `status` and the README's table.
REASON_TEXT: dict[SkipReason, str] = {
    SkipReason.UNREADABLE_ROW: "a column of the POS row could not be read (the column is named)",
    SkipReason.NOT_FINALIZED: "the sale is not finalized (closed) in the POS yet",
    SkipReason.WALK_IN: "walk-in sale: no customer attached",
    SkipReason.LOCATION_EXCLUDED: "the sale's location is excluded (rules.excluded_locations)",
    SkipReason.KIND_EXCLUDED: "a return or void (rules.excluded_kinds)",
    SkipReason.BELOW_MINIMUM_TOTAL: "the total is below rules.minimum_total",
    SkipReason.CUSTOMER_EXCLUDED: "the customer is listed in rules.excluded_customers",
    SkipReason.TRANSACTION_EXCLUDED: (
        "this one transaction was excluded (suppress add --transaction)"
    ),
    SkipReason.NO_EMAIL: "the customer has no email address",
    SkipReason.INVALID_EMAIL: "the customer's email address is not valid",
    SkipReason.NOT_IN_COMMUNICATIONS: "'include in communications' is off on the customer",
    SkipReason.TOO_OLD: "the sale is older than rules.max_sale_age_days",
    SkipReason.UNSUBSCRIBED: "unsubscribed (POS flag, suppression list or provider list)",
    SkipReason.COOLDOWN: "asked within the cooldown (rules.cooldown_months), answered or not",
    SkipReason.DUPLICATE_IN_RUN: "another sale of the same person in this run was chosen",
    SkipReason.REPEATED_ROW: (
        "the mapping yielded this sale and customer twice with different values (one row per "
        "email address, say); it must yield one row per sale"
    ),
}

# A sale skipped for one of these may be decided again when it is read again: the fact
# that blocked it can still change (the sale gets finalized later, the row is repaired).
# Every other decision is final, which is what makes re-reading a window harmless.
REVISABLE_REASONS = frozenset({SkipReason.NOT_FINALIZED, SkipReason.UNREADABLE_ROW})


class _Unset(Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET


@dataclass(frozen=True, slots=True)
class PersonHistory:
    """What the ledger knows about the person behind a sale."""

    last_request_at: datetime | None = None  # the latest request of an earlier run
    suppressed: bool = False
    transaction_suppressed: bool = False
    asked_in_this_run: bool = False  # about a newer sale: the run decides newest days first
    # The sale's address as the run normalized it, once per sale (None: it is not valid).
    # Left unset, the rules normalize ``sale.email`` themselves.
    email: str | _Unset | None = UNSET


@dataclass(frozen=True, slots=True)
class Decision:
    reason: SkipReason | None  # None means: send a survey request

    @property
    def send(self) -> bool:
        return self.reason is None


SEND = Decision(None)


class InvalidEmail(ValueError):
    """The address is not a syntactically valid email address."""


def normalize_email(raw: str) -> str:
    """The form people are matched by: validated syntax, NFC, lower case. No DNS lookups.

    The address is taken as written (``surveysync.addresses.accept``): spaces or line breaks
    around it, or an RFC 2047 encoded word in it, make it invalid, never silently repaired;
    what is accepted here is what a message is sent to."""
    try:
        return accept(raw).matched_as
    except InvalidAddress as exc:
        raise InvalidEmail(str(exc)) from None


def next_eligible_at(last_request_at: datetime, cooldown_months: int, tz: ZoneInfo) -> datetime:
    """Calendar months in the store's zone: asked on 30 Nov, askable again on 28 Feb."""
    return last_request_at.astimezone(tz) + relativedelta(months=cooldown_months)


def in_cooldown(
    last_request_at: datetime | None, rules: RuleSettings, tz: ZoneInfo, now: datetime
) -> bool:
    if last_request_at is None:
        return False
    return now < next_eligible_at(last_request_at, rules.cooldown_months, tz)


def check_sale(
    sale: Sale, rules: RuleSettings, history: PersonHistory, now: datetime
) -> SkipReason | None:
    """The rules about the sale and its customer record; None when all pass."""
    for reason in _sale_failures(sale, rules, history, now):
        return reason
    return None


def _sale_failures(
    sale: Sale, rules: RuleSettings, history: PersonHistory, now: datetime
) -> Iterator[SkipReason]:
    if sale.finalized_at is None:
        yield SkipReason.NOT_FINALIZED
    if not sale.customer_id:
        yield SkipReason.WALK_IN
    if sale.location_id in rules.excluded_locations:
        yield SkipReason.LOCATION_EXCLUDED
    if sale.kind in rules.excluded_kinds:
        yield SkipReason.KIND_EXCLUDED
    if _below_minimum(sale.total, rules.minimum_total):
        yield SkipReason.BELOW_MINIMUM_TOTAL
    if sale.customer_id in rules.excluded_customers:
        yield SkipReason.CUSTOMER_EXCLUDED
    if history.transaction_suppressed:
        yield SkipReason.TRANSACTION_EXCLUDED
    if not (sale.email and sale.email.strip()):
        yield SkipReason.NO_EMAIL
    elif not _is_valid_email(sale.email, history.email):
        yield SkipReason.INVALID_EMAIL
    if not sale.include_in_communications:
        yield SkipReason.NOT_IN_COMMUNICATIONS
    if sale.finalized_at is not None and _too_old(sale.finalized_at, rules, now):
        yield SkipReason.TOO_OLD


def check_person(
    sale: Sale, history: PersonHistory, rules: RuleSettings, tz: ZoneInfo, now: datetime
) -> SkipReason | None:
    """The rules about the person: unsubscribed anywhere, asked too recently by an earlier
    run, or already asked by this run about a more recent sale."""
    if sale.unsubscribed or history.suppressed:
        return SkipReason.UNSUBSCRIBED
    if in_cooldown(history.last_request_at, rules, tz, now):
        return SkipReason.COOLDOWN
    if history.asked_in_this_run:
        return SkipReason.DUPLICATE_IN_RUN
    return None


def decide(
    sale: Sale, history: PersonHistory, rules: RuleSettings, tz: ZoneInfo, now: datetime
) -> Decision:
    """Every rule; within one day, ``RunChoices`` then picks each person's newest sale."""
    reason = check_sale(sale, rules, history, now) or check_person(sale, history, rules, tz, now)
    return Decision(reason) if reason else SEND


def _is_valid_email(raw: str, normalized: str | _Unset | None) -> bool:
    if normalized is not UNSET:
        return normalized is not None
    try:
        normalize_email(raw)
    except InvalidEmail:
        return False
    return True


def _below_minimum(total: Decimal | None, minimum: float | None) -> bool:
    return minimum is not None and total is not None and total < Decimal(str(minimum))


def _too_old(finalized_at: datetime, rules: RuleSettings, now: datetime) -> bool:
    return now - finalized_at > timedelta(days=rules.max_sale_age_days)


@dataclass(slots=True)
class RunChoices:
    """One request per person per day of a run: among a person's eligible sales of the day,
    the most recent wins. (Across days, the run decides the newest day first, and a person
    it has asked is ``duplicate_in_run`` on older days: see ``PersonHistory``.)

    A sale loses when a newer eligible sale shares a key with it (the POS customer id or the
    normalized-email hash). Offer every eligible sale of the day, in any order, before asking
    ``is_chosen``. Only the newest sale per key is kept.
    """

    _newest: dict[str, tuple[datetime, tuple[int, int, str]]] = field(default_factory=dict)

    def offer(self, sale: Sale, keys: tuple[str, ...]) -> None:
        mark = _recency(sale)
        for key in keys:
            held = self._newest.get(key)
            if held is None or held < mark:
                self._newest[key] = mark

    def is_chosen(self, sale: Sale, keys: tuple[str, ...]) -> bool:
        """True unless a newer offered sale shares a key with this one."""
        mark = _recency(sale)
        return all(self._newest.get(key, mark) <= mark for key in keys)


def _recency(sale: Sale) -> tuple[datetime, tuple[int, int, str]]:
    # The transaction id breaks ties between sales stamped the same second: numerically
    # when it is a number ("1046" is newer than "732"), else as text.
    tid = sale.transaction_id
    numeric = tid.isascii() and tid.isdigit()
    return (sale.sale_at, (1, int(tid), "") if numeric else (0, 0, tid))
