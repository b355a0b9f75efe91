"""Hostile and broken input, one case at a time: what a store would see when a POS holds an
address built to inject headers, a name too long to fold, a row that cannot be read, a
transaction id used twice, or when an operator mistypes a URL or a secret."""

from __future__ import annotations

import email
import email.policy
import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from surveysync.config import EmailSettings, StoreSettings
from surveysync.render import InvalidLink, LinkProblem, LinkSigner, Renderer, RenderError
from surveysync.render.message import deliverable
from surveysync.rules import InvalidEmail, normalize_email
from tests.conftest import Store, local

NIGHT = local(2026, 11, 20, 23)
DAY = datetime(2026, 11, 20, 10, 0)
INJECTING = [
    "=?utf-8?b?YQ0KQmNjOiB2aWN0aW1AZXZpbC5leGFtcGxl?=@example.com",  # a\r\nBcc: victim@…
    "=?utf-8?q?a=2C_b=40evil.example=2C_c?=@example.com",  # a, b@evil.example, c
]


def pos_sql(store: Store, sql: str, *params: object) -> None:
    """Change the POS as old software would, past every layer of ours."""
    store.pos.flush()
    with sqlite3.connect(store.root / "pos.sqlite") as db:
        db.execute(sql, params)


# --- 1 and 8: the address ---------------------------------------------------------------------


@pytest.mark.parametrize("address", INJECTING)
def test_an_address_holding_an_encoded_word_is_invalid_and_gets_no_email(
    store: Store, address: str
) -> None:
    """An RFC 2047 word in the local part would become a Bcc line or more recipients: the
    sale is invalid_email and nothing is written to the outbox."""
    store.customer("C1", address)
    sale = store.pos.sale("C1", DAY)
    store.run(NIGHT)
    assert store.decisions() == {str(sale): "invalid_email"}
    assert store.messages() == []
    with pytest.raises(RenderError):
        deliverable(address)


@pytest.mark.parametrize(
    "address", [" kim@example.com", "kim@example.com ", "kim@example.com\r\n", "\nkim@example.com"]
)
def test_an_address_with_spaces_or_line_breaks_around_it_is_invalid(
    store: Store, address: str
) -> None:
    """An address is taken as written: surrounded by spaces, CR or LF it is invalid_email,
    never trimmed and sent."""
    store.customer("C1", address)
    sale = store.pos.sale("C1", DAY)
    store.run(NIGHT)
    assert store.decisions() == {str(sale): "invalid_email"}
    assert store.messages() == []
    with pytest.raises(InvalidEmail):
        normalize_email(address)


def test_what_the_rules_accept_is_exactly_what_is_sent(store: Store) -> None:
    """The To header and its address are the accepted address as written (the domain in
    IDNA), whatever its case."""
    store.customer("C1", "Kim.Jansen@Bücher.Example")
    store.pos.sale("C1", DAY)
    store.run(NIGHT)
    [message] = store.messages()
    assert message["To"].addresses[0].addr_spec == "Kim.Jansen@xn--bcher-kva.example"


def test_a_link_with_an_absurd_expiry_is_refused_as_invalid() -> None:
    """A token signed with our secret but an expiry past year 9999 is InvalidLink, not a
    ValueError from the date library."""
    signer = LinkSigner("s" * 32, timedelta(days=60))
    token = signer._signer.sign("0123456789abcdef.3.999999999999").decode("ascii")
    with pytest.raises(InvalidLink) as refused:
        signer.read(token, datetime(2026, 11, 20, tzinfo=UTC))
    assert refused.value.problem is LinkProblem.TAMPERED


# --- 2: names of any length and content -------------------------------------------------------

LONG_NAMES = [
    ("A" * 40, "B" * 40),
    ("A" * 79, ""),
    ("Z" * 10_000, "Y" * 10_000),
    ("Ann " * 10 + "<evil@evil.example>", "Doe"),
    ("a" * 40 + '"<evil@evil.example>', "B" * 40),
    ("민준" * 60, "김"),
    ('x"\\<a@b>', "Ölçü" * 30),
]


@pytest.mark.parametrize(("first", "last"), LONG_NAMES)
def test_a_long_or_tricky_name_never_breaks_the_message(first: str, last: str) -> None:
    """Every header parses back, with the strict policy, to what was meant: the same header
    set, one recipient at the right address, the display name as rendered."""
    renderer = Renderer(StoreSettings(name="Test Cycles"), EmailSettings())
    payload = {"first_name": first, "last_name": last, "language": "en"}
    rendered = renderer.render("0" * 32, "kim@example.com", payload, NOW)
    raw = rendered.to_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.strict)
    assert sorted(parsed.keys()) == sorted(
        [
            "From", "To", "Subject", "Date", "MIME-Version", "Content-Type", "Message-ID",
            "List-Unsubscribe", "List-Unsubscribe-Post", "Content-Language", "X-Surveysync-Request",
        ]
    )  # fmt: skip
    [to] = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == (rendered.recipient_name, "kim@example.com")
    assert str(parsed["Subject"]) == rendered.subject
    assert all(not parsed[name].defects for name in parsed.keys())  # noqa: SIM118
    assert rendered.recipient_name.startswith(first[:10])  # shortened, never emptied


NOW = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


# --- 3 and 4: rows that cannot be read, or placed ---------------------------------------------


@pytest.mark.parametrize(
    ("column", "sql_value", "named"),
    [
        ("first_name", "CAST(X'4a6fe9' AS TEXT)", "first_name"),  # not UTF-8
        ("finalized_at", "'garbage'", "finalized_at"),
        ("finalized_at", "'2026-11-20 25:00:00'", "sale_at"),  # hour 25: the sale's time
        ("finalized_at", "20261120", "finalized_at"),  # an integer
        ("total", "'NaN'", "total"),
        ("total", "'sNaN'", "total"),
    ],
)
def test_one_unreadable_row_is_decided_and_the_night_goes_on(
    store: Store, quiet_logs: io.StringIO, column: str, sql_value: str, named: str
) -> None:
    """A row with a bad value gets unreadable_row naming the column (log and explain, the
    value masked); the other sales of the night are sent."""
    store.customer("C1", first="Grzegorz")
    store.customer("C2")
    bad = store.pos.sale("C1", DAY)
    good = store.pos.sale("C2", DAY)
    table = "customers" if column == "first_name" else "transactions"
    key = "'C1'" if table == "customers" else str(bad)
    pos_sql(store, f"UPDATE {table} SET {column} = {sql_value} WHERE id = {key}")

    report = store.run(local(2026, 11, 21, 23))

    assert report.status == "succeeded"
    assert store.decisions() == {str(bad): "unreadable_row", str(good): "request"}
    [line] = [line for line in quiet_logs.getvalue().splitlines() if "pos.row_unreadable" in line]
    assert f'"column": "{named}"' in line and "Traceback" not in quiet_logs.getvalue()
    assert "garbage" not in line and "Grzegorz" not in line and "25:00" not in line  # masked
    explained = store.cli("explain", "--transaction", str(bad))
    assert f"unreadable_row ({named})" in explained.output


def test_a_year_past_9999_in_utc_is_one_unreadable_row(store: Store) -> None:
    """With pos.timestamps = "utc", 9999-12-31 23:30 is past the last date Python knows in
    the store's zone: that sale is unreadable_row, the night goes on."""
    store.extra["pos"] = {"timestamps": '"utc"'}
    store.customer("C1")
    bad = store.pos.sale("C1", DAY)
    pos_sql(store, "UPDATE transactions SET finalized_at = '9999-12-31 23:30:00' WHERE id = ?", bad)
    report = store.run(NIGHT)
    assert report.status == "succeeded"
    assert store.decisions() == {str(bad): "unreadable_row"}


@pytest.mark.parametrize(
    ("finalized", "decision"),
    [("''", "not_finalized"), ("'soon'", "unreadable_row"), ("7", "unreadable_row")],
)
def test_a_sale_with_an_unusable_finalized_time_is_placed_by_its_creation(
    store: Store, finalized: str, decision: str
) -> None:
    """The preset reads a sale whose finalized_at is '', text or a number by its creation
    time, so it is decided instead of matching no window."""
    store.customer("C1")
    sale = store.pos.sale("C1", DAY)
    pos_sql(store, f"UPDATE transactions SET finalized_at = {finalized} WHERE id = ?", sale)
    store.run(NIGHT)
    assert store.decisions() == {str(sale): decision}


def test_rows_no_window_can_place_are_counted_and_logged(
    store: Store, quiet_logs: io.StringIO
) -> None:
    """A sale whose finalized and creation times are both unusable is in no window: each run
    counts it and logs its id."""
    store.customer("C1")
    lost = store.pos.sale("C1", DAY)
    pos_sql(store, "UPDATE transactions SET created_at = 'x', finalized_at = '' WHERE id = ?", lost)
    report = store.run(NIGHT)
    assert report.status == "succeeded" and report.counts["unplaced_rows"] == 1
    [line] = [line for line in quiet_logs.getvalue().splitlines() if "pos.rows_unplaced" in line]
    assert f'"transaction_ids": ["{lost}"]' in line


# --- 5: one transaction id, two customers -----------------------------------------------------

SALES_EXPORT = """
SELECT s.tx AS transaction_id, s.at AS sale_at, s.at AS finalized_at, s.customer AS customer_id,
       s.email AS email, 'Kim' AS first_name, NULL AS last_name, 'en' AS language,
       1 AS include_in_communications, 0 AS unsubscribed, '1' AS location_id,
       'Centrum' AS location_name, NULL AS employee_name, 10 AS total, 'sale' AS kind
FROM sales_export s WHERE s.at > :start AND s.at <= :end{ending}
"""


@pytest.mark.parametrize("ending", ["", ";", "\n-- the export's own query", "; -- done"])
def test_two_customers_under_one_transaction_id_are_each_decided(store: Store, ending: str) -> None:
    """A POS that repeats a transaction id for two customers: each person gets their own
    decision and their own email; a custom query ending in ';' or a comment works."""
    pos_sql(store, "CREATE TABLE sales_export (tx TEXT, at TEXT, customer TEXT, email TEXT)")
    for customer in ("A", "B"):
        pos_sql(
            store,
            "INSERT INTO sales_export VALUES ('T1', '2026-11-20 10:00:00.000000', ?, ?)",
            customer,
            f"{customer.lower()}@example.com",
        )
    store.extra["pos"] = {
        "mapping": '"custom"',
        "query": '"""' + SALES_EXPORT.format(ending=ending) + '"""',
    }

    report = store.run(NIGHT)

    assert report.status == "succeeded", report.error
    rows = store.ledger_rows("SELECT transaction_id, customer_id, reason FROM decisions")
    assert sorted(rows) == [("T1", "A", None), ("T1", "B", None)]
    assert store.recipients() == ["a@example.com", "b@example.com"]
    store.run(local(2026, 11, 21, 23))  # read again: nothing changes, nobody twice
    assert len(store.messages()) == 2


# --- 7: secrets and config ---------------------------------------------------------------------


def test_a_password_with_an_unencoded_at_sign_never_leaks(store: Store, tmp_path: Path) -> None:
    """postgresql://u:s3cret@Tail-Part@host: the driver names 'Tail-Part@host' as the host;
    the console, the log file and runs.error show it masked, and say to write %40."""
    folder = tmp_path / "logs"
    store.extra["pos"] = {
        "url": '"postgresql+psycopg://reader:s3cret@Tail-Part@pos-host.invalid/pos"'
    }
    store.extra["logging"] = {"dir": f'"{folder.as_posix()}"'}
    result = store.cli("sync")
    assert result.exit_code == 1
    [error] = [row[0] for row in store.ledger_rows("SELECT error FROM runs")]
    logged = "".join(path.read_text("utf-8") for path in folder.glob("*.jsonl"))
    for text in (result.output, logged, error):
        assert "Tail-Part" not in text and "s3cret" not in text
    assert "%40" in error and "***@pos-host.invalid" in error
    checked = store.cli("check")
    assert "Tail-Part" not in checked.output and "%40" in checked.output


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("pos", {"url": '"postgresql+psycopg://u:p@db:fivefourthree/pos"'}, "port in pos.url"),
        ("ledger", {"url": '"postgresql+psycopg://u:p@db:x/l"'}, "port in ledger.url"),
        ("email", {"link_secret": '""'}, "email.link_secret must be at least 32 bytes"),
        ("email", {"link_secret": '"short-secret"'}, "at least 32 bytes"),
    ],
)
def test_a_bad_url_port_or_link_secret_is_a_config_error(
    store: Store, section: str, values: dict[str, str], message: str
) -> None:
    """A port that is no number, or a link secret shorter than 32 bytes: exit 2, one line
    naming the key, no traceback, the secret not shown."""
    store.extra[section] = values
    result = store.cli("check")
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert "short-secret" not in result.output


def test_a_repeated_transaction_id_across_a_chunk_boundary_is_not_lost(store: Store) -> None:
    """When the two rows of one transaction id fall on either side of a chunk boundary, the
    next chunk starts at that key again: the second customer is decided too."""
    pos_sql(store, "CREATE TABLE sales_export (tx TEXT, at TEXT, customer TEXT, email TEXT)")
    rows = [(f"A{n:03d}", f"P{n}") for n in range(99)] + [("T1", "X"), ("T1", "Y")]
    for tx, customer in rows:
        pos_sql(
            store,
            "INSERT INTO sales_export VALUES (?, '2026-11-20 10:00:00.000000', ?, ?)",
            tx,
            customer,
            f"{customer.lower()}@example.com",
        )
    store.extra["pos"] = {
        "mapping": '"custom"',
        "query": '"""' + SALES_EXPORT.format(ending="") + '"""',
        "chunk_size": "100",
    }
    report = store.run(NIGHT)
    assert report.status == "succeeded"
    decided = store.ledger_rows("SELECT transaction_id, customer_id FROM decisions")
    assert len(decided) == 101 and ("T1", "Y") in decided
