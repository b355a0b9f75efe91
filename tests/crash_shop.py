"""The shop of the crash harness: its POS (built with ``surveysync.demo``'s writer) and the
surveysync configuration that points it at the crash receiver.

A generated shop has several thousand sales over several days: regulars who come back (so the
cooldown matters), walk-ins, returns, sales still open, people without a usable address or
who opted out, a few addresses the receiver refuses (``bounce…``) and a few households that
share one address. The harness feeds the sales into the POS in slices, oldest first, as a
shop's days would arrive; every sale stays inside the look-back, so every sync reads them all.

This module only writes the POS and the configuration it creates; it never touches surveysync's
ledger.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from surveysync.demo import PosWriter, new_pos

TZ = ZoneInfo("Europe/Amsterdam")
WEBHOOK_SECRET = "crash-harness-webhook-secret"
HASH_SECRET = "crash-harness-person-key-secret"
BAD_MARKER = "bounce"  # the receiver refuses any address whose local part starts with it
LOCATIONS = {1: "Centrum", 2: "Noord", 3: "Werkplaats"}
_FIRST_NAMES = ["Jan", "Siobhán", "José", "민준", "Žiga", "Emma", "Daan", "Lucía", "Noah"]
_LANGUAGES = ["nl", "en", "es", "ko", "sl"]


@dataclass(frozen=True)
class Customer:
    customer_id: str
    first_name: str
    email: str | None
    language: str = "en"
    include: bool = True
    unsubscribed: bool = False


@dataclass(frozen=True)
class PlannedSale:
    customer_id: str | None
    at: datetime  # naive store-local time, as the POS keeps it
    location_id: int = 1
    kind: str = "sale"
    finalized: bool = True


@dataclass(frozen=True)
class Shop:
    customers: list[Customer]
    sales: list[PlannedSale]  # oldest first
    first_day: datetime  # naive local midnight before the oldest sale


@dataclass(frozen=True)
class HttpTiming:
    """``provider.http`` for a harness run: short budgets, so faults end runs often."""

    timeout_seconds: float = 2.0
    connect_timeout_seconds: float = 1.0
    retry_attempts: int = 3
    retry_seconds: float = 4.0


def generate_shop(seed: int, sales: int, days: int, now: datetime) -> Shop:
    """A shop of ``sales`` sales over the ``days`` days up to ``now`` (naive local)."""
    rng = random.Random(seed)
    customers = [_customer(rng, n) for n in range(1, max(20, sales // 4) + 1)]
    regulars = customers[: max(5, len(customers) // 3)]
    planned = [_sale(rng, customers, regulars, now, days) for _ in range(sales)]
    planned.sort(key=lambda s: s.at)
    first_day = datetime.combine((now - timedelta(days=days)).date(), datetime.min.time())
    return Shop(customers, planned, first_day)


def scripted_shop(customers: int, bad: tuple[int, ...] = (), *, now: datetime) -> Shop:
    """A small shop for a scripted trial: customer ``n`` (from 1) buys once, yesterday at
    10:00 plus ``n`` minutes, so the sales, and so the first batch, are in customer order;
    the customers numbered in ``bad`` have an address the receiver refuses."""
    day = datetime.combine((now - timedelta(days=1)).date(), datetime.min.time())
    people = [
        Customer(
            f"C{n:05d}",
            "Kim",
            f"{BAD_MARKER}{n}@example.com" if n in bad else f"person{n}@example.com",
        )
        for n in range(1, customers + 1)
    ]
    sales = [
        PlannedSale(c.customer_id, day + timedelta(hours=10, minutes=n))
        for n, c in enumerate(people, start=1)
    ]
    return Shop(people, sales, day - timedelta(days=1))


def _customer(rng: random.Random, number: int) -> Customer:
    customer_id = f"C{number:05d}"
    email: str | None = f"person{number}@example.com"
    roll = rng.random()
    if roll < 0.03:
        email = f"{BAD_MARKER}{number}@example.com"
    elif roll < 0.05:
        email = None
    elif roll < 0.07:
        email = "not-an-address"
    elif roll < 0.08 and number > 1:
        email = f"person{number - 1}@example.com"  # a household sharing one address
    return Customer(
        customer_id,
        rng.choice(_FIRST_NAMES),
        email,
        rng.choice(_LANGUAGES),
        include=rng.random() > 0.04,
        unsubscribed=rng.random() < 0.03,
    )


def _sale(
    rng: random.Random,
    customers: list[Customer],
    regulars: list[Customer],
    now: datetime,
    days: int,
) -> PlannedSale:
    day = now.date() - timedelta(days=rng.randrange(days))
    at = datetime.combine(day, datetime.min.time()) + timedelta(
        hours=rng.randint(9, 18), minutes=rng.randint(0, 59), seconds=rng.randint(0, 59)
    )
    latest = now - timedelta(minutes=2)
    if at > latest:  # today's sales happened in the hours before the harness started
        at = latest - timedelta(seconds=rng.randint(0, 3 * 3600))
    pool = regulars if rng.random() < 0.4 else customers
    customer = None if rng.random() < 0.08 else rng.choice(pool).customer_id
    return PlannedSale(
        customer,
        at,
        location_id=rng.choices(list(LOCATIONS), weights=[60, 30, 10])[0],
        kind=rng.choices(["sale", "return", "void"], weights=[95, 4, 1])[0],
        finalized=rng.random() > 0.04,
    )


class PosFeeder:
    """Writes the shop's customers at once and its sales in slices, oldest first."""

    def __init__(self, path: Path, shop: Shop) -> None:
        self.path = path
        self.shop = shop
        self.fed = 0
        self._writer: PosWriter = new_pos(path)
        for location_id, name in LOCATIONS.items():
            self._writer.location(location_id, name)
        self._writer.employee(1, "Anouk")
        for c in shop.customers:
            self._writer.customer(
                c.customer_id,
                c.first_name,
                "Jansen",
                c.email,
                language=c.language,
                include=c.include,
                unsubscribed=c.unsubscribed,
            )

    @property
    def left(self) -> int:
        return len(self.shop.sales) - self.fed

    def feed(self, count: int) -> int:
        """Write the next ``count`` sales; returns how many were written."""
        part = self.shop.sales[self.fed : self.fed + count]
        for sale in part:
            self._writer.sale(
                sale.customer_id,
                sale.at,
                location_id=sale.location_id,
                kind=sale.kind,
                finalized=sale.finalized,
            )
        self._writer.flush()
        self.fed += len(part)
        return len(part)

    def close(self) -> None:
        self._writer.engine.dispose()


def config_toml(
    root: Path,
    ledger_url: str,
    webhook_url: str,
    *,
    first_day: datetime,
    lookback_days: int,
    batch_size: int,
    timing: HttpTiming,
) -> str:
    """The configuration every sync of a harness run uses."""
    locations = ", ".join(f'"{k}" = "{v}"' for k, v in LOCATIONS.items())
    return f"""[store]
id = "crash"
name = "Crash Cycles"
timezone = "{TZ.key}"
locations = {{ {locations} }}

[pos]
url = "sqlite:///{(root / "pos.sqlite").as_posix()}"

[ledger]
url = "{ledger_url}"
hash_secret = "{HASH_SECRET}"

[sync]
first_run_start = {first_day.isoformat()}
lookback_days = {lookback_days}

[provider]
kind = "webhook"
batch_size = {batch_size}

[provider.http]
timeout_seconds = {timing.timeout_seconds}
connect_timeout_seconds = {timing.connect_timeout_seconds}
retry_attempts = {timing.retry_attempts}
retry_seconds = {timing.retry_seconds}

[provider.webhook]
url = "{webhook_url}"
secret = "{WEBHOOK_SECRET}"

[logging]
level = "info"

[schedule]
heartbeat_file = "{(root / "heartbeat.json").as_posix()}"
"""
