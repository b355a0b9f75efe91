"""The ledger: claims that cannot collide, crash recovery, privacy, and its schema history."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from surveysync.ledger import Candidate, Ledger, create_ledger_engine, migrate, new_id
from surveysync.ledger.schema import metadata
from surveysync.model import RequestStatus
from surveysync.providers import OutgoingEmail, ProviderUnavailable, SendResult
from surveysync.sync import SyncError, SyncRequest, run_sync
from tests.conftest import Store, local

STATUS_COUNTS = "SELECT status, COUNT(*) FROM requests GROUP BY status ORDER BY status"


@pytest.fixture
def store(tmp_path: Path, ledger_url: str) -> Store:
    """The ledger's promises hold on every backend: these tests run on SQLite and PostgreSQL."""
    return Store(tmp_path, ledger_url)


class Crash(BaseException):
    """Stands for the process dying (power cut, kill -9) in the middle of a provider call."""


@dataclass
class ScriptedProvider:
    """An email service with scripted bad days: crashes, outages, refused addresses."""

    honours_idempotency_key: bool = False
    renders_templates: bool = False
    crash_on_call: int | None = None
    unavailable: bool = False
    unavailable_from_call: int | None = None
    refuse: set[str] = field(default_factory=set)
    no_answer: set[str] = field(default_factory=set)  # addresses it returns no result for
    defer: set[str] = field(default_factory=set)  # refused for now (a 4xx after retries)
    doubt: set[str] = field(default_factory=set)  # the connection died before the answer
    lost_after: int | None = None  # the provider is lost after this many messages of a call
    attempts: list[str] = field(default_factory=list)
    name: str = "scripted"
    max_batch_size: int = 2
    delivered: list[str] = field(default_factory=list)
    calls: int = 0

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise Crash
        if self.unavailable or self.calls >= (self.unavailable_from_call or self.calls + 1):
            raise ProviderUnavailable("connection refused")
        results: list[SendResult] = []
        for item in batch:
            if len(results) == self.lost_after:
                raise ProviderUnavailable("connection lost", results=results)
            to = item.message.recipient.addr_spec
            self.attempts.append(to)
            if to in self.no_answer:
                continue
            if to in self.defer:
                results.append(
                    SendResult(item.request_id, RequestStatus.PENDING, error="452 mailbox full")
                )
            elif to in self.doubt:
                results.append(SendResult(item.request_id, "in_doubt", error="connection lost"))
            elif to in self.refuse:
                results.append(SendResult(item.request_id, "rejected", error="550 no such user"))
            else:
                self.delivered.append(to)
                results.append(SendResult(item.request_id, "sent", f"msg-{item.request_id}"))
        return results

    def check(self) -> str:
        return "scripted"

    def close(self) -> None:
        return None


def _five_customers(store: Store) -> None:
    for n in range(5):
        store.customer(f"C{n}")
        store.pos.sale(f"C{n}", datetime(2026, 11, 20, 10, n))


def test_a_crash_mid_send_then_restart_never_sends_twice_without_idempotency(store: Store) -> None:
    """After a crash during a provider call, in-flight requests are held as in doubt, not resent."""
    _five_customers(store)
    provider = ScriptedProvider(crash_on_call=2)
    with pytest.raises(Crash):
        run_sync(store.settings(), SyncRequest(now=local(2026, 11, 20, 23)), provider=provider)
    assert store.ledger_rows(STATUS_COUNTS) == [
        ("sending", 2),
        ("sent", 2),
    ]

    restarted = ScriptedProvider()
    report = run_sync(
        store.settings(), SyncRequest(now=local(2026, 11, 20, 23, 30)), provider=restarted
    )

    assert report.counts["in_doubt"] == 2
    assert sorted(provider.delivered + restarted.delivered) == [
        "c0@example.com",
        "c1@example.com",
        "c4@example.com",
    ]
    assert store.ledger_rows(STATUS_COUNTS) == [
        ("in_doubt", 2),
        ("sent", 3),
    ]
    assert "in_doubt" in store.cli("status").output


def test_after_a_crash_an_idempotent_provider_gets_the_same_key_again(store: Store) -> None:
    """With idempotency keys, in-flight requests are retried with their own key: one email each."""
    _five_customers(store)
    with pytest.raises(Crash):
        run_sync(
            store.settings(),
            SyncRequest(now=local(2026, 11, 20, 23)),
            provider=ScriptedProvider(honours_idempotency_key=True, crash_on_call=2),
        )
    in_flight = {
        row[0] for row in store.ledger_rows("SELECT id FROM requests WHERE status = 'sending'")
    }

    store.run(local(2026, 11, 20, 23, 30))  # the outbox honours idempotency keys

    files = {path.stem for path in store.outbox.glob("*.eml")}
    assert in_flight <= files
    assert len(store.messages()) == 3  # the two in flight and the one never tried
    assert store.ledger_rows(STATUS_COUNTS) == [("sent", 5)]


def test_an_unavailable_provider_fails_the_run_and_the_next_run_sends(store: Store) -> None:
    """Nothing was sent, so nothing is lost: requests wait as pending and the day stays open."""
    _five_customers(store)
    with pytest.raises(SyncError, match="connection refused"):
        run_sync(
            store.settings(),
            SyncRequest(now=local(2026, 11, 20, 23)),
            provider=ScriptedProvider(unavailable=True),
        )
    # The first batch (two) was claimed and waits; the rest of the day is not decided yet.
    assert store.ledger_rows(STATUS_COUNTS) == [("pending", 2)]
    assert store.ledger_rows("SELECT COUNT(*) FROM decisions") == [(2,)]
    assert store.ledger_rows("SELECT COUNT(*) FROM coverage WHERE day = '2026-11-20'") == [(0,)]

    healthy = ScriptedProvider()
    run_sync(store.settings(), SyncRequest(now=local(2026, 11, 21, 1)), provider=healthy)

    assert sorted(healthy.delivered) == [f"c{n}@example.com" for n in range(5)]
    assert store.ledger_rows("SELECT COUNT(*) FROM coverage WHERE day = '2026-11-20'") == [(1,)]


def test_a_run_that_fails_half_way_leaves_its_older_days_to_the_next_run(store: Store) -> None:
    """After nights off, the freshest day is sent first; if the provider then goes down, the
    next run still reads the older days, although a newer day was already covered."""
    for n, day in enumerate((12, 14, 20)):  # a gap wider than the look-back
        store.customer(f"C{n}")
        store.pos.sale(f"C{n}", datetime(2026, 11, day, 12, 0))
    store.run(local(2026, 11, 10, 23))
    failing = ScriptedProvider(unavailable_from_call=2)
    with pytest.raises(SyncError, match="connection refused"):
        run_sync(store.settings(), SyncRequest(now=local(2026, 11, 20, 23)), provider=failing)
    assert failing.delivered == ["c2@example.com"]  # the 20th, newest first
    covered = store.ledger_rows("SELECT day FROM coverage WHERE day > '2026-11-10' ORDER BY day")
    assert [row[0] for row in covered] == [f"2026-11-{d}" for d in range(15, 21)]  # not the 14th

    healthy = ScriptedProvider()
    run_sync(store.settings(), SyncRequest(now=local(2026, 11, 21, 1)), provider=healthy)

    assert sorted(healthy.delivered) == ["c0@example.com", "c1@example.com"]
    assert store.ledger_rows("SELECT COUNT(*) FROM requests WHERE status = 'sent'") == [(3,)]


def test_a_refused_address_is_rejected_and_does_not_start_a_cooldown(store: Store) -> None:
    """The provider's refusal settles one request as rejected; the rest of the batch goes."""
    _five_customers(store)
    provider = ScriptedProvider(refuse={"c2@example.com"})
    report = run_sync(store.settings(), SyncRequest(now=local(2026, 11, 20, 23)), provider=provider)

    assert report.counts["rejected"] == 1 and report.counts["sent"] == 4
    assert store.ledger_rows("SELECT error FROM requests WHERE status = 'rejected'") == [
        ("550 no such user",)
    ]
    store.pos.sale("C2", datetime(2026, 11, 25, 10, 0))
    later = ScriptedProvider()
    run_sync(store.settings(), SyncRequest(now=local(2026, 11, 25, 23)), provider=later)
    assert later.delivered == ["c2@example.com"]


def test_a_refused_person_is_tried_once_per_run_not_once_per_day(store: Store) -> None:
    """After nights off, a customer whose address the provider refuses gets one attempt,
    about the newest sale; their older sale in the same run is duplicate_in_run."""
    store.customer("C1")
    store.pos.sale("C1", datetime(2026, 11, 18, 12, 0))
    store.pos.sale("C1", datetime(2026, 11, 20, 12, 0))
    store.run(local(2026, 11, 17, 23))
    provider = ScriptedProvider(refuse={"c1@example.com"})
    run_sync(store.settings(), SyncRequest(now=local(2026, 11, 20, 23)), provider=provider)

    assert provider.attempts == ["c1@example.com"]
    assert store.decisions() == {"1": "duplicate_in_run", "2": "request"}
    assert store.ledger_rows(STATUS_COUNTS) == [("rejected", 1)]


def test_a_request_the_provider_gives_no_answer_for_is_held_in_doubt(store: Store) -> None:
    """A provider that returns no result for one request leaves it in doubt, listed by
    status, never in 'sending' under a day marked covered; the others are sent."""
    _five_customers(store)
    provider = ScriptedProvider(no_answer={"c3@example.com"})
    report = run_sync(store.settings(), SyncRequest(now=local(2026, 11, 20, 23)), provider=provider)

    assert (report.counts["sent"], report.counts["in_doubt"]) == (4, 1)
    assert store.ledger_rows(STATUS_COUNTS) == [("in_doubt", 1), ("sent", 4)]
    assert "in_doubt" in store.cli("status").output


def test_a_deferred_request_waits_for_the_next_run_and_an_in_doubt_one_is_not_resent(
    store: Store,
) -> None:
    """'Refused for now' goes back to pending and the next run sends it once; 'may have been
    sent' is held in doubt and never sent again."""
    _five_customers(store)
    first = ScriptedProvider(defer={"c1@example.com"}, doubt={"c2@example.com"})
    report = run_sync(store.settings(), SyncRequest(now=local(2026, 11, 20, 23)), provider=first)
    assert (report.counts["sent"], report.counts["pending"], report.counts["in_doubt"]) == (
        3,
        1,
        1,
    )
    assert store.ledger_rows(STATUS_COUNTS) == [("in_doubt", 1), ("pending", 1), ("sent", 3)]

    second = ScriptedProvider()
    run_sync(store.settings(), SyncRequest(now=local(2026, 11, 21, 23)), provider=second)
    assert second.delivered == ["c1@example.com"]
    assert store.ledger_rows(STATUS_COUNTS) == [("in_doubt", 1), ("sent", 4)]


def test_with_the_resend_policy_requests_in_doubt_go_out_again_once(store: Store) -> None:
    """sync.in_doubt = "resend" is the operator accepting a rare duplicate: the next run sends
    what was held in doubt, once, and it ends sent."""
    _five_customers(store)
    store.extra["sync"] = {"in_doubt": '"resend"'}
    first = ScriptedProvider(doubt={"c2@example.com"})
    run_sync(store.settings(), SyncRequest(now=local(2026, 11, 20, 23)), provider=first)
    assert store.ledger_rows(STATUS_COUNTS) == [("in_doubt", 1), ("sent", 4)]

    second = ScriptedProvider()
    run_sync(store.settings(), SyncRequest(now=local(2026, 11, 21, 23)), provider=second)
    third = ScriptedProvider()
    run_sync(store.settings(), SyncRequest(now=local(2026, 11, 22, 23)), provider=third)
    assert (second.delivered, third.delivered) == (["c2@example.com"], [])
    assert store.ledger_rows(STATUS_COUNTS) == [("sent", 5)]


def test_a_provider_lost_mid_batch_keeps_what_it_sent(store: Store) -> None:
    """What went out before the provider was lost is recorded as sent, never sent again; the
    rest of the batch waits as pending for the next run."""
    _five_customers(store)
    lost = ScriptedProvider(lost_after=1)
    with pytest.raises(SyncError, match="connection lost"):
        run_sync(store.settings(), SyncRequest(now=local(2026, 11, 20, 23)), provider=lost)
    assert store.ledger_rows(STATUS_COUNTS) == [("pending", 1), ("sent", 1)]

    healthy = ScriptedProvider()
    run_sync(store.settings(), SyncRequest(now=local(2026, 11, 21, 1)), provider=healthy)
    assert sorted(lost.delivered + healthy.delivered) == [f"c{n}@example.com" for n in range(5)]
    assert store.ledger_rows(STATUS_COUNTS) == [("sent", 5)]


def test_settled_requests_forget_the_address(store: Store) -> None:
    """Only unsettled requests keep a plaintext address; decisions never hold one."""
    _five_customers(store)
    store.run(local(2026, 11, 20, 23))
    assert (
        store.ledger_rows("SELECT email, payload FROM requests WHERE status = 'sent'")
        == [(None, None)] * 5
    )
    dump = "\n".join(
        str(row)
        for table in ("decisions", "cooldowns", "requests", "suppressions")
        for row in store.ledger_rows(f"SELECT * FROM {table}")
    )
    assert "@example.com" not in dump.replace("***@example.com", "")


def _candidate(ledger: Ledger, email: str, seen: str | None) -> Candidate:
    key = ledger.keys.email(email)
    return Candidate(
        request_id=new_id(),
        transaction_id=new_id(),
        sale_at=local(2026, 11, 20),
        customer_id=None,
        location_id="1",
        person_key=key,
        keys=(key,),
        seen={key: seen},
        email=email,
        email_masked="k***@example.com",
        payload={},
    )


def test_two_processes_on_one_ledger_cannot_both_claim_a_person(store: Store) -> None:
    """Two ledgers that both read 'never asked' race for one person: exactly one wins."""
    first, second = Ledger.open(store.ledger_url, "north"), Ledger.open(store.ledger_url, "south")
    run_a = first.runs.start("sync", local(2026, 11, 20, 23), dry_run=False)
    run_b = second.runs.start("sync", local(2026, 11, 20, 23), dry_run=False)

    won_a, _ = first.claims.claim(
        run_a, [_candidate(first, "kim@example.com", None)], local(2026, 11, 20, 23)
    )
    won_b, lost_b = second.claims.claim(
        run_b, [_candidate(second, "kim@example.com", None)], local(2026, 11, 20, 23)
    )
    first.close()
    second.close()

    assert (len(won_a), len(won_b), len(lost_b)) == (1, 0, 1)
    assert store.ledger_rows("SELECT COUNT(*) FROM requests") == [(1,)]
    assert store.ledger_rows("SELECT store, reason FROM decisions ORDER BY store") == [
        ("north", None),
        ("south", "cooldown"),
    ]


def test_two_stores_claiming_the_same_people_at_once_ask_each_person_once(
    store: Store,
) -> None:
    """Two processes on one ledger, both having read 'never asked' for the same 60 people,
    claim them in one batch each, at the same moment, in opposite orders: every person is
    claimed exactly once, and neither fails (on PostgreSQL this deadlocked before claims
    took their rows in key order)."""
    emails = [f"p{n}@example.com" for n in range(60)]
    barrier = threading.Barrier(2)
    won: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def claim_all(ledger: Ledger, order: list[str]) -> None:
        store_id = ledger.store
        try:
            run = ledger.runs.start("sync", local(2026, 11, 20, 23), dry_run=False)
            candidates = [_candidate(ledger, email, None) for email in order]
            barrier.wait(timeout=30)
            claimed, _ = ledger.claims.claim(run, candidates, local(2026, 11, 20, 23))
            won[store_id] = [c.email for c in claimed]
        except BaseException as exc:  # asserted on below, in the test's own thread
            errors.append(exc)
        finally:
            ledger.close()

    # Opened (and migrated) one after the other: Alembic's context is process-global.
    north, south = Ledger.open(store.ledger_url, "north"), Ledger.open(store.ledger_url, "south")
    threads = [
        threading.Thread(target=claim_all, args=(north, emails)),
        threading.Thread(target=claim_all, args=(south, emails[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sorted(won["north"] + won["south"]) == sorted(emails)
    assert store.ledger_rows("SELECT COUNT(*) FROM requests") == [(60,)]
    assert store.ledger_rows("SELECT COUNT(*) FROM decisions WHERE reason = 'cooldown'") == [(60,)]


def _open_and_close(url: str) -> str:
    Ledger.open(url, "store").close()
    return "ok"


def test_two_processes_starting_on_a_new_ledger_both_come_up(store: Store) -> None:
    """Two stores' daemons starting at the same moment on an empty ledger both migrate it
    (one waits for the other) instead of one failing on a table the other just made."""
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_open_and_close, [store.ledger_url] * 4) == ["ok"] * 4
    assert len(store.ledger_rows("SELECT version_num FROM alembic_version")) == 1


def test_the_migrations_create_exactly_the_models(store: Store) -> None:
    """A ledger built by the Alembic history matches the tables the code uses, to the column."""
    engine = create_ledger_engine(store.ledger_url)
    with engine.begin() as conn:
        migrate.upgrade(conn)
        assert migrate.current_revision(conn) == migrate.head_revision()
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_the_newest_revision_by_file_number_is_alembics_head() -> None:
    """Opening a ledger recognises the newest schema without Alembic, from the migration
    files' numbers: that must be the head Alembic itself walks to."""
    assert migrate.head_revision() == migrate.alembic_head()


def test_status_on_a_current_ledger_loads_neither_alembic_nor_the_sending_stages(
    store: Store,
) -> None:
    """`surveysync status` on a ledger at the newest schema does not load Alembic (a third
    of its start), reads the revision instead of taking the write lock, and loads none of
    what only sending needs: templates, HTTP, the scheduler, the email validator."""
    store.run(local(2026, 11, 20, 23))
    store.write_config()
    program = (
        "import sys; from surveysync.cli import main; "
        f"code = main(['--config', {str(store.config_path)!r}, 'status'], standalone_mode=False); "
        "heavy = {'alembic', 'jinja2', 'httpx', 'apscheduler', 'email_validator'}; "
        "print(code, sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    found = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=120
    )
    assert found.stdout.strip().splitlines()[-1] == "None []", found.stdout


def test_a_long_first_run_on_postgresql_gives_the_tables_it_fills_statistics(
    tmp_path: Path, postgres_url: str
) -> None:
    """A first run that writes thousands of decisions ANALYZEs what it fills (decisions,
    requests, cooldowns) as it goes: PostgreSQL keeps a prepared lookup's plan made while a
    table was empty until its statistics change (seen: the cooldown lookup scanning every
    cooldown and request for each chunk, a 100k-sale run 7 times as long as on SQLite)."""
    store = Store(tmp_path, postgres_url)
    for n in range(60):
        store.customer(f"C{n}")
    for n in range(5_100):  # one busy day, then a second day whose read comes after it
        store.pos.sale(f"C{n % 60}", datetime(2026, 11, 19, 8) + timedelta(seconds=10 * n))
    for n in range(60):
        store.pos.sale(f"C{n}", datetime(2026, 11, 20, 12))
    store.run(local(2026, 11, 20, 23))

    engine = create_ledger_engine(postgres_url)
    with engine.connect() as conn:
        estimated = dict(
            conn.exec_driver_sql(
                "SELECT relname, reltuples FROM pg_class "
                "WHERE relname IN ('decisions', 'requests', 'cooldowns')"
            ).all()
        )
    engine.dispose()
    # -1: never analyzed. Each is analyzed once the run has written 5,000 decisions.
    assert estimated["decisions"] >= 5_000
    assert estimated["requests"] > 0 and estimated["cooldowns"] > 0
