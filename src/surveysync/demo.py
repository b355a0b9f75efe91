"""A realistic demo store: an Ascend-like POS database in SQLite, filled with two months of sales.

Several locations, a few thousand sales, customers whose names are Dutch, Spanish, Korean,
Slovenian, Irish or carry an emoji, and enough odd cases that every skip reason shows up in
one run. ``create_pos_schema`` and ``PosWriter`` are also what the tests build their POS
databases with, so the demo and the tests exercise the same schema as the ``ascend`` preset.
After the nights, the customers answer (``demo_answers``) and the demo writes the HTML report.

This module writes to a POS database it creates; it never touches an existing one. The demo
sends through the outbox only, with alerts off: it never emails anyone.
"""

from __future__ import annotations

import email
import email.policy
import html
import os
import random
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    func,
    insert,
    select,
    text,
)

from surveysync import logging as logs
from surveysync.config import Settings, load_settings
from surveysync.demo_answers import play_answers
from surveysync.ledger import open_ledger, reports
from surveysync.ledger.schema import decisions, responses
from surveysync.model import ResponseStatus
from surveysync.report import ReportOptions, make_report
from surveysync.report.figures import Report
from surveysync.sync import ProgressHook, RunReport, SyncRequest, run_sync

pos_metadata = MetaData()
locations_table = Table(
    "locations",
    pos_metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
)
employees_table = Table(
    "employees",
    pos_metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
)
customers_table = Table(
    "customers",
    pos_metadata,
    Column("id", String(20), primary_key=True),
    Column("first_name", String(600)),
    Column("last_name", String(600)),
    Column("email", String(320)),
    Column("language", String(10)),
    Column("include_in_communications", Boolean, nullable=False, default=True),
    Column("unsubscribed", Boolean, nullable=False, default=False),
)
transactions_table = Table(
    "transactions",
    pos_metadata,
    Column("id", Integer, primary_key=True),
    Column("customer_id", String(20), ForeignKey("customers.id")),
    Column("location_id", Integer, ForeignKey("locations.id"), nullable=False),
    Column("employee_id", Integer, ForeignKey("employees.id")),
    Column("created_at", DateTime, nullable=False, index=True),
    Column("finalized_at", DateTime, index=True),
    Column("total", Numeric(10, 2), nullable=False),
    Column("kind", String(10), nullable=False, default="sale"),
)

DEMO_TZ = ZoneInfo("Europe/Amsterdam")
DEMO_DAYS = 60
# The story the demo tells: surveysync was installed this many days ago. Its first night
# caught up on the month of sales before (some too old to ask about by then); every night
# since, it ran at 23:00, so repeat customers meet the cooldown.
DEMO_INSTALLED_DAYS_AGO = 25
DEMO_LOCATIONS = {1: "Centrum", 2: "Noord", 3: "Werkplaats Oost", 4: "Magazijn"}
DEMO_EXCLUDED_LOCATION = 4
DEMO_EXCLUDED_CUSTOMER = "C0007"
DEMO_EMPLOYEES = {1: "Anouk", 2: "Bram", 3: "Carmen", 4: "Dae-jung"}
DEMO_WEB_PORT = 8080
DEMO_REVIEW_URL = "https://reviews.example/demo-cycles"
REPORT_FILE = "report.html"

# (first, last, language, email local part): names are data, whatever they hold.
_PEOPLE = [
    ("Jan", "de Vries", "nl", "jan.devries"),
    ("Anneke", "van 't Hoff", "nl", "anneke.vanthoff"),
    ("Jürgen", "Müller", "nl", "juergen.mueller"),
    ("Siobhán", "O'Brien", "en", "siobhan.obrien"),
    ("José", "Núñez", "es", "jose.nunez"),
    ("María", "García-López", "es", "maria.garcia"),
    ("민준", "김", "ko", "minjun.kim"),
    ("서연", "이", "ko", "seoyeon.lee"),
    ("Žiga", "Novak", "sl", "ziga.novak"),
    ("Špela", "Kovačič", "sl", "spela.kovacic"),
    ("Sam", "Fietser 🚲", "en", "sam.fietser"),
    ("Emma", "Smith", "en", "emma.smith"),
    ("Daan", "Bakker", "nl", "daan.bakker"),
    ("Lotte", "Jansen", "nl", "lotte.jansen"),
    ("Lucía", "Fernández", "es", "lucia.fernandez"),
    ("Noah", "O'Connor", "en", "noah.oconnor"),
]
_INVALID_EMAILS = [
    "jan@@example.com",
    "geen-apenstaartje.example.nl",
    "a b@example.com",
    "name@",
    "@example.org",
    "dots..twice@example.com",
]


def create_pos_schema(engine: Engine) -> None:
    pos_metadata.create_all(engine)


@dataclass
class PosWriter:
    """Writes POS rows; tests use it to build exactly the data a case needs."""

    engine: Engine
    _next_id: int = 1
    _rows: list[dict[str, Any]] = field(default_factory=list)

    def location(self, location_id: int, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(locations_table).values(id=location_id, name=name))

    def employee(self, employee_id: int, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(employees_table).values(id=employee_id, name=name))

    def customer(
        self,
        customer_id: str,
        first_name: str | None,
        last_name: str | None,
        email: str | None,
        *,
        language: str | None = "en",
        include: bool = True,
        unsubscribed: bool = False,
    ) -> None:
        self.customers(
            [
                {
                    "id": customer_id,
                    "first_name": first_name,
                    "last_name": last_name,
                    "email": email,
                    "language": language,
                    "include_in_communications": include,
                    "unsubscribed": unsubscribed,
                }
            ]
        )

    def customers(self, rows: list[dict[str, Any]]) -> None:
        """Many customers in one transaction (one commit, so one wait for the disk)."""
        with self.engine.begin() as conn:
            conn.execute(insert(customers_table), rows)

    def sale(
        self,
        customer_id: str | None,
        at: datetime,
        *,
        location_id: int = 1,
        finalized: bool = True,
        total: str = "100.00",
        kind: str = "sale",
        employee_id: int | None = 1,
        finalized_at: datetime | None = None,
        transaction_id: int | None = None,
    ) -> int:
        """Queue one transaction (``flush`` writes them); returns its id."""
        if transaction_id is None:
            transaction_id = self._next_id
        self._next_id = max(self._next_id, transaction_id) + 1
        self._rows.append(
            {
                "id": transaction_id,
                "customer_id": customer_id,
                "location_id": location_id,
                "employee_id": employee_id,
                "created_at": at,
                "finalized_at": (finalized_at or at) if finalized else None,
                "total": Decimal(total),
                "kind": kind,
            }
        )
        return transaction_id

    def flush(self) -> None:
        if self._rows:
            with self.engine.begin() as conn:
                conn.execute(insert(transactions_table), self._rows)
            self._rows.clear()


def new_pos(path: Path) -> PosWriter:
    """A fresh, empty POS database file with the Ascend-like schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{path}")
    create_pos_schema(engine)
    return PosWriter(engine)


def build_demo_pos(
    path: Path, *, now: datetime, days: int = 60, sales: int = 3_000, seed: int = 7
) -> int:
    """Fill a new demo POS at ``path`` with sales up to ``now`` (naive, store time), never
    after it; returns the number of transactions written."""
    rng = random.Random(seed)
    writer = new_pos(path)
    for location_id, name in DEMO_LOCATIONS.items():
        writer.location(location_id, name)
    for employee_id, name in DEMO_EMPLOYEES.items():
        writer.employee(employee_id, name)
    customers = _demo_customers(writer, rng, count=max(50, sales // 4))
    for index in range(sales):
        _demo_sale(writer, rng, customers, now, days, index)
    writer.flush()
    _spoil_totals(writer, since=now - timedelta(days=10))
    writer.engine.dispose()
    return sales


def _spoil_totals(writer: PosWriter, since: datetime) -> None:
    """An old till wrote 'n/a' where two recent totals go: each becomes ``unreadable_row``,
    and the nights go on."""
    with writer.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE transactions SET total = 'n/a' WHERE id IN (SELECT id FROM transactions "
                "WHERE created_at >= :since ORDER BY id LIMIT 2)"
            ),
            {"since": since},
        )


def _demo_customers(writer: PosWriter, rng: random.Random, count: int) -> list[str]:
    rows: list[dict[str, Any]] = []
    for number in range(1, count + 1):
        first, last, language, local = _PEOPLE[number % len(_PEOPLE)]
        email: str | None = f"{local}{number}@example.com"
        roll = rng.random()
        if roll < 0.04:
            email = None
        elif roll < 0.07:
            email = rng.choice(_INVALID_EMAILS)
        rows.append(
            {
                "id": f"C{number:04d}",
                "first_name": first if rng.random() > 0.03 else None,
                "last_name": last,
                "email": email,
                "language": language,
                "include_in_communications": rng.random() > 0.06,
                "unsubscribed": rng.random() < 0.04,
            }
        )
    writer.customers(rows)
    return [row["id"] for row in rows]


def _demo_sale(
    writer: PosWriter,
    rng: random.Random,
    customers: list[str],
    now: datetime,
    days: int,
    index: int,
) -> None:
    today = now.date()
    day = today - timedelta(days=rng.randrange(0, days))
    at = datetime.combine(day, datetime.min.time()) + timedelta(
        hours=rng.randint(9, 17), minutes=rng.randint(0, 59), seconds=rng.randint(0, 59)
    )
    if day == today:  # today's sales happened in the hour before the demo runs
        at = now - timedelta(minutes=1 + index % 60)
    customer: str | None = (
        rng.choice(customers[: max(10, len(customers) // 3)])
        if rng.random() < 0.35
        else rng.choice(customers)
    )
    if rng.random() < 0.08:
        customer = None  # walk-in
    location = rng.choices(list(DEMO_LOCATIONS), weights=[50, 30, 17, 3])[0]
    kind = rng.choices(["sale", "return", "void"], weights=[95, 4, 1])[0]
    total = "0.00" if rng.random() < 0.02 else f"{rng.uniform(5, 2500):.2f}"
    finalized = not (day >= today - timedelta(days=5) and rng.random() < 0.1)
    writer.sale(
        customer,
        at,
        location_id=location,
        finalized=finalized,
        total=total,
        kind=kind,
        employee_id=rng.choice(list(DEMO_EMPLOYEES)),
    )
    second_visit = at + timedelta(hours=1, minutes=13)
    # The same customer at a second location that day, if that is not in the future.
    if customer and rng.random() < 0.02 and second_visit <= now:
        writer.sale(
            customer,
            second_visit,
            location_id=1 if location != 1 else 2,
            total=f"{rng.uniform(5, 80):.2f}",
        )


def demo_config_toml(directory: Path, outbox: Path, first_run_start: datetime) -> str:
    """The configuration the demo runs with, written beside its databases for later commands."""
    locations = ", ".join(f'"{k}" = "{v}"' for k, v in DEMO_LOCATIONS.items())
    return f"""# Written by `surveysync demo`: the demo store's configuration.
[store]
id = "demo"
name = "Demo Cycles"
timezone = "Europe/Amsterdam"
default_locale = "en"
locations = {{ {locations} }}

[pos]
# Relative paths are relative to this file's folder.
url = "sqlite:///pos.sqlite"
mapping = "ascend"
timestamps = "local"

[ledger]
url = "sqlite:///ledger.sqlite"

[rules]
excluded_locations = ["{DEMO_EXCLUDED_LOCATION}"]
excluded_customers = ["{DEMO_EXCLUDED_CUSTOMER}"]
minimum_total = 1.0

[sync]
first_run_start = {first_run_start.replace(microsecond=0).isoformat()}

[provider]
kind = "outbox"
outbox_dir = "{Path(os.path.relpath(outbox.resolve(), directory.resolve())).as_posix()}"

[web]
# `surveysync --config {(directory / "surveysync.toml").as_posix()} web` serves the survey page
# here; the links in the demo's emails open on it.
port = {DEMO_WEB_PORT}
public_url = "http://127.0.0.1:{DEMO_WEB_PORT}"

[review]
# The thank-you page invites customers to review the store here (a made-up address).
url = "{DEMO_REVIEW_URL}"

# [alerts] to is left empty, so alerts are off: the demo plays a month of answers,
# detractors included, and emails no one about them.
"""


def page_hint(config_path: Path, outbox: Path) -> list[str]:
    """How to try the survey page after the demo: the command that starts it, and one real
    score link from the outbox that opens on it (printed by `surveysync demo`)."""
    lines = [
        "Try the survey page a customer sees: start it with",
        f"  surveysync --config {config_path.as_posix()} web",
    ]
    emails = sorted(outbox.glob("*.eml"), key=lambda path: (path.stat().st_mtime, path.name))
    link = _score_link(emails, score=9)
    if link is not None:
        lines += ["then open a score link from the outbox in a browser, for example", f"  {link}"]
    return lines


def _score_link(emails: list[Path], score: int) -> str | None:
    for path in reversed(emails):  # the newest night's emails come last
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(("html",))
        if body is None:
            continue
        links = re.findall(r'href="([^"]+/s/[^"]+)"', body.get_content())
        if len(links) == 11:
            return html.unescape(links[score])
    return None


def demo_nights(now: datetime) -> list[datetime]:
    """When the daemon ran: 23:00 every night since it was installed, then ``now``."""
    today = now.astimezone(DEMO_TZ).date()
    first = today - timedelta(days=DEMO_INSTALLED_DAYS_AGO)
    nights = [
        datetime.combine(first + timedelta(days=n), time(23), tzinfo=DEMO_TZ)
        for n in range(DEMO_INSTALLED_DAYS_AGO + 1)
    ]
    return [night for night in nights if night < now] + [now]


def run_nights(settings: Settings, nights: list[datetime], progress: ProgressHook) -> RunReport:
    """The runs the daemon would have made, one per night, summed up as one report: what was
    sent, and each sale's final decision (a sale still open is re-decided every night, so the
    nightly counts would count it more than once)."""
    nightly: list[RunReport] = []
    progress("days", len(nights))
    for night in nights:
        nightly.append(run_sync(settings, SyncRequest(now=night)))
        progress("day", 1)
    counts: Counter[str] = Counter()
    for report in nightly:
        counts.update({k: report.counts[k] for k in ("sent", "rejected", "failed", "in_doubt")})
    counts.update(_final_decisions(settings))
    return RunReport(
        run_id=nightly[-1].run_id,
        kind=f"{len(nightly)} nightly runs",
        dry_run=False,
        window_start=nightly[0].window_start,
        window_end=nightly[-1].window_end,
        days=sorted({day for report in nightly for day in report.days}),
        counts=counts,
        status=nightly[-1].status,
    )


def _final_decisions(settings: Settings) -> Counter[str]:
    ledger = open_ledger(settings)
    try:
        decided = reports.reason_counts(ledger)
    finally:
        ledger.close()
    decided.pop("requested", None)
    return decided


def suppress_examples(settings: Settings, now: datetime) -> None:
    """Two admin suppressions, as a store would make them: one recent transaction (a warranty
    repair, say) and one customer who asked the shop in person never to be surveyed."""
    engine = create_engine(settings.pos.url.get_secret_value())
    t, c = transactions_table.c, customers_table.c
    eligible = (
        select(t.id)
        .join(customers_table, c.id == t.customer_id)
        .where(
            t.finalized_at.is_not(None),
            t.kind == "sale",
            t.location_id == 1,
            c.email.like("%@example.com"),
            c.include_in_communications.is_(True),
            c.unsubscribed.is_(False),
            t.total > 5,
        )
        .order_by(t.finalized_at.desc())
    )
    with engine.connect() as conn:
        transaction_id, other = conn.scalars(eligible.limit(2)).all()
        customer = conn.scalar(select(t.customer_id).where(t.id == other))
    engine.dispose()
    ledger = open_ledger(settings)
    try:
        ledger.suppressions.add(
            "transaction",
            ledger.keys.transaction(str(transaction_id)),
            f"transaction {transaction_id}",
            "admin",
            "warranty repair",
            now,
        )
        ledger.suppressions.add(
            "customer",
            ledger.keys.customer(str(customer)),
            f"customer {customer}",
            "admin",
            "asked in the shop",
            now,
        )
    finally:
        ledger.close()


def interesting_customer(settings: Settings) -> str:
    """The best `explain` example: a customer who answered with a comment and whose later
    sales met the cooldown (else any customer with sales in cooldown)."""
    commented = (
        select(decisions.c.customer_id)
        .join(responses, responses.c.request_id == decisions.c.request_id)
        .where(responses.c.comment.is_not(None), responses.c.status == ResponseStatus.CONFIRMED)
    )
    in_cooldown = (
        select(decisions.c.customer_id)
        .where(decisions.c.reason == "cooldown", decisions.c.customer_id.is_not(None))
        .group_by(decisions.c.customer_id)
        .order_by(func.count().desc(), decisions.c.customer_id)
        .limit(1)
    )
    ledger = open_ledger(settings)
    try:
        with ledger.reading() as conn:
            found = conn.scalar(in_cooldown.where(decisions.c.customer_id.in_(commented)))
            return str(found or conn.scalar(in_cooldown) or "C0001")
    finally:
        ledger.close()


def build_store(directory: Path, outbox: Path, sales: int, seed: int) -> Path:
    """A fresh demo store in ``directory`` (recreated): its POS, its config; the outbox's
    old emails removed. Returns the config file's path."""
    if directory.exists():
        shutil.rmtree(directory)
    for old in outbox.glob("*.eml") if outbox.is_dir() else ():
        old.unlink()
    now = datetime.now(DEMO_TZ).replace(tzinfo=None)
    first = datetime.combine(now.date() - timedelta(days=DEMO_DAYS), time(0))
    build_demo_pos(directory / "pos.sqlite", now=now, sales=sales, seed=seed)
    config_path = directory / "surveysync.toml"
    config_path.write_text(demo_config_toml(directory, outbox, first), encoding="utf-8")
    return config_path


@dataclass(frozen=True)
class DemoResult:
    config_path: Path
    settings: Settings
    report: RunReport  # the nights together
    example_customer: str  # a good one to `explain`
    answers: Counter[str]  # what the customers did (demo_answers.played)
    nps: Report  # the HTML report's figures
    report_path: Path


def play(
    directory: Path, outbox: Path, sales: int, seed: int, progress: ProgressHook
) -> DemoResult:
    """Build the demo store, play its nightly runs into the outbox and the month's answers
    into the ledger, and write the HTML report (``surveysync demo``). Raises SyncError when
    a night fails."""
    config_path = build_store(directory, outbox, sales, seed)
    settings = load_settings(config_path)
    logs.configure("warning", logs.secret_values(settings))
    now = datetime.now(settings.store.tz)
    suppress_examples(settings, now)
    report = run_nights(settings, demo_nights(now), progress)
    answers = play_answers(settings, now, seed)
    report_path = directory / REPORT_FILE
    nps = make_report(settings, ReportOptions(html=report_path, now=now))
    return DemoResult(
        config_path, settings, report, interesting_customer(settings), answers, nps, report_path
    )


def answer_lines(result: DemoResult) -> list[str]:
    """What the customers did, and the report with the overall NPS (printed last)."""
    played, total = result.answers, result.nps.total
    counted, sent = total.tally.responses, total.sent
    lines = [
        f"The customers answered {counted} of {sent} surveys ({_percent(counted, sent)}): "
        f"{total.answers.confirmed} sent the form ({played['comments']} with a comment), "
        f"{total.answers.clicked + total.answers.settled} clicked a score and left it there.",
        f"Link scanners fetched every link of {played['scanner_passes']} emails: kept, "
        f"never counted; {played['review_clicks']} customers followed the review invitation.",
        f"The report is in {result.report_path} (one file, opens offline in any browser).",
    ]
    interval = total.interval
    if total.nps is None or interval is None:
        return [*lines, "Overall NPS: - (no answers)"]
    return [
        *lines,
        f"Overall NPS: {round(total.nps, 1)} ± {round(interval.margin, 1)} "
        f"(90 % interval {round(interval.low, 1)} to {round(interval.high, 1)}), "
        f"from {counted} answers",
    ]


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "-"


def summary_lines(played: DemoResult, directory: Path, outbox: Path, sales: int) -> list[str]:
    """What ``surveysync demo`` prints around the nights' summary: the store first, then
    where the emails are, what to ask next, the survey page and the answers' NPS."""
    config = played.config_path
    lines = [
        f"demo store: {sales} sales over {DEMO_DAYS} days in {directory}/pos.sqlite",
        "",
        f"The survey emails are in {outbox}/ (one .eml file each; open one in a mail client).",
        "Ask why someone was or was not asked, for example:",
        f"  surveysync --config {config} explain --customer {played.example_customer}",
        f"  surveysync --config {config} status",
        f"  surveysync --config {config} sync    # a second run sends nothing new",
        f"  surveysync --config {config} report --html nps.html",
        "",
    ]
    return [*lines, *page_hint(config, outbox), "", *answer_lines(played)]
