"""The crash harness, short (issue 11 item 4): scripted trials of ``surveysync sync`` as a
subprocess against the crash receiver (tests/crash_receiver.py), on SQLite and PostgreSQL,
each ended by a clean sync and checked against the README's promises (tests/crash_checks.py).

Each trial scripts the receiver's answer to given call numbers; a sync is killed (SIGKILL)
while the receiver holds the very call the script names, and a receiver that kills itself
stays down until that sync has given up. So what happens never depends on speed: the same
calls get the same faults and the kills land in the same place on every machine.

Trials:

    rides_out_faults      429, 500, 503, resets before and after handling, an answer held
                          until the client gives up, a kill before the receiver took a batch
    killed_after_taken    a batch of 12 taken, the sync killed before the answer
    three_crashes         a lone request taken, the sync killed; its repeat killed twice before
                          it reached the receiver; repeated once more (the calls after two and
                          after three crashes are both checked: one key, one body)
    split_then_lost       issue 11's case: a batch refused (400) for one address, sent one by
                          one; the receiver takes the second and dies past the retry budget
    lone_send_reset       the same without a crash: the lone send's answer is lost (reset),
                          then 503 until out of tries
    batch_lost_after_taken  a whole batch taken, its answer lost, then 503 until out of tries
    killed_during_split   a batch refused (400) is being sent one by one; the sync is killed
                          after the receiver took the second; the next sync repeats them and
                          the receiver dies past the retry budget on its second call

Each property is its own test per scenario, so a failure names the promise it broke.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from tests.conftest import POSTGRES_ADMIN_URL, server_missing
from tests.crash_checks import Findings, check, gather
from tests.crash_harness import CrashRun, RunConfig, SyncResult
from tests.crash_shop import TZ, HttpTiming, scripted_shop

# Attempts are part of the script: call numbers count every retry. The read timeout only
# ends calls the receiver never answers (handled_hold); it is long so that a sync held for a
# kill is always killed before it could give up, and so that no answered call ever runs
# into it on a loaded machine (which would add a retry and shift every call number after).
TIMING = HttpTiming(
    timeout_seconds=20.0, connect_timeout_seconds=20.0, retry_attempts=3, retry_seconds=120.0
)
STAY_DOWN = -1.0  # a receiver that kills itself stays down until the sync has ended


def _fault(kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, **extra}


@dataclass(frozen=True)
class Scenario:
    customers: int
    batch_size: int
    plan: dict[int, dict[str, Any]]  # call number -> fault
    syncs: int  # before the final clean one, which then has the recovery to do
    bad: tuple[int, ...] = ()
    kills: int = field(default=0)  # syncs the script kills (kill_client_* faults)


SCENARIOS = {
    "rides_out_faults": Scenario(
        40,
        10,
        {
            1: _fault("429", retry_after=0),
            2: _fault("handled_reset"),
            4: _fault("500"),
            5: _fault("handled_hold"),
            7: _fault("reset_before"),
            8: _fault("503", retry_after=0),
            10: _fault("kill_client_before"),
        },
        syncs=1,
        kills=1,
    ),
    "killed_after_taken": Scenario(12, 12, {1: _fault("kill_client_after")}, syncs=1, kills=1),
    "three_crashes": Scenario(
        3,
        1,
        {
            1: _fault("kill_client_after"),
            2: _fault("kill_client_before"),
            3: _fault("kill_client_before"),
        },
        syncs=3,
        kills=3,
    ),
    "split_then_lost": Scenario(
        12, 12, {3: _fault("die_after", down=STAY_DOWN)}, syncs=1, bad=(1,)
    ),
    "lone_send_reset": Scenario(
        12,
        12,
        {
            3: _fault("handled_reset"),
            4: _fault("503", retry_after=0),
            5: _fault("503", retry_after=0),
        },
        syncs=1,
        bad=(1,),
    ),
    "killed_during_split": Scenario(
        12,
        12,
        {3: _fault("kill_client_after"), 5: _fault("die_before", down=STAY_DOWN)},
        syncs=2,
        bad=(1,),
        kills=1,
    ),
    "batch_lost_after_taken": Scenario(
        12,
        12,
        {
            1: _fault("handled_reset"),
            2: _fault("503", retry_after=0),
            3: _fault("503", retry_after=0),
        },
        syncs=1,
    ),
}


@dataclass
class Outcome:
    findings: Findings
    syncs: list[SyncResult]
    deaths: int


Trials = Callable[[str, str], Outcome]


@pytest.fixture(scope="module")
def trials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trials]:
    """Runs every scenario of a backend when one is first asked for, two at a time (each is
    a few processes waiting on each other, so two share the machine's cores), and keeps the
    outcomes. Running side by side changes nothing: no outcome depends on timing."""
    done: dict[tuple[str, str], Outcome] = {}
    databases: list[str] = []

    def run_one(name: str, backend: str) -> Outcome:
        root = tmp_path_factory.mktemp(f"{name}-{backend}")
        return _run(SCENARIOS[name], root, _ledger_url(backend, root, databases))

    def outcome(name: str, backend: str) -> Outcome:
        if (name, backend) not in done:
            with ThreadPoolExecutor(max_workers=2) as pool:
                runs = {n: pool.submit(run_one, n, backend) for n in SCENARIOS}
                done.update({(n, backend): run.result() for n, run in runs.items()})
        return done[(name, backend)]

    yield outcome
    _drop(databases)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        _require_postgres()
    return str(request.param)


def _require_postgres() -> None:
    engine = create_engine(POSTGRES_ADMIN_URL)
    try:
        with engine.connect():
            pass
    except (SQLAlchemyError, ImportError) as exc:
        server_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL}", exc)
    finally:
        engine.dispose()


def _ledger_url(backend: str, root: Path, databases: list[str]) -> str:
    if backend == "sqlite":
        return f"sqlite:///{(root / 'ledger.sqlite').as_posix()}"
    name = f"surveysync_crash_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    databases.append(name)
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _drop(databases: list[str]) -> None:
    if not databases:
        return
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in databases:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def _run(scenario: Scenario, root: Path, ledger_url: str) -> Outcome:
    now = datetime.now(TZ)
    shop = scripted_shop(scenario.customers, scenario.bad, now=now.replace(tzinfo=None))
    config = RunConfig(
        seed=0,
        fault_rate=0.0,
        plan=scenario.plan,
        batch_size=scenario.batch_size,
        timing=TIMING,
        lookback_days=3,
        scripted_clock=True,
    )
    with CrashRun(root, ledger_url, shop, config) as run:
        run.pos.feed(len(shop.sales))
        for _ in range(scenario.syncs):
            run.sync()
        run.final_sync()
        findings = check(gather(run, datetime.now(TZ)))
        return Outcome(findings, list(run.syncs), run.receiver.deaths)


# --- the script ran as written -------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_trial_meets_the_faults_and_kills_it_scripts(
    scenario: str, backend: str, trials: Trials
) -> None:
    """Every scripted fault met the call it names, each scripted kill ended a sync, the
    receiver saw only well-signed calls, and the final clean sync succeeded."""
    outcome = trials(scenario, backend)
    script = SCENARIOS[scenario]
    stats = outcome.findings.stats
    planned = Counter(f"fault:{f['kind']}" for f in script.plan.values())
    assert +Counter({k: n for k, n in stats.items() if k.startswith("fault:")}) == planned
    assert [s.kill for s in outcome.syncs if s.killed] == ["hold"] * script.kills
    assert stats["receiver_errors"] == 0
    assert outcome.syncs[-1].exit_code == 0


# --- the promises --------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_request_is_delivered_twice(scenario: str, backend: str, trials: Trials) -> None:
    """The receiver never takes one survey request twice, whatever faults and kills came."""
    assert trials(scenario, backend).findings.of("duplicates") == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_person_is_asked_twice(scenario: str, backend: str, trials: Trials) -> None:
    """No address receives two surveys within the cooldown."""
    assert trials(scenario, backend).findings.of("people_twice") == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_sale_has_exactly_one_decision(scenario: str, backend: str, trials: Trials) -> None:
    """Every sale read has one decision, and a request decision names that sale's request."""
    assert trials(scenario, backend).findings.of("decisions") == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_nothing_is_left_sending_or_pending(scenario: str, backend: str, trials: Trials) -> None:
    """After the clean sync no request is left sending or pending."""
    assert trials(scenario, backend).findings.of("unsettled") == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_request_the_ledger_calls_sent_was_delivered(
    scenario: str, backend: str, trials: Trials
) -> None:
    """No request is recorded as sent that the receiver never took (no silent loss)."""
    assert trials(scenario, backend).findings.of("sent_not_held") == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_delivered_request_is_recorded_as_sent(
    scenario: str, backend: str, trials: Trials
) -> None:
    """Every request the receiver took is ``sent`` in the ledger: with idempotency keys a
    repeat settles the doubt, so nothing delivered ends ``in_doubt``."""
    assert trials(scenario, backend).findings.of("held_not_sent") == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_eligible_person_is_asked_or_in_doubt(
    scenario: str, backend: str, trials: Trials
) -> None:
    """Everyone a clean run would ask was asked or is listed in doubt."""
    assert trials(scenario, backend).findings.of("missing_people") == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_nobody_is_asked_whom_a_clean_run_would_not_ask(
    scenario: str, backend: str, trials: Trials
) -> None:
    """Faults and kills never make surveysync ask someone a clean run would not."""
    assert trials(scenario, backend).findings.of("unexpected_people") == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_repeat_carries_the_same_body_under_its_key(
    scenario: str, backend: str, trials: Trials
) -> None:
    """Every call made under one idempotency key carries the same bytes, after any number
    of crashes."""
    assert trials(scenario, backend).findings.of("repeats_differ") == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_receiver_never_answers_a_repeat_with_409(
    scenario: str, backend: str, trials: Trials
) -> None:
    """No repeat reaches a receiver that took its key with another body (409, in_doubt)."""
    assert trials(scenario, backend).findings.of("conflicts") == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_request_keeps_its_key_once_taken(scenario: str, backend: str, trials: Trials) -> None:
    """A request the receiver has taken is never sent again under another key."""
    assert trials(scenario, backend).findings.of("key_changes") == []
