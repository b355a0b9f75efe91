"""Properties of whole runs, on real SQLite files: nights in a row, missed nights, late sales.

For any history of sales and any sequence of runs over it:

* nobody gets two survey requests within the cooldown (3 calendar months, store time);
* every sale that falls inside the covered stretch has exactly one decision in the ledger,
  and a sale that was closed later is decided on its closed state, not left as ``not_finalized``;
* every ``cooldown`` and ``duplicate_in_run`` skip is backed by a real request to that person,
  and every request that was sent is one ``.eml`` file in the outbox, addressed to that person.

"A person" is what the ledger can know: two requests are to the same person when they share
a key, the POS customer record or the normalized email address the request was made with.
"""

from __future__ import annotations

import itertools
import logging
import re
import sqlite3
import tempfile
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import Parser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from surveysync.config import Settings, load_settings
from surveysync.demo import PosWriter, new_pos
from surveysync.rules import InvalidEmail, next_eligible_at, normalize_email
from surveysync.sync import RunReport, SyncRequest, run_sync

TZ = ZoneInfo("Europe/Amsterdam")
EPOCH = datetime(2026, 1, 1)  # naive store-local time; sales lie on the ~200 days after it
FIRST_RUN_START = EPOCH - timedelta(days=7)
LOOKBACK = timedelta(days=3)  # sync.lookback_days, the default
COOLDOWN_MONTHS = 3  # rules.cooldown_months, the default
MARGIN = timedelta(hours=2)  # keeps "inside the look-back" clear of DST hour shifts

ASCII_EMAILS = ["ann@example.com", "bram.de.wit@example.nl", "o'connor@example.ie"]
# An internationalized local part and domain, which the rules accept as valid.
INTERNATIONAL_EMAILS = ["jürgen.müller@example.de", "lotte@bücher.example.nl"]
NAMES = [
    ("Siobhán", "O'Brien"),
    ("Jürgen", "Müller"),
    ("민준", "김"),
    ("Sam", "Fietser 🚲"),
    ("Anneke", "van 't Hoff"),
    ("Emma", "Smith"),
    (None, "Nobody"),
]
SPELLINGS: list[Callable[[str], str]] = [
    str.lower,
    str.upper,
    str.title,
    lambda s: f"  {s} ",
    lambda s: unicodedata.normalize("NFD", s),
]


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.reset_defaults()


# --- the scenario ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    id: str
    first_name: str | None
    last_name: str
    email: str | None
    include: bool = True
    unsubscribed: bool = False


@dataclass(frozen=True)
class PlannedSale:
    customer_id: str | None
    created: datetime  # naive store-local, as the POS keeps it
    kind: str = "sale"
    insert_before_run: int = 0  # 0: in the POS from the start; k: appears just before run k
    # None: finalized when created; else (run index, time) when it gets closed in the POS
    closed: tuple[int, datetime] | None = None
    open_for_good: bool = False  # never closed during the runs


@dataclass(frozen=True)
class Scenario:
    customers: list[Customer]
    sales: list[PlannedSale]
    nows: list[datetime]  # naive store-local, strictly increasing
    max_sale_age_days: int = 400
    # (run index, customer id, new address): the customer edits their address before that run
    email_changes: list[tuple[int, str, str | None]] = field(default_factory=list)

    def email_at(self, run: int, customer_id: str) -> str | None:
        email = next(c.email for c in self.customers if c.id == customer_id)
        for when, who, new in sorted(self.email_changes, key=lambda change: change[0]):
            if when <= run and who == customer_id:
                email = new
        return email


def _minutes(value: int) -> timedelta:
    return timedelta(minutes=value)


def _avoid_dst_hour(moment: datetime) -> datetime:
    # 02:00-03:00 local does not exist in March and exists twice in October.
    return moment + timedelta(hours=1) if moment.hour == 2 else moment


def _emails() -> st.SearchStrategy[str | None]:
    spelled = st.builds(
        lambda base, spell: spell(base),
        st.sampled_from(ASCII_EMAILS + ASCII_EMAILS + INTERNATIONAL_EMAILS),
        st.sampled_from(SPELLINGS),
    )
    # mostly a usable address; sometimes none or a mistyped one
    return st.sampled_from(["ok"] * 8 + ["none", "bad"]).flatmap(
        lambda pick: (
            spelled if pick == "ok" else st.just(None if pick == "none" else "jan@@example.com")
        )
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    customers: list[Customer] = []
    for number in range(1, draw(st.integers(2, 6)) + 1):
        first, last = draw(st.sampled_from(NAMES))
        customers.append(
            Customer(
                id=f"C{number}",
                first_name=first,
                last_name=last or "",
                email=draw(_emails()),
                include=draw(st.sampled_from([True] * 9 + [False])),
                unsubscribed=draw(st.sampled_from([False] * 9 + [True])),
            )
        )
    ids = [c.id for c in customers]

    # Nightly runs, manual re-runs hours later, and missed nights or weeks.
    gap = st.one_of(
        st.integers(1, 3).map(lambda d: timedelta(days=d)),
        st.integers(14, 60).map(lambda d: timedelta(days=d)),
        st.integers(1, 20).map(lambda h: timedelta(hours=h)),
    )
    nows = [
        _avoid_dst_hour(
            EPOCH
            + timedelta(days=draw(st.integers(1, 40)))
            + _minutes(draw(st.integers(0, 24 * 60 - 1)))
        )
    ]
    for step in draw(st.lists(gap, min_size=1, max_size=8)):
        nows.append(_avoid_dst_hour(nows[-1] + step))
    assert all(a < b for a, b in itertools.pairwise(nows))

    customer = st.one_of(
        st.sampled_from(ids), st.sampled_from(ids), st.sampled_from(ids), st.none()
    )
    kind = st.sampled_from(["sale", "sale", "sale", "sale", "return", "void"])
    span = min((nows[-1] - EPOCH).days + 1, 200)
    sales: list[PlannedSale] = []
    sale_days: list[int] = []
    for _ in range(draw(st.integers(2, 30))):
        # often on a day that already has a sale, so one person buys twice in a day
        day = draw(
            st.one_of(st.integers(0, span), st.sampled_from(sale_days))
            if sale_days
            else st.integers(0, span)
        )
        sale_days.append(day)
        created = EPOCH + timedelta(days=day) + _minutes(draw(st.integers(0, 24 * 60 - 1)))
        closed, open_for_good = None, False
        if draw(st.integers(0, 5)) == 0:  # still open when first read
            closed, open_for_good = _closing(draw, created, nows)
        sales.append(PlannedSale(draw(customer), created, draw(kind), 0, closed, open_for_good))
    for _ in range(draw(st.integers(0, 6))):  # rung up late, stamped inside the look-back
        run = draw(st.integers(1, len(nows) - 1))
        before = draw(st.integers(0, int((LOOKBACK - 2 * MARGIN).total_seconds() // 60)))
        sales.append(PlannedSale(draw(customer), nows[run - 1] - _minutes(before), draw(kind), run))
    changes = draw(
        st.lists(
            st.tuples(st.integers(1, len(nows) - 1), st.sampled_from(ids), _emails()), max_size=3
        )
    )
    return Scenario(customers, sales, nows, draw(st.sampled_from([400, 30, 5])), changes)


def _closing(
    draw: st.DrawFn, created: datetime, nows: list[datetime]
) -> tuple[tuple[int, datetime] | None, bool]:
    """When an open sale gets closed: before some run after the first that reads it open."""
    first_read = next((i for i, now in enumerate(nows) if now >= created), None)
    if first_read is None:
        return None, True
    run = first_read + 1 + draw(st.integers(0, 2))
    if run >= len(nows):
        return None, True
    # Closed between runs run-1 and run, stamped no earlier than the look-back reaches back.
    low = nows[run - 1] - LOOKBACK + MARGIN
    span = max(int((nows[run] - MARGIN - low).total_seconds() // 60), 0)
    closed_at = max(created, low + _minutes(draw(st.integers(0, span))))
    return (run, closed_at), False


# --- running it --------------------------------------------------------------------------


def _write_config(directory: Path, max_sale_age_days: int = 400, pos_extra: str = "") -> Path:
    path = directory / "surveysync.toml"
    path.write_text(
        f"""
[store]
id = "s"
timezone = "Europe/Amsterdam"

[pos]
url = "sqlite:///{(directory / "pos.sqlite").as_posix()}"
{pos_extra}

[ledger]
url = "sqlite:///{(directory / "ledger.sqlite").as_posix()}"

[rules]
max_sale_age_days = {max_sale_age_days}

[sync]
first_run_start = {FIRST_RUN_START.isoformat()}

[provider]
outbox_dir = "{(directory / "outbox").as_posix()}"
""",
        encoding="utf-8",
    )
    return path


def _add_sale(writer: PosWriter, sale: PlannedSale) -> int:
    return writer.sale(
        sale.customer_id,
        sale.created,
        kind=sale.kind,
        finalized=sale.closed is None and not sale.open_for_good,
    )


def _run(config: Settings, now: datetime) -> RunReport:
    report = run_sync(config, SyncRequest(now=now.replace(tzinfo=TZ)))
    assert report.status == "succeeded", report.error
    return report


def _play(scenario: Scenario, directory: Path, pos_extra: str = "") -> None:
    """Build the POS, then run once per night, changing the POS between runs as planned."""
    writer = new_pos(directory / "pos.sqlite")
    try:
        writer.location(1, "Centrum")
        writer.employee(1, "Anouk")
        for c in scenario.customers:
            writer.customer(
                c.id,
                c.first_name,
                c.last_name,
                c.email,
                include=c.include,
                unsubscribed=c.unsubscribed,
            )
        by_id: dict[int, PlannedSale] = {}
        for sale in scenario.sales:
            if sale.insert_before_run == 0:
                by_id[_add_sale(writer, sale)] = sale
        writer.flush()
        config = load_settings(_write_config(directory, scenario.max_sale_age_days, pos_extra))
        for run, now in enumerate(scenario.nows):
            for sale in scenario.sales:
                if sale.insert_before_run == run and run > 0:
                    by_id[_add_sale(writer, sale)] = sale
            writer.flush()
            with writer.engine.begin() as conn:
                for transaction_id, sale in by_id.items():
                    if sale.closed is not None and sale.closed[0] == run:
                        conn.execute(
                            text("UPDATE transactions SET finalized_at = :at WHERE id = :id"),
                            {"at": sale.closed[1], "id": transaction_id},
                        )
                for when, customer_id, email in scenario.email_changes:
                    if when == run:
                        conn.execute(
                            text("UPDATE customers SET email = :email WHERE id = :id"),
                            {"email": email, "id": customer_id},
                        )
            _run(config, now)
    finally:
        writer.engine.dispose()


# --- reading the result ------------------------------------------------------------------


def _utc(naive_utc: str) -> datetime:
    """A ledger time (stored as naive UTC) as an aware datetime."""
    return datetime.fromisoformat(naive_utc).replace(tzinfo=UTC)


def _normalized(raw: str | None) -> str | None:
    if not raw or not raw.strip():
        return None
    try:
        return normalize_email(raw)
    except InvalidEmail:
        return None


@dataclass(frozen=True)
class Request:
    id: str
    transaction_id: str
    customer_id: str
    run_id: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class DecisionRow:
    transaction_id: str
    customer_id: str | None
    run_id: str
    decided_at: datetime
    reason: str | None
    request_id: str | None


def _read_ledger(path: Path) -> tuple[list[Request], list[DecisionRow]]:
    db = sqlite3.connect(path)
    try:
        requests = [
            Request(r[0], r[1], r[2], r[3], r[4], _utc(r[5]))
            for r in db.execute(
                "SELECT id, transaction_id, customer_id, run_id, status, created_at FROM requests"
            )
        ]
        decisions = [
            DecisionRow(r[0], r[1], r[2], _utc(r[3]), r[4], r[5])
            for r in db.execute(
                "SELECT transaction_id, customer_id, run_id, decided_at, reason, request_id "
                "FROM decisions WHERE store = 's'"
            )
        ]
    finally:
        db.close()
    return requests, decisions


def _read_pos(path: Path) -> dict[str, tuple[datetime, bool]]:
    """transaction id -> (sale_at as the POS mapping defines it, finalized)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT id, created_at, finalized_at FROM transactions").fetchall()
    finally:
        db.close()
    return {
        str(tid): (datetime.fromisoformat(finalized or created), finalized is not None)
        for tid, created, finalized in rows
    }


def _read_eml(path: Path) -> tuple[str, str]:
    """(X-Surveysync-Request, the To address) of one outbox file.

    Read as RFC 6532 (headers in UTF-8), which is how a message to a non-ASCII local part is
    written; the bytes parser would turn those headers into surrogate escapes."""
    message = Parser(policy=policy.default).parsestr(path.read_bytes().decode("utf-8"))
    return str(message["X-Surveysync-Request"]), message["To"].addresses[0].addr_spec


# --- the property --------------------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_runs_never_ask_twice_within_cooldown_and_decide_every_sale_once(
    tmp_path: Path, scenario: Scenario
) -> None:
    """Over any nights, missed nights and late sales: nobody is asked twice within three
    months, and every sale in the covered stretch gets exactly one recorded decision."""
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    _play(scenario, directory)
    requests, decisions = _read_ledger(directory / "ledger.sqlite")
    pos = _read_pos(directory / "pos.sqlite")
    run_of = {now.replace(tzinfo=TZ): index for index, now in enumerate(scenario.nows)}

    def keys(customer_id: str | None, at: datetime) -> set[str]:
        """The person keys of a customer as the run at ``at`` saw them."""
        if customer_id is None:
            return set()
        email = _normalized(scenario.email_at(run_of[at], customer_id))
        return {f"c:{customer_id}"} | ({f"e:{email}"} if email else set())

    # (a) no person gets two survey requests within the cooldown
    delivered = sorted(
        (r for r in requests if r.status not in ("rejected", "failed")), key=lambda r: r.created_at
    )
    assert all(r.status == "sent" for r in delivered), [r.status for r in delivered]
    for earlier, later in itertools.combinations(delivered, 2):
        shared = keys(earlier.customer_id, earlier.created_at) & keys(
            later.customer_id, later.created_at
        )
        if shared:
            allowed_from = next_eligible_at(earlier.created_at, COOLDOWN_MONTHS, TZ)
            assert later.created_at.astimezone(TZ) >= allowed_from, (
                f"{sorted(shared)} asked at {earlier.created_at} and at {later.created_at}"
            )

    # (b) every sale inside the covered stretch has exactly one decision ...
    in_window = {
        tid for tid, (sale_at, _) in pos.items() if FIRST_RUN_START < sale_at <= scenario.nows[-1]
    }
    decided: dict[str, list[DecisionRow]] = defaultdict(list)
    for d in decisions:
        decided[d.transaction_id].append(d)
    assert all(len(rows) == 1 for rows in decided.values())
    missing = sorted(in_window - set(decided), key=int)
    assert not missing, f"sales without a decision: {[(t, pos[t]) for t in missing]}"
    assert set(decided) <= set(pos), "a decision for a sale the POS does not have"
    # ... made on the sale as it stands now: a sale closed in time is not left as not_finalized
    stale = sorted(t for t in in_window if pos[t][1] and decided[t][0].reason == "not_finalized")
    assert not stale, f"closed sales still recorded as not_finalized: {stale}"
    assert all(decided[t][0].reason == "not_finalized" for t in in_window if not pos[t][1])

    # the ledger agrees with itself: each request is the decision of its sale
    by_request = {d.request_id: d for d in decisions if d.request_id is not None}
    assert all(d.reason is None for d in by_request.values())
    assert sorted(by_request) == sorted(r.id for r in requests)
    assert all(by_request[r.id].transaction_id == r.transaction_id for r in requests)

    # every cooldown skip is backed by a delivered request to the same person within the
    # cooldown, and every duplicate_in_run skip by a request to that person in the same run
    for d in decisions:
        mine = keys(d.customer_id, d.decided_at)
        if d.reason == "cooldown":
            assert any(
                r.created_at <= d.decided_at
                and d.decided_at.astimezone(TZ)
                < next_eligible_at(r.created_at, COOLDOWN_MONTHS, TZ)
                and keys(r.customer_id, r.created_at) & mine
                for r in delivered
            ), f"unexplained cooldown: {d}"
        elif d.reason == "duplicate_in_run":  # the chosen sale's request may have failed
            assert any(
                r.run_id == d.run_id and keys(r.customer_id, r.created_at) & mine for r in requests
            ), f"unexplained duplicate_in_run: {d}"

    # every sent request is one .eml file in the outbox, addressed to that customer
    outbox = directory / "outbox"
    files = {f.stem: f for f in outbox.glob("*.eml")} if outbox.exists() else {}
    assert sorted(files) == sorted(r.id for r in delivered)
    for r in delivered:
        header_id, address = _read_eml(files[r.id])
        assert header_id == r.id
        expected = _normalized(scenario.email_at(run_of[r.created_at], r.customer_id))
        assert normalize_email(address) == expected

    for reason in sorted({d.reason or "request" for d in decisions}):
        event(f"decision: {reason}")
    event(f"requests sent: {min(len(delivered), 3)}{'+' if len(delivered) >= 3 else ''}")
    event(f"requests failed: {sum(r.status == 'failed' for r in requests) > 0}")


# --- fixed examples of the same properties ---------------------------------------------------


def _play_in(tmp_path: Path, scenario: Scenario, pos_extra: str = "") -> Path:
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    _play(scenario, directory, pos_extra)
    return directory


@pytest.mark.parametrize(
    ("second_run", "asked_again"),
    [
        (datetime(2027, 2, 28, 4, 0), True),  # exactly three calendar months later
        (datetime(2027, 2, 28, 3, 59), False),  # one minute before
    ],
)
def test_cooldown_of_three_calendar_months_end_to_end(
    tmp_path: Path, second_run: datetime, asked_again: bool
) -> None:
    """Asked in the night of 30 November, a customer is asked again from 28 February on."""
    ann = Customer("C1", "Ann", "O'Brien", "ann@example.com")
    also_ann = Customer("C2", "Ann", "O'Brien", "ANN@Example.com")  # a second record
    scenario = Scenario(
        customers=[ann, also_ann],
        sales=[
            PlannedSale("C1", datetime(2026, 11, 29, 15, 0)),
            PlannedSale("C2", datetime(2027, 2, 27, 11, 0)),
        ],
        nows=[datetime(2026, 11, 30, 4, 0), second_run],
    )
    directory = _play_in(tmp_path, scenario)
    requests, decisions = _read_ledger(directory / "ledger.sqlite")
    reasons = {d.transaction_id: d.reason for d in decisions}
    assert reasons["1"] is None
    assert reasons["2"] == (None if asked_again else "cooldown")
    assert len(requests) == (2 if asked_again else 1)


def test_a_busy_day_read_in_several_chunks_is_decided_once(tmp_path: Path) -> None:
    """On a day with more sales than one read returns, each sale is decided once and each
    regular customer gets one survey."""
    customers = [
        Customer(f"C{n}", "Špela", "Kovačič", f"customer{n}@example.com") for n in range(1, 41)
    ]
    day = EPOCH + timedelta(days=10)
    sales = [
        PlannedSale(f"C{(n % 40) + 1}", day + timedelta(hours=9, seconds=60 * (n // 3)))
        for n in range(250)
    ]  # three sales per minute: ties across chunk boundaries
    directory = _play_in(
        tmp_path,
        Scenario(customers, sales, [day + timedelta(days=1)]),
        pos_extra="chunk_size = 100",
    )
    requests, decisions = _read_ledger(directory / "ledger.sqlite")
    assert sorted(int(d.transaction_id) for d in decisions) == list(range(1, 251))
    assert sorted(r.customer_id for r in requests) == sorted(c.id for c in customers)
    assert all(r.status == "sent" for r in requests)
    chosen = {d.transaction_id for d in decisions if d.reason is None}
    # the last sale of each customer that day is the one asked about
    last_of = {f"C{(n % 40) + 1}": str(n + 1) for n in range(250)}
    assert chosen == set(last_of.values())


# --- cases the property found ----------------------------------------------------------------


@pytest.mark.parametrize(
    "email", ["jürgen.müller@example.de", "민준@example.kr", "ÉMILE@example.fr"]
)
def test_an_address_the_rules_accept_is_mailed_or_skipped_never_failed(
    tmp_path: Path, email: str
) -> None:
    """A customer whose address has a non-ASCII local part, which the rules accept, gets the
    survey (written as an SMTPUTF8 message), never a silently `failed` request."""
    assert normalize_email(email)  # the rules call it valid
    scenario = Scenario(
        customers=[Customer("C1", "Jürgen", "Müller", email)],
        sales=[PlannedSale("C1", EPOCH + timedelta(hours=12))],
        nows=[EPOCH + timedelta(days=1, hours=4)],
    )
    directory = _play_in(tmp_path, scenario)
    requests, decisions = _read_ledger(directory / "ledger.sqlite")
    [decision] = decisions
    if decision.reason is None:
        [request] = requests
        assert request.status == "sent", f"request {request.status} for {email!r}"
        assert (directory / "outbox" / f"{request.id}.eml").exists()
    else:
        assert decision.reason == "invalid_email"


def test_after_missed_nights_the_most_recent_sale_is_asked_about(tmp_path: Path) -> None:
    """When one run covers several days (nights were missed), the customer is asked about
    their most recent sale and the older one is recorded as `duplicate_in_run`, not the
    other way round with the newest as `cooldown`."""
    scenario = Scenario(
        customers=[Customer("C1", "Ann", "O'Brien", "ann@example.com")],
        sales=[
            PlannedSale("C1", datetime(2026, 3, 2, 12, 0)),  # Monday
            PlannedSale("C1", datetime(2026, 3, 4, 12, 0)),
        ],  # Wednesday
        nows=[datetime(2026, 3, 5, 4, 0)],
    )  # the first run since
    directory = _play_in(tmp_path, scenario)
    _, decisions = _read_ledger(directory / "ledger.sqlite")
    reasons = {d.transaction_id: d.reason for d in decisions}
    assert reasons == {"1": "duplicate_in_run", "2": None}


def test_an_international_domain_is_written_as_a_deliverable_address(tmp_path: Path) -> None:
    """For lotte@bücher.example.nl the To header holds the domain in a form a mail server
    can deliver to (IDNA or UTF-8), never an RFC 2047 encoded word inside the address."""
    scenario = Scenario(
        customers=[Customer("C1", "Lotte", "Jansen", "lotte@bücher.example.nl")],
        sales=[PlannedSale("C1", EPOCH + timedelta(hours=12))],
        nows=[EPOCH + timedelta(days=1, hours=4)],
    )
    directory = _play_in(tmp_path, scenario)
    [eml] = list((directory / "outbox").glob("*.eml"))
    to_line = next(
        line
        for line in eml.read_bytes().decode("ascii", "replace").splitlines()
        if line.startswith("To:")
    )
    addr_spec = re.search(r"<([^>]*)>", to_line)
    assert addr_spec is not None, to_line
    assert "=?" not in addr_spec.group(1), f"encoded word inside the address: {to_line}"
