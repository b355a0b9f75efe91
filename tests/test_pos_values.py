"""What a POS writes in its columns, as an admin meets it with a real schema: kind words of
its own, the customer id of a walk-in, and a mapping that yields one sale in several rows.
Each is either understood (settings), or decided, logged, shown by `status` and failed by
`check`, which also shows sampled sales as surveysync reads them (`check --sample N`)."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import datetime

import pytest
import time_machine

from surveysync.pos.sql.mapping import ASCEND_QUERY
from tests.conftest import Store, local

NIGHT = local(2026, 11, 20, 23)
DAY = datetime(2026, 11, 20, 10, 0)
NEXT_MORNING = local(2026, 11, 21, 9)

# The preset as a custom query binds only :start and :end.
PRESET = ASCEND_QUERY.replace(":earliest", "'1900-01-01'").replace(":latest", "'9000-01-01'")
# The preset, but with every address of a customer (a POS that keeps several): one row per
# address, as a join written in a hurry gives.
EVERY_ADDRESS = PRESET.replace("c.email AS email", "ce.address AS email").replace(
    "LEFT JOIN customers c ON c.id = t.customer_id",
    "LEFT JOIN customers c ON c.id = t.customer_id "
    "LEFT JOIN customer_emails ce ON ce.customer_id = c.id",
)
# The preset joined to the sale's lines without using them: identical rows, one per line.
EVERY_LINE = PRESET.replace(
    "LEFT JOIN locations l", "JOIN sale_lines sl ON sl.transaction_id = t.id\nLEFT JOIN locations l"
)


def pos_sql(store: Store, *statements: tuple[str, tuple[object, ...]]) -> None:
    store.pos.flush()
    with sqlite3.connect(store.root / "pos.sqlite") as db:
        for sql, params in statements:
            db.execute(sql, params)


def custom(store: Store, query: str) -> None:
    store.extra.setdefault("pos", {}).update({"mapping": '"custom"', "query": f'"""{query}"""'})


def checked(store: Store, *args: str) -> tuple[int, str]:
    store.use_own_values()
    with time_machine.travel(NEXT_MORNING, tick=False):
        result = store.cli("check", *args)
    return result.exit_code, result.output


def lines_of(output: str, name: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(name)]


# --- kind words and walk-ins ---------------------------------------------------------------------


@pytest.fixture
def refunds(store: Store) -> Store:
    """Three sales on one day: a refund (the POS's word for a return) and two sales."""
    for customer in ("C1", "C2", "C3"):
        store.customer(customer)
    store.pos.sale("C1", DAY, kind="Refund")
    store.pos.sale("C2", DAY.replace(hour=11))
    store.pos.sale("C3", DAY.replace(hour=12))
    return store


def test_a_kind_word_of_the_pos_fails_check_naming_the_setting(refunds: Store) -> None:
    """Unmapped, 'Refund' is no kind surveysync knows: the row is unreadable, and `check`
    says how many rows of the latest day, which column, and which setting maps it."""
    code, output = checked(refunds)
    assert code == 1
    [values] = lines_of(output, "values")
    assert "failed" in values and "2026-11-20" in values
    assert "1 of 3 rows cannot be read: kind must be sale, return or void" in values
    assert "pos.kind_values" in values


def test_kind_values_map_the_pos_words(refunds: Store) -> None:
    """kind_values = { refund = "return" }, matched without regard to case: the refund is a
    return (kind_excluded), the others are asked, and `check` passes the values."""
    refunds.extra["pos"] = {"kind_values": '{ refund = "return" }'}
    report = refunds.run(NIGHT)
    assert report.status == "succeeded", report.error
    assert refunds.decisions() == {"1": "kind_excluded", "2": "request", "3": "request"}
    code, output = checked(refunds)
    [values] = lines_of(output, "values")
    assert values == "values    ok      2026-11-20: 3 sales, every value understood"
    assert code == 0, output


def test_a_kind_value_must_be_one_of_the_three_kinds(refunds: Store) -> None:
    refunds.extra["pos"] = {"kind_values": '{ refund = "money-back" }'}
    result = refunds.cli("check")
    assert result.exit_code == 2
    assert "kind_values" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("ids", ["[0]", '["0"]', '[" 0 ", "-1"]'])
def test_walk_in_customer_ids_are_walk_ins(store: Store, ids: str) -> None:
    """Lightspeed writes customer 0 on a sale without a customer; a customer row 0 with an
    address would otherwise be asked for every walk-in sale."""
    store.customer("0", "till@example.com")
    store.customer("C1")
    store.pos.sale("0", DAY)
    store.pos.sale("C1", DAY.replace(hour=11))
    store.extra["pos"] = {"walk_in_customer_ids": ids}
    report = store.run(NIGHT)
    assert report.status == "succeeded", report.error
    assert store.decisions() == {"1": "walk_in", "2": "request"}
    assert store.recipients() == ["c1@example.com"]


# --- one row per sale ----------------------------------------------------------------------


@pytest.fixture
def two_addresses(store: Store) -> Store:
    """C1 has a primary and a secondary address; C2 one address."""
    store.customer("C1", "primary@example.com")
    store.customer("C2")
    store.pos.sale("C1", DAY)
    store.pos.sale("C2", DAY.replace(hour=11))
    pos_sql(
        store,
        ("CREATE TABLE customer_emails (customer_id TEXT, address TEXT)", ()),
        ("INSERT INTO customer_emails VALUES ('C1', 'primary@example.com')", ()),
        ("INSERT INTO customer_emails VALUES ('C1', 'secondary@example.com')", ()),
        ("INSERT INTO customer_emails VALUES ('C2', 'c2@example.com')", ()),
    )
    custom(store, EVERY_ADDRESS)
    return store


def test_a_sale_in_two_rows_with_different_addresses_is_not_asked(
    two_addresses: Store, quiet_logs: io.StringIO
) -> None:
    """Which address is right is the mapping's to say: the sale is `repeated_row`, nobody is
    emailed about it, the others are, and the log names the transaction."""
    report = two_addresses.run(NIGHT)
    assert report.status == "succeeded", report.error
    assert two_addresses.decisions() == {"1": "repeated_row", "2": "request"}
    assert two_addresses.recipients() == ["c2@example.com"]
    events = [json.loads(line) for line in quiet_logs.getvalue().splitlines()]
    [repeated] = [e for e in events if e["event"] == "pos.rows_repeated"]
    assert (repeated["count"], repeated["transaction_ids"]) == (1, ["1"])
    assert report.counts["repeated_rows"] == 1


def test_status_and_check_name_the_repeated_sale(two_addresses: Store) -> None:
    two_addresses.run(NIGHT)
    with time_machine.travel(NEXT_MORNING, tick=False):
        status = two_addresses.cli("status", "--json")
        shown = two_addresses.cli("status")
    problems = json.loads(status.output)["pos_data_problems"]
    assert problems == [
        {"reason": "repeated_row", "column": None, "count": 1, "transaction_ids": ["1"]}
    ]
    assert "POS rows not used as they came" in shown.output and "repeated_row" in shown.output
    code, output = checked(two_addresses)
    assert code == 1
    [values] = lines_of(output, "values")
    assert "1 sales come in more than one row (1 with different values" in values
    assert "(e.g. 1)" in values


def test_identical_repeated_rows_ask_once_and_still_fail_check(store: Store) -> None:
    """A join that repeats a sale's row unchanged (one per sale line) changes nothing about
    whom to ask: one survey. It is still a mapping to fix, and `check` says so."""
    store.customer("C1")
    store.pos.sale("C1", DAY)
    pos_sql(
        store,
        ("CREATE TABLE sale_lines (transaction_id INTEGER, item TEXT)", ()),
        ("INSERT INTO sale_lines VALUES (1, 'tube'), (1, 'tyre'), (1, 'labour')", ()),
    )
    custom(store, EVERY_LINE)
    report = store.run(NIGHT)
    assert store.decisions() == {"1": "request"} and store.recipients() == ["c1@example.com"]
    assert report.counts["repeated_rows"] == 2
    code, output = checked(store)
    assert code == 1
    assert "1 sales come in more than one row (0 with different values" in output


def test_status_lists_unreadable_rows_by_column(refunds: Store) -> None:
    refunds.run(NIGHT)
    with time_machine.travel(NEXT_MORNING, tick=False):
        status = refunds.cli("status", "--json")
    assert json.loads(status.output)["pos_data_problems"] == [
        {"reason": "unreadable_row", "column": "kind", "count": 1, "transaction_ids": ["1"]}
    ]


# --- check --sample ------------------------------------------------------------------------


def test_check_sample_shows_the_latest_day_as_read_and_decided(store: Store) -> None:
    """Sales on two days: the sample is from the later one, every column as read (the
    address masked, the time in the store's zone), with what the rules decide now; a person
    surveyed the night before is in cooldown."""
    store.customer("C1", "ann@example.com")
    store.customer("C2", include=False)
    store.pos.sale("C1", DAY.replace(day=18))
    store.run(local(2026, 11, 18, 23))
    store.pos.sale("C1", DAY)
    store.pos.sale("C2", DAY.replace(hour=11))
    store.pos.sale(None, DAY.replace(hour=12))
    code, output = checked(store, "--sample", "2")
    assert code == 0, output
    assert "sample    2 of the 3 sales of 2026-11-20 (3 rows)" in output
    assert "2: cooldown" in output and "3: not_in_communications" in output
    assert "a***@example.com" in output and "ann@example.com" not in output
    assert "2026-11-20 10:00 (Europe/Amsterdam)" in output
    assert "4: walk_in" not in output  # only the two asked for


def test_check_sample_before_any_night_decides_as_a_first_night(store: Store) -> None:
    """Asking for more than the day holds shows the day: here one sale, to be asked."""
    store.customer("C1")
    store.pos.sale("C1", DAY)
    code, output = checked(store, "--sample", "5")
    assert code == 0, output
    assert "sample    1 of the 1 sales of 2026-11-20 (1 rows)" in output
    assert "1: request" in output


def test_check_with_no_recent_sales_passes_the_values(store: Store) -> None:
    _, output = checked(store)
    assert lines_of(output, "values") == ["values    ok      no sale in the last year to look at"]
