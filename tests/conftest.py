"""Shared fixtures: a real SQLite POS (Ascend-like schema), a real SQLite ledger, the outbox."""

from __future__ import annotations

import contextlib
import email
import email.policy
import io
import os
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import stamina
import structlog
from click.testing import CliRunner, Result
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from surveysync import logging as logs
from surveysync.cli import main
from surveysync.config import Settings, load_settings
from surveysync.demo import PosWriter, new_pos
from surveysync.sync import RunReport, SyncRequest, run_sync
from tests import smtp_server

TZ = ZoneInfo("Europe/Amsterdam")


def local(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    """An aware time in the store's zone."""
    return datetime(year, month, day, hour, minute, tzinfo=TZ)


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[io.StringIO]:
    """Log into a buffer (tests may read it) and restore structlog's defaults afterwards."""
    buffer = io.StringIO()
    logs.configure("debug", stream=buffer)
    yield buffer
    structlog.reset_defaults()


# What `Store.use_own_values` writes: none of it on a domain reserved for examples.
OWN_EMAIL_SETTINGS = {
    "from_name": '"Test Cycles"',
    "from_address": '"feedback@test-cycles.nl"',
    "reply_to": '"service@test-cycles.nl"',
    "unsubscribe_mailto": '"unsubscribe@test-cycles.nl"',
    "survey_base_url": '"https://survey.test-cycles.nl/s"',
    "unsubscribe_base_url": '"https://survey.test-cycles.nl/u"',
    "link_secret": '"test-cycles-own-link-secret-of-at-least-32-bytes"',
}


class Store:
    """A store under test: POS rows are added with ``pos``, runs made with ``run``."""

    def __init__(self, root: Path, ledger_url: str | None = None) -> None:
        self.root = root
        self.pos: PosWriter = new_pos(root / "pos.sqlite")
        self.pos.location(1, "Centrum")
        self.pos.location(2, "Noord")
        self.pos.location(3, "Magazijn")
        self.pos.employee(1, "Anouk")
        self.ledger_path = root / "ledger.sqlite"
        self.ledger_url = ledger_url or f"sqlite:///{self.ledger_path.as_posix()}"
        self.outbox = root / "outbox"
        self.config_path = root / "surveysync.toml"
        self.first_run_start: str | None = "2026-01-01T00:00:00"  # None: not configured
        self.extra: dict[str, dict[str, str]] = {}

    def customer(self, customer_id: str, email_address: str | None = None, **kwargs: Any) -> None:
        address = (
            email_address if email_address is not None else f"{customer_id.lower()}@example.com"
        )
        self.pos.customer(
            customer_id,
            kwargs.pop("first", "Kim"),
            kwargs.pop("last", "Jansen"),
            address or None,
            **kwargs,
        )

    def write_config(self) -> Path:
        sections: dict[str, dict[str, str]] = {
            "store": {
                "id": '"test"',
                "name": '"Test Cycles"',
                "timezone": '"Europe/Amsterdam"',
                "locations": '{ "1" = "Centrum", "2" = "Noord", "3" = "Magazijn" }',
            },
            "pos": {"url": f'"sqlite:///{(self.root / "pos.sqlite").as_posix()}"'},
            "ledger": {"url": f'"{self.ledger_url}"'},
            "sync": {}
            if self.first_run_start is None
            else {"first_run_start": self.first_run_start},
            "provider": {"outbox_dir": f'"{self.outbox.as_posix()}"'},
            "schedule": {"heartbeat_file": f'"{(self.root / "heartbeat.json").as_posix()}"'},
        }
        for section, values in self.extra.items():
            sections.setdefault(section, {}).update(values)
        text = "\n".join(
            f"[{name}]\n" + "\n".join(f"{k} = {v}" for k, v in values.items())
            for name, values in sections.items()
        )
        self.config_path.write_text(text + "\n", encoding="utf-8")
        return self.config_path

    def use_own_values(self) -> None:
        """A sender, links and link secret of the store's own, as an admin sets them after
        `surveysync init`: the built-in example values make `surveysync check` fail."""
        self.extra.setdefault("email", {}).update(OWN_EMAIL_SETTINGS)

    def settings(self) -> Settings:
        self.pos.flush()
        return load_settings(self.write_config())

    def run(self, now: datetime, **kwargs: Any) -> RunReport:
        return run_sync(self.settings(), SyncRequest(now=now, **kwargs))

    def cli(self, *args: str) -> Result:
        self.pos.flush()
        self.write_config()
        return CliRunner().invoke(main, ["--config", str(self.config_path), *args])

    # --- what a user would look at ---------------------------------------------------------

    def ledger_rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of plain SQL on the ledger, whichever database it is; dates come back as text."""
        engine = create_engine(self.ledger_url)
        try:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(sql).fetchall()
        finally:
            engine.dispose()
        return [tuple(_as_text(value) for value in row) for row in rows]

    def decisions(self) -> dict[str, str]:
        """transaction id -> reason code, or 'request' when a survey request was made."""
        rows = self.ledger_rows("SELECT transaction_id, reason FROM decisions")
        return {tid: reason or "request" for tid, reason in rows}

    def messages(self) -> list[EmailMessage]:
        if not self.outbox.is_dir():
            return []
        # Decoded first: a message to a non-ASCII local part has UTF-8 headers (RFC 6532).
        texts = [path.read_bytes().decode("utf-8") for path in sorted(self.outbox.glob("*.eml"))]
        return [
            email.message_from_string(text, policy=email.policy.default)  # type: ignore[misc]
            for text in texts
        ]

    def recipients(self) -> list[str]:
        return sorted(str(m["To"].addresses[0].addr_spec) for m in self.messages())


def _as_text(value: Any) -> Any:
    # SQLite hands back dates and times as text; PostgreSQL as objects. Tests compare text.
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return value


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


# --- servers ---------------------------------------------------------------------------------

# CI sets this: there a test that needs a server fails when the server is missing, never skips.
REQUIRE_SERVICES = os.environ.get("SURVEYSYNC_REQUIRE_SERVICES") == "1"
POSTGRES_ADMIN_URL = os.environ.get(
    "SURVEYSYNC_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_ADMIN_URL = os.environ.get(
    "SURVEYSYNC_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/mysql"
)


def server_missing(what: str, why: object) -> None:
    """Skip on a laptop without the server; fail loudly where servers are required."""
    message = f"{what} is not reachable ({why})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; SURVEYSYNC_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"surveysync_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except (SQLAlchemyError, ImportError) as exc:
        admin.dispose()
        server_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL}", exc)
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_postgres() as url:
        yield url


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh, empty MariaDB database for one test (pymysql URL), dropped afterwards."""
    server = create_engine(MARIADB_ADMIN_URL)
    name = f"surveysync_test_{uuid.uuid4().hex[:12]}"
    try:
        with server.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except (SQLAlchemyError, ImportError) as exc:
        server.dispose()
        server_missing(f"MariaDB at {MARIADB_ADMIN_URL}", exc)
    try:
        yield make_url(MARIADB_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        server.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every ledger backend the product supports, for tests that must hold on each."""
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path / 'ledger.sqlite').as_posix()}"
    return str(request.getfixturevalue("postgres_url"))


def days(n: int) -> timedelta:
    return timedelta(days=n)


@pytest.fixture
def retries_without_waiting() -> Iterator[None]:
    """stamina retries at once, up to each test's configured attempts. Not autouse: a module
    asks for it with ``pytestmark = pytest.mark.usefixtures("retries_without_waiting")``, and
    every other test keeps stamina's real waits."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


@pytest.fixture
def start_server() -> Iterator[smtp_server.StartServer]:
    """Start real SMTP servers for a test; every one is stopped, and its port let go, after."""
    yield from smtp_server.servers_for_a_test()
