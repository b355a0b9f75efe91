"""A chain: three stores, each with its own POS database (SQLite, PostgreSQL, MariaDB) and
its own `surveysync run` daemon, all three started at once on one shared PostgreSQL ledger.
A person who shopped at every store is asked once; an unsubscribe at one store holds at all
of them; each store's `status` shows its own runs and nothing of the others'."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from surveysync.demo import PosWriter, create_pos_schema
from tests.conftest import TZ, Store, fresh_postgres
from tests.test_daemon_process import Daemon

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="sends POSIX signals; Windows stops services with Ctrl-Break"
)

YESTERDAY = datetime.now(TZ).replace(tzinfo=None, microsecond=0) - timedelta(days=1)


@dataclass
class Shop:
    """One store of the chain: its Store helper (config, outbox) and its POS database."""

    name: str
    store: Store

    def customer(self, customer_id: str, address: str) -> None:
        self.store.customer(customer_id, address)

    def sale(self, customer_id: str, minute: int) -> None:
        self.store.pos.sale(customer_id, YESTERDAY.replace(hour=10, minute=minute))


def _shop(name: str, root: Path, ledger_url: str, pos_url: str | None) -> Shop:
    store = Store(root, ledger_url)
    if pos_url is not None:  # this store's POS lives in a database server
        engine = create_engine(pos_url)
        create_pos_schema(engine)
        store.pos = PosWriter(engine)
        store.pos.location(1, "Centrum")
        store.pos.employee(1, "Anouk")
        store.extra["pos"] = {"url": f'"{pos_url}"'}
    store.first_run_start = (YESTERDAY - timedelta(days=3)).strftime("%Y-%m-%dT00:00:00")
    store.extra.setdefault("store", {})["id"] = f'"{name}"'
    store.extra["logging"] = {"dir": f'"{(root / "logs").as_posix()}"'}
    store.extra["schedule"] = {"heartbeat_file": f'"{(root / "beat.json").as_posix()}"'}
    return Shop(name, store)


@pytest.fixture
def chain(tmp_path: Path, mariadb_url: str) -> Iterator[list[Shop]]:
    with fresh_postgres() as ledger_url, fresh_postgres() as pos_url:
        shops = [
            _shop("north", tmp_path / "north", ledger_url, None),
            _shop("centre", tmp_path / "centre", ledger_url, pos_url),
            _shop("south", tmp_path / "south", ledger_url, mariadb_url),
        ]
        yield shops
        for shop in shops:
            shop.store.pos.engine.dispose()


def run_daemons_at_once(shops: list[Shop]) -> list[dict[str, object]]:
    """Start every store's daemon together, await each one's catch-up run, stop them all."""
    for shop in shops:
        shop.store.settings()  # writes the POS rows and the config file
    daemons = [Daemon(s.store.config_path, s.store.root) for s in shops]
    try:
        finished = [d.await_event("run.finished", timeout=300) for d in daemons]
        for daemon in daemons:
            daemon.process.send_signal(signal.SIGTERM)
        assert [d.process.wait(timeout=60) for d in daemons] == [0, 0, 0]
        return finished
    finally:
        for daemon in daemons:
            if daemon.process.poll() is None:
                daemon.process.kill()
            daemon.process.wait()
            daemon.close()


def test_a_chain_asks_each_person_once_and_an_unsubscribe_holds_everywhere(
    chain: list[Shop],
) -> None:
    north, centre, south = chain
    for n, shop in enumerate(chain):  # Ann shops at every store, on the same day
        shop.customer(f"A{n}", "ann@example.com")
        shop.sale(f"A{n}", minute=n)
    for shop in (north, south):  # Bob at two; he unsubscribed at the north store
        shop.customer("B", "bob@example.com")
        shop.sale("B", minute=10)
    centre.customer("C", "carl@example.com")
    centre.sale("C", minute=20)
    suppressed = north.store.cli("suppress", "add", "--email", "bob@example.com")
    assert suppressed.exit_code == 0, suppressed.output

    finished = run_daemons_at_once(chain)

    assert sorted(str(f["store"]) for f in finished) == ["centre", "north", "south"]
    recipients = sorted(r for shop in chain for r in shop.store.recipients())
    assert recipients == ["ann@example.com", "carl@example.com"]
    reasons = sorted(
        str(reason)
        for (reason,) in north.store.ledger_rows(
            "SELECT reason FROM decisions WHERE customer_id IN ('A0', 'A1', 'A2', 'B')"
        )
    )
    assert reasons == ["None", "cooldown", "cooldown", "unsubscribed", "unsubscribed"]


def test_each_store_status_shows_its_own_runs(chain: list[Shop]) -> None:
    for n, shop in enumerate(chain):
        for k in range(n + 1):  # north sells once, centre twice, south three times
            shop.customer(f"P{n}{k}", f"p{n}{k}@example.com")
            shop.sale(f"P{n}{k}", minute=k)

    run_daemons_at_once(chain)

    for n, shop in enumerate(chain):
        result = shop.store.cli("status", "--json")
        status = json.loads(result.output)
        assert status["store"] == shop.name
        assert [r["counts"].get("sent") for r in status["runs"]] == [n + 1]
        assert status["requests_by_status"] == {"sent": n + 1}
        assert len(shop.store.recipients()) == n + 1
