"""The pure eligibility rules in ``surveysync.rules``: no clock, no database, no network."""

from __future__ import annotations

import dataclasses
import socket
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from surveysync.config import RuleSettings
from surveysync.model import SaleKind
from surveysync.rules import (
    REASON_TEXT,
    REVISABLE_REASONS,
    SEND,
    InvalidEmail,
    PersonHistory,
    RunChoices,
    Sale,
    SkipReason,
    check_person,
    check_sale,
    decide,
    in_cooldown,
    next_eligible_at,
    normalize_email,
)

AMS = ZoneInfo("Europe/Amsterdam")
SEOUL = ZoneInfo("Asia/Seoul")
NOW = datetime(2026, 6, 15, 4, 0, tzinfo=AMS)  # a night in summer: no DST change nearby
RULES = RuleSettings(
    cooldown_months=3,
    max_sale_age_days=30,
    excluded_locations=["4"],
    excluded_customers=["C0007"],
    minimum_total=1.0,
)
NOBODY = PersonHistory()


def make_sale(**changes: Any) -> Sale:
    """A finalized sale yesterday afternoon that passes every rule under ``RULES``."""
    at = datetime(2026, 6, 14, 15, 30, tzinfo=AMS)
    sale = Sale(
        transaction_id="1001",
        sale_at=at,
        finalized_at=at,
        customer_id="C0001",
        email="jan.devries@example.com",
        first_name="Jan",
        last_name="de Vries",
        language="nl",
        include_in_communications=True,
        unsubscribed=False,
        location_id="1",
        location_name="Centrum",
        employee_name="Anouk",
        total=Decimal("100.00"),
        kind=SaleKind.SALE,
    )
    return dataclasses.replace(sale, **changes)


def reason_of(
    sale: Sale, history: PersonHistory = NOBODY, rules: RuleSettings = RULES, now: datetime = NOW
) -> SkipReason | None:
    return decide(sale, history, rules, AMS, now).reason


# --- the reason codes ----------------------------------------------------------------------


def test_reason_codes_are_stable_and_in_evaluation_order() -> None:
    """Reports, dashboards and the README keep working: no reason code is renamed or reordered."""
    assert [r.value for r in SkipReason] == [
        "unreadable_row",
        "not_finalized",
        "walk_in",
        "location_excluded",
        "kind_excluded",
        "below_minimum_total",
        "customer_excluded",
        "transaction_excluded",
        "no_email",
        "invalid_email",
        "not_in_communications",
        "too_old",
        "unsubscribed",
        "cooldown",
        "repeated_row",
        "duplicate_in_run",
    ]


def test_every_reason_has_an_explanation() -> None:
    """`explain` and `status` can put every skip reason into words."""
    assert set(REASON_TEXT) == set(SkipReason)
    assert all(text.strip() for text in REASON_TEXT.values())


def test_only_open_or_unreadable_sales_are_decided_again() -> None:
    """A sale skipped while still open is asked about once closed, and an unreadable row
    once repaired; other skips are final."""
    assert frozenset({SkipReason.NOT_FINALIZED, SkipReason.UNREADABLE_ROW}) == REVISABLE_REASONS


def test_a_clean_sale_is_sent() -> None:
    """An ordinary finalized sale of a reachable customer gets a survey request."""
    decision = decide(make_sale(), NOBODY, RULES, AMS, NOW)
    assert decision == SEND
    assert decision.send
    assert check_sale(make_sale(), RULES, NOBODY, NOW) is None
    assert check_person(make_sale(), NOBODY, RULES, AMS, NOW) is None


# --- each reason on its own ------------------------------------------------------------------

SALE_FACTS: list[tuple[SkipReason, dict[str, Any]]] = [
    (SkipReason.NOT_FINALIZED, {"finalized_at": None}),
    (SkipReason.WALK_IN, {"customer_id": None}),
    (SkipReason.WALK_IN, {"customer_id": ""}),
    (SkipReason.LOCATION_EXCLUDED, {"location_id": "4"}),
    (SkipReason.KIND_EXCLUDED, {"kind": SaleKind.RETURN}),
    (SkipReason.KIND_EXCLUDED, {"kind": SaleKind.VOID}),
    (SkipReason.BELOW_MINIMUM_TOTAL, {"total": Decimal("0.99")}),
    (SkipReason.BELOW_MINIMUM_TOTAL, {"total": Decimal("-25.00")}),
    (SkipReason.CUSTOMER_EXCLUDED, {"customer_id": "C0007"}),
    (SkipReason.NO_EMAIL, {"email": None}),
    (SkipReason.NO_EMAIL, {"email": ""}),
    (SkipReason.NO_EMAIL, {"email": "  \t "}),
    (SkipReason.INVALID_EMAIL, {"email": "jan@@example.com"}),
    (SkipReason.INVALID_EMAIL, {"email": "geen-apenstaartje.example.nl"}),
    (SkipReason.INVALID_EMAIL, {"email": "a b@example.com"}),
    (SkipReason.NOT_IN_COMMUNICATIONS, {"include_in_communications": False}),
    (SkipReason.TOO_OLD, {"finalized_at": NOW - timedelta(days=31)}),
]


@pytest.mark.parametrize(
    ("expected", "changes"),
    SALE_FACTS,
    ids=[f"{r.value}-{i}" for i, (r, _) in enumerate(SALE_FACTS)],
)
def test_a_fact_about_the_sale_skips_it(expected: SkipReason, changes: dict[str, Any]) -> None:
    """A sale that breaks one sale rule is not asked about, and the ledger names that rule."""
    sale = make_sale(**changes)
    assert check_sale(sale, RULES, NOBODY, NOW) is expected
    assert reason_of(sale) is expected
    assert not decide(sale, NOBODY, RULES, AMS, NOW).send


def test_an_excluded_transaction_is_skipped() -> None:
    """`suppress add --transaction` keeps that one sale from being asked about."""
    history = PersonHistory(transaction_suppressed=True)
    assert check_sale(make_sale(), RULES, history, NOW) is SkipReason.TRANSACTION_EXCLUDED
    assert reason_of(make_sale(), history) is SkipReason.TRANSACTION_EXCLUDED


PERSON_FACTS: list[tuple[str, dict[str, Any], PersonHistory, SkipReason]] = [
    ("pos-flag", {"unsubscribed": True}, NOBODY, SkipReason.UNSUBSCRIBED),
    ("suppression-list", {}, PersonHistory(suppressed=True), SkipReason.UNSUBSCRIBED),
    (
        "asked-last-month",
        {},
        PersonHistory(last_request_at=NOW - timedelta(days=30)),
        SkipReason.COOLDOWN,
    ),
    (
        "asked-an-hour-ago",
        {},
        PersonHistory(last_request_at=NOW - timedelta(hours=1)),
        SkipReason.COOLDOWN,
    ),
    (
        "asked-in-this-run-about-a-newer-sale",
        {},
        PersonHistory(asked_in_this_run=True),
        SkipReason.DUPLICATE_IN_RUN,
    ),
]


@pytest.mark.parametrize(
    ("changes", "history", "expected"),
    [p[1:] for p in PERSON_FACTS],
    ids=[p[0] for p in PERSON_FACTS],
)
def test_a_fact_about_the_person_skips_the_sale(
    changes: dict[str, Any], history: PersonHistory, expected: SkipReason
) -> None:
    """Someone who unsubscribed or was asked recently gets no new request."""
    sale = make_sale(**changes)
    assert check_sale(sale, RULES, history, NOW) is None
    assert check_person(sale, history, RULES, AMS, NOW) is expected
    assert reason_of(sale, history) is expected


# The rule that each fact breaks, applied to a sale that passes everything: in SkipReason order.
_BREAKS: list[tuple[SkipReason, dict[str, Any], dict[str, Any]]] = [
    (SkipReason.NOT_FINALIZED, {"finalized_at": None}, {}),
    (SkipReason.WALK_IN, {"customer_id": None}, {}),
    (SkipReason.LOCATION_EXCLUDED, {"location_id": "4"}, {}),
    (SkipReason.KIND_EXCLUDED, {"kind": SaleKind.RETURN}, {}),
    (SkipReason.BELOW_MINIMUM_TOTAL, {"total": Decimal("0.00")}, {}),
    (SkipReason.CUSTOMER_EXCLUDED, {"customer_id": "C0007"}, {}),
    (SkipReason.TRANSACTION_EXCLUDED, {}, {"transaction_suppressed": True}),
    (SkipReason.NO_EMAIL, {"email": None}, {}),
    (SkipReason.NOT_IN_COMMUNICATIONS, {"include_in_communications": False}, {}),
    (SkipReason.TOO_OLD, {"finalized_at": NOW - timedelta(days=90)}, {}),
    (SkipReason.UNSUBSCRIBED, {"unsubscribed": True}, {"suppressed": True}),
    (SkipReason.COOLDOWN, {}, {"last_request_at": NOW - timedelta(days=1)}),
    (SkipReason.DUPLICATE_IN_RUN, {}, {"asked_in_this_run": True}),
]


@pytest.mark.parametrize("first", range(len(_BREAKS)), ids=[b[0].value for b in _BREAKS])
def test_the_first_failing_rule_is_the_recorded_reason(first: int) -> None:
    """When a sale breaks several rules, the ledger shows the earliest in the documented order."""
    sale_changes: dict[str, Any] = {}
    history_changes: dict[str, Any] = {}
    # Later rules first, so that an earlier rule's change wins where two touch one field.
    for _, sale_part, history_part in reversed(_BREAKS[first:]):
        sale_changes |= sale_part
        history_changes |= history_part
    sale = make_sale(**sale_changes)
    history = PersonHistory(**history_changes)
    assert reason_of(sale, history) is _BREAKS[first][0]


def test_the_email_rules_cover_each_other() -> None:
    """A missing address is reported as missing, never also as invalid."""
    assert reason_of(make_sale(email=None)) is SkipReason.NO_EMAIL
    assert reason_of(make_sale(email="name@")) is SkipReason.INVALID_EMAIL


@pytest.mark.parametrize("kind", [SaleKind.RETURN, SaleKind.VOID])
def test_kinds_are_excluded_only_as_configured(kind: SaleKind) -> None:
    """A store that also wants returns asked about can say so in rules.excluded_kinds."""
    rules = RULES.model_copy(update={"excluded_kinds": []})
    assert reason_of(make_sale(kind=kind), rules=rules) is None
    assert (
        reason_of(
            make_sale(kind=SaleKind.SALE),
            rules=RULES.model_copy(update={"excluded_kinds": [SaleKind.SALE]}),
        )
        is SkipReason.KIND_EXCLUDED
    )


@pytest.mark.parametrize(
    ("total", "minimum", "expected"),
    [
        (Decimal("1.00"), 1.0, None),
        (Decimal("0.99"), 1.0, SkipReason.BELOW_MINIMUM_TOTAL),
        (Decimal("0.10"), 0.1, None),  # 0.1 as a float is slightly more than 0.1
        (Decimal("0.30"), 0.3, None),
        (Decimal("0.29"), 0.3, SkipReason.BELOW_MINIMUM_TOTAL),
        (Decimal("0.00"), None, None),
        (Decimal("0.00"), 0.0, None),
    ],
)
def test_minimum_total_boundary(
    total: Decimal, minimum: float | None, expected: SkipReason | None
) -> None:
    """A sale of exactly the minimum total is asked about; a cent less is not."""
    rules = RULES.model_copy(update={"minimum_total": minimum})
    assert reason_of(make_sale(total=total), rules=rules) is expected


def test_excluded_location_and_customer_match_by_pos_id_only() -> None:
    """Excluding location 4 or customer C0007 leaves location 40 and customer C00070 alone."""
    assert reason_of(make_sale(location_id="40")) is None
    assert reason_of(make_sale(customer_id="C00070")) is None


# --- names are data --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_name", "last_name"),
    [
        ("Siobhán", "O'Brien"),
        ("Anneke", "van 't Hoff"),
        ("Jürgen", "Müller"),
        ("José", "Núñez"),
        ("민준", "김"),
        ("Špela", "Kovačič"),
        ("Sam", "Fietser 🚲"),
        ("Robert'); DROP TABLE customers;--", "Tables"),
        (None, None),
    ],
)
def test_unusual_names_are_ordinary_data(first_name: str | None, last_name: str | None) -> None:
    """Customers with apostrophes, accents, Hangul or emoji in their names get their survey."""
    sale = make_sale(first_name=first_name, last_name=last_name)
    assert decide(sale, NOBODY, RULES, AMS, NOW).send


@pytest.mark.parametrize(
    "email",
    [
        "민준@example.kr",
        "jürgen@müller.de",
        "Jan.De.Vries@EXAMPLE.com",
        "o'brien@example.ie",
    ],
)
def test_unusual_but_valid_addresses_are_sent(email: str) -> None:
    """International, mixed-case or apostrophe addresses are valid and asked."""
    assert reason_of(make_sale(email=email)) is None


# --- normalize_email -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jan.De.Vries@Example.COM", "jan.de.vries@example.com"),
        ("JAN@EXAMPLE.COM", "jan@example.com"),
        ("ÉMILE@example.fr", "émile@example.fr"),
        ("jürgen@MÜLLER.de", "jürgen@müller.de"),
        ("민준@example.kr", "민준@example.kr"),
        ("o'brien@example.ie", "o'brien@example.ie"),
    ],
)
def test_normalize_email(raw: str, expected: str) -> None:
    """Addresses that differ only in case name the same person."""
    assert normalize_email(raw) == expected


def test_normalize_email_composes_unicode() -> None:
    """An address typed with a decomposed ü matches the same address typed with a composed ü."""
    composed = "jürgen.müller@example.de"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    result = normalize_email(decomposed)
    assert result == composed
    assert unicodedata.is_normalized("NFC", result)
    assert normalize_email(decomposed.upper()) == normalize_email(composed)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "jan@@example.com",
        "geen-apenstaartje.example.nl",
        "a b@example.com",
        "name@",
        "@example.org",
        "dots..twice@example.com",
        "jan@localhost",
        "jan@example",
        ".jan@example.com",
        "jan@example.com.",
        "jan@exa mple.com",
        "jan@example.invalid",
        "jan@[192.0.2.1]",
        "jan\n@example.com",
        "<jan@example.com>",
        "Jan <jan@example.com>",
    ],
)
def test_invalid_addresses_raise(raw: str) -> None:
    """A mistyped address is refused as invalid instead of being mailed."""
    with pytest.raises(InvalidEmail):
        normalize_email(raw)
    assert issubclass(InvalidEmail, ValueError)


def test_normalize_email_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checking an address works offline and never waits on DNS."""
    # email_validator swallows resolver errors, so record attempts rather than only fail them.
    attempts: list[str] = []

    def no_network(*args: object, **kwargs: object) -> None:
        attempts.append("lookup")
        raise OSError("no network in this test")

    class NoSocket(socket.socket):
        def __init__(self, *args: object, **kwargs: object) -> None:
            attempts.append("socket")
            raise OSError("no network in this test")

    monkeypatch.setattr(socket, "socket", NoSocket)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "gethostbyname", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    address = "Nobody@Surveysync-No-Such-Domain-7f3a9.nl"
    assert normalize_email(address) == "nobody@surveysync-no-such-domain-7f3a9.nl"
    assert attempts == []


# --- cooldown: calendar months in the store's zone ---------------------------------------


@pytest.mark.parametrize(
    ("asked", "months", "eligible_local"),
    [
        # asked 30 November: askable again on 28 February, not 2 March
        (datetime(2026, 11, 30, 10, 0, tzinfo=AMS), 3, datetime(2027, 2, 28, 10, 0)),
        # ... or on 29 February in a leap year
        (datetime(2027, 11, 30, 10, 0, tzinfo=AMS), 3, datetime(2028, 2, 29, 10, 0)),
        (datetime(2026, 8, 31, 10, 0, tzinfo=AMS), 3, datetime(2026, 11, 30, 10, 0)),
        (datetime(2026, 1, 31, 10, 0, tzinfo=AMS), 1, datetime(2026, 2, 28, 10, 0)),
        (datetime(2026, 3, 15, 10, 0, tzinfo=AMS), 12, datetime(2027, 3, 15, 10, 0)),
        # across the change to summer time: the same wall-clock time, not the same UTC hour
        (datetime(2026, 1, 15, 10, 0, tzinfo=AMS), 3, datetime(2026, 4, 15, 10, 0)),
        (datetime(2026, 8, 15, 10, 0, tzinfo=AMS), 3, datetime(2026, 11, 15, 10, 0)),
        # the ledger hands back UTC: 23:30 UTC on 30 November is already 1 December in Amsterdam
        (datetime(2026, 11, 30, 23, 30, tzinfo=UTC), 3, datetime(2027, 3, 1, 0, 30)),
        # ... while 22:30 UTC is still 30 November in Amsterdam
        (datetime(2026, 11, 30, 22, 30, tzinfo=UTC), 3, datetime(2027, 2, 28, 23, 30)),
        # and 30 November in Seoul is still 29 November in Amsterdam
        (datetime(2026, 11, 30, 1, 0, tzinfo=SEOUL), 3, datetime(2027, 2, 28, 17, 0)),
        (datetime(2026, 11, 30, 10, 0, tzinfo=AMS), 0, datetime(2026, 11, 30, 10, 0)),
    ],
)
def test_next_eligible_at_uses_calendar_months_in_the_store_zone(
    asked: datetime, months: int, eligible_local: datetime
) -> None:
    """Someone asked on 30 November may be asked again from 28 February, store time."""
    result = next_eligible_at(asked, months, AMS)
    assert result.astimezone(AMS).replace(tzinfo=None) == eligible_local
    assert result == eligible_local.replace(tzinfo=AMS)


@pytest.mark.parametrize(
    "asked",
    [
        datetime(2026, 11, 30, 10, 0, tzinfo=AMS),
        datetime(2026, 11, 30, 9, 0, tzinfo=UTC),  # the same moment, as the ledger returns it
    ],
)
@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2027, 2, 28, 10, 0, tzinfo=AMS), None),  # exactly at the boundary: allowed
        (datetime(2027, 2, 28, 9, 0, tzinfo=UTC), None),  # the same instant in UTC
        (datetime(2027, 2, 28, 10, 0, tzinfo=AMS) - timedelta(microseconds=1), SkipReason.COOLDOWN),
        (datetime(2027, 2, 28, 8, 59, 59, tzinfo=UTC), SkipReason.COOLDOWN),
        (datetime(2027, 2, 27, 23, 0, tzinfo=AMS), SkipReason.COOLDOWN),
        (datetime(2026, 12, 1, 4, 0, tzinfo=AMS), SkipReason.COOLDOWN),
        (datetime(2027, 3, 1, 4, 0, tzinfo=AMS), None),
    ],
)
def test_cooldown_boundary(asked: datetime, now: datetime, expected: SkipReason | None) -> None:
    """A person asked on 30 November is skipped until 28 February at that time, then asked again."""
    sale = make_sale(sale_at=now - timedelta(hours=12), finalized_at=now - timedelta(hours=12))
    history = PersonHistory(last_request_at=asked)
    assert check_person(sale, history, RULES, AMS, now) is expected
    assert reason_of(sale, history, now=now) is expected
    assert in_cooldown(asked, RULES, AMS, now) is (expected is SkipReason.COOLDOWN)


def test_cooldown_follows_the_configured_months() -> None:
    """With a one-month cooldown someone asked six weeks ago is asked again; with zero, always."""
    history = PersonHistory(last_request_at=NOW - timedelta(weeks=6))
    assert reason_of(make_sale(), history) is SkipReason.COOLDOWN
    one_month = RULES.model_copy(update={"cooldown_months": 1})
    assert reason_of(make_sale(), history, rules=one_month) is None
    never = RULES.model_copy(update={"cooldown_months": 0})
    just_asked = PersonHistory(last_request_at=NOW)
    assert reason_of(make_sale(), just_asked, rules=never) is None


def test_never_asked_is_not_in_cooldown() -> None:
    """A person the ledger has never asked is not held back by the cooldown."""
    assert not in_cooldown(None, RULES, AMS, NOW)


def test_unsubscribed_outranks_cooldown() -> None:
    """Someone who unsubscribed and was also asked recently shows as unsubscribed."""
    history = PersonHistory(last_request_at=NOW - timedelta(days=1), suppressed=True)
    assert check_person(make_sale(), history, RULES, AMS, NOW) is SkipReason.UNSUBSCRIBED


# --- too_old -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(days=30), None),  # exactly max_sale_age_days old: still asked
        (timedelta(days=30, seconds=1), SkipReason.TOO_OLD),
        (timedelta(days=29, hours=23, minutes=59), None),
        (timedelta(days=31), SkipReason.TOO_OLD),
        (timedelta(days=400), SkipReason.TOO_OLD),
        (timedelta(0), None),
    ],
)
def test_too_old_boundary(age: timedelta, expected: SkipReason | None) -> None:
    """A sale finalized exactly max_sale_age_days ago is asked about; one second older is not."""
    finalized = NOW - age
    sale = make_sale(sale_at=finalized, finalized_at=finalized)
    assert check_sale(sale, RULES, NOBODY, NOW) is expected
    assert reason_of(sale) is expected


def test_too_old_counts_from_finalization() -> None:
    """A sale opened long ago but closed yesterday is still asked about."""
    sale = make_sale(sale_at=NOW - timedelta(days=90), finalized_at=NOW - timedelta(days=1))
    assert reason_of(sale) is None


def test_too_old_follows_the_configured_age() -> None:
    """Raising max_sale_age_days lets a backfill ask about older sales."""
    old = NOW - timedelta(days=200)
    sale = make_sale(sale_at=old, finalized_at=old)
    assert reason_of(sale) is SkipReason.TOO_OLD
    assert reason_of(sale, rules=RULES.model_copy(update={"max_sale_age_days": 400})) is None


# --- RunChoices: one request per person per run ------------------------------------------


def _sale(transaction_id: str, hour: int, minute: int = 0, customer_id: str = "C1") -> Sale:
    at = datetime(2026, 6, 14, hour, minute, tzinfo=AMS)
    return make_sale(
        transaction_id=transaction_id, sale_at=at, finalized_at=at, customer_id=customer_id
    )


Offers = list[tuple[Sale, tuple[str, ...]]]


def _split(offers: Offers) -> tuple[list[str], list[str]]:
    """Offer every sale, as a run does, then ask which were chosen: (chosen ids, loser ids)."""
    choices = RunChoices()
    for sale, keys in offers:
        choices.offer(sale, keys)
    chosen = sorted(sale.transaction_id for sale, keys in offers if choices.is_chosen(sale, keys))
    losers = sorted(s.transaction_id for s, keys in offers if not choices.is_chosen(s, keys))
    return chosen, losers


def test_the_most_recent_sale_of_a_person_wins() -> None:
    """A customer who bought three times in one run gets one survey, about the last purchase."""
    keys = ("e:jan", "c:s:C1")
    offers = [
        (_sale(transaction_id, hour), keys)
        for transaction_id, hour in [("1", 9), ("2", 12), ("3", 17)]
    ]
    assert _split(offers) == (["3"], ["1", "2"])


def test_an_older_sale_offered_late_loses() -> None:
    """Whatever order they are offered in, the newest sale of the person is the one asked about."""
    keys = ("e:jan", "c:s:C1")
    assert _split([(_sale("2", 17), keys), (_sale("1", 9), keys)]) == (["2"], ["1"])


def test_a_sale_offered_after_the_first_pass_still_competes() -> None:
    """A newer sale that appears while the run is under way replaces the earlier choice."""
    keys = ("e:jan", "c:s:C1")
    choices = RunChoices()
    monday, wednesday = _sale("1", 9), _sale("2", 10)
    choices.offer(monday, keys)
    assert choices.is_chosen(monday, keys)
    choices.offer(wednesday, keys)
    assert not choices.is_chosen(monday, keys)
    assert choices.is_chosen(wednesday, keys)


@pytest.mark.parametrize(
    ("first_keys", "second_keys"),
    [
        # two customer records with one address (typed in different case, same email key)
        (("e:jan", "c:s:C1"), ("e:jan", "c:s:C2")),
        # one customer record, once with a usable address and once without
        (("e:jan", "c:s:C1"), ("c:s:C1",)),
        (("c:s:C1",), ("e:jan", "c:s:C1")),
        # the email key alone is enough
        (("e:jan",), ("e:jan", "c:s:C9")),
    ],
)
def test_a_person_is_linked_by_any_shared_key(
    first_keys: tuple[str, ...], second_keys: tuple[str, ...]
) -> None:
    """Two customer records sharing an address, or one record, get one survey between them."""
    offers = [
        (_sale("1", 9, customer_id=first_keys[-1]), first_keys),
        (_sale("2", 15, customer_id=second_keys[-1]), second_keys),
    ]
    assert _split(offers) == (["2"], ["1"])


def test_different_people_are_each_asked() -> None:
    """Customers who share no customer record and no address each get their own survey."""
    offers = [
        (_sale("1", 9, customer_id="C1"), ("e:jan", "c:s:C1")),
        (_sale("2", 10, customer_id="C2"), ("e:emma", "c:s:C2")),
        (_sale("3", 11, customer_id="C3"), ("c:s:C3",)),
    ]
    assert _split(offers) == (["1", "2", "3"], [])


def test_a_sale_linking_two_people_replaces_both() -> None:
    """A sale that turns out to join two earlier choices leaves exactly one request for them."""
    offers = [
        (_sale("1", 9, customer_id="C1"), ("e:jan", "c:s:C1")),
        (_sale("2", 10, customer_id="C2"), ("c:s:C2",)),
        (_sale("3", 11, customer_id="C2"), ("e:jan", "c:s:C2")),
    ]
    assert _split(offers) == (["3"], ["1", "2"])


def test_each_sale_is_chosen_or_lost_exactly_once() -> None:
    """Every eligible sale ends up asked about or recorded as duplicate_in_run, never both."""
    # As the run offers them: every eligible sale has an email key and a customer key.
    people = [
        ("e:jan", "c:s:C1"),
        ("e:jan", "c:s:C2"),
        ("e:noah", "c:s:C3"),
        ("e:emma", "c:s:C4"),
        ("e:jan", "c:s:C1"),
    ]
    offers = [
        (_sale(str(100 + index), 8 + index // 2, minute=index), people[index % len(people)])
        for index in range(15)
    ]
    chosen, losers = _split(offers)
    assert sorted(chosen + losers) == sorted(sale.transaction_id for sale, _ in offers)
    # jan (customer records C1 and C2) is one person; noah and emma are two more.
    assert chosen == ["112", "113", "114"]


def test_a_tie_in_time_still_has_one_winner() -> None:
    """Two sales of one person stamped the same second still give one survey."""
    chosen, losers = _split([(_sale("7", 12), ("e:jan",)), (_sale("8", 12), ("e:jan",))])
    assert len(chosen) == 1
    assert len(losers) == 1
