"""How long `surveysync report` takes over a big ledger: 1,000,000 survey requests and
300,000 answers in a SQLite ledger, as the user runs it (a fresh `surveysync` process each
time, Python's start-up and imports included).

Not a test: run it by hand (see benchmarks/README.md). The ledger is written once, in bulk,
straight into the tables through SQLAlchemy (the survey page that records answers in real
life is not needed to measure the report), and kept in ``--workdir`` for the next run.
Surveys are spread over the 365 days before the benchmark's "now", over 5 locations and 25
technicians; an answer is confirmed (70 %), clicked (20 %), provisional (3 %, half of them
past their settle window) or a scanner pass (7 %), and one confirmed answer in four has a
comment.

Each command is timed in two periods: the default length (the 90 days up to the data's
"today": about a quarter of the ledger) and the whole year (every survey and answer).
Medians of ``--repeats`` runs, wall and CPU seconds (the CPU time a run costs stays
near its wall time on a quiet machine, and is what to read on a busy one), beside two
baselines measured in the same run:
``surveysync --version`` (start-up alone) and ``count``, a child process that only counts
the period's sent surveys: the least any report of that period reads.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine

from surveysync.ledger import Ledger

TZ = ZoneInfo("Europe/Amsterdam")
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=TZ)
YEAR_AGO = (NOW - timedelta(days=365)).date()
REQUESTS, RESPONSES = 1_000_000, 300_000
LOCATIONS = [
    ("1", "Centrum"),
    ("2", "Noord"),
    ("3", "Werkplaats Oost"),
    ("4", "Zuid"),
    ("5", "West"),
]
EMPLOYEES = [f"Technician {n:02d}" for n in range(1, 26)]
SURVEYSYNC = str(Path(sys.executable).with_name("surveysync"))


# --- the ledger -----------------------------------------------------------------------------


def build_ledger(path: Path, seed: int = 1) -> None:
    """A migrated ledger filled in bulk: REQUESTS requests, RESPONSES answers."""
    url = f"sqlite:///{path.as_posix()}"
    Ledger.open(url, "bench").close()  # creates every table and index, as surveysync does
    rng = random.Random(seed)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO runs (id, store, kind, status, dry_run, started_at) "
            "VALUES ('bench', 'bench', 'sync', 'succeeded', 0, '2025-01-01 00:00:00.000000')"
        )
        sent: list[tuple[str, datetime]] = []
        conn.exec_driver_sql(
            "INSERT INTO requests (id, store, transaction_id, run_id, person_key, customer_id, "
            "status, email_masked, created_at, settled_at, sale_at, location_id, location_name, "
            "employee_name, locale, first_name) "
            "VALUES (?, 'bench', ?, 'bench', ?, ?, ?, 'k***@example.com', ?, ?, ?, ?, ?, ?, "
            "'nl', 'Kim')",
            list(_requests(rng, sent)),
        )
        conn.exec_driver_sql(
            "INSERT INTO responses (request_id, store, score, comment, status, first_seen_at, "
            "updated_at, settle_due_at, answered_at) VALUES (?, 'bench', ?, ?, ?, ?, ?, ?, ?)",
            list(_responses(rng, rng.sample(sent, RESPONSES))),
        )
    engine.dispose()


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _requests(rng: random.Random, sent: list[tuple[str, datetime]]) -> Iterator[tuple[object, ...]]:
    for number in range(REQUESTS):
        request_id = f"{rng.getrandbits(128):032x}"
        at = NOW - timedelta(seconds=rng.randrange(365 * 86_400))
        status = "sent" if rng.random() < 0.96 else rng.choice(["failed", "rejected"])
        if status == "sent":
            sent.append((request_id, at))
        location = rng.choice(LOCATIONS)
        yield (
            request_id, f"T{number}", f"e:{number}", f"C{number}", status, _stamp(at),
            _stamp(at), _stamp(at - timedelta(hours=4)), location[0], location[1],
            rng.choice(EMPLOYEES),
        )  # fmt: skip


def _responses(
    rng: random.Random, answered: list[tuple[str, datetime]]
) -> Iterator[tuple[object, ...]]:
    for request_id, at in answered:
        roll = rng.random()
        status = (
            "confirmed" if roll < 0.70 else "clicked" if roll < 0.90
            else "provisional" if roll < 0.93 else "scanner"
        )  # fmt: skip
        seen = at + timedelta(minutes=rng.randrange(1, 4_320))
        due = (
            seen + timedelta(minutes=rng.choice([-20, 20]) + 30)
            if status == "provisional"
            else None
        )
        counted = status in ("confirmed", "clicked")
        comment = "Goed geholpen, snel klaar." if counted and rng.random() < 0.25 else None
        score = min(10, max(0, round(rng.gauss(8.0, 2.2))))
        yield (
            request_id, score, comment if status == "confirmed" else None, status, _stamp(seen),
            _stamp(seen), due and _stamp(due), _stamp(seen) if counted else None,
        )  # fmt: skip


def write_config(directory: Path) -> Path:
    config = directory / "surveysync.toml"
    config.write_text(
        f'[store]\nid = "bench"\ntimezone = "Europe/Amsterdam"\n'
        f'[ledger]\nurl = "sqlite:///{(directory / "ledger.sqlite").as_posix()}"\n'
        f'[logging]\nlevel = "warning"\n',
        encoding="utf-8",
    )
    return config


# --- timing -----------------------------------------------------------------------------------


def run(command: list[str], terminal: bool = False) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one command in a fresh process; its output
    goes to a pipe (or, with ``terminal``, is drawn as on a 160-column terminal). CPU time
    is what the command itself costs, however busy the machine is."""
    env = os.environ | ({"FORCE_COLOR": "1", "COLUMNS": "160"} if terminal else {})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def count_command(directory: Path, since: str) -> list[str]:
    """The baseline: count the period's sent surveys, reading the index the report reads."""
    program = (
        "import sqlite3, sys\n"
        f"db = sqlite3.connect({str(directory / 'ledger.sqlite')!r})\n"
        'print(db.execute("SELECT count(*) FROM requests INDEXED BY ix_requests_report_groups '
        f"WHERE store = 'bench' AND status = 'sent' AND settled_at >= '{since}'\").fetchone())\n"
    )
    return [sys.executable, "-c", program]


def scenarios(config: Path, html: Path) -> dict[str, tuple[list[str], bool]]:
    base = [SURVEYSYNC, "--config", str(config), "report"]
    return {
        "table --by location,month": ([*base, "--by", "location,month"], True),
        "table --by employee": ([*base, "--by", "employee"], True),
        "--json --by location,month": ([*base, "--json", "--by", "location,month"], False),
        "--html": ([*base, "--html", str(html)], False),
    }


def bench(directory: Path, repeats: int) -> None:
    config = write_config(directory)
    print(f"ledger: {REQUESTS:,} requests, {RESPONSES:,} answers; medians of {repeats}\n")
    print(
        f"{'period':<13} {'command':<28} {'wall s':>7} {'CPU s':>6} "
        f"{'CPU / start-up':>14} {'CPU / count':>11}"
    )
    until = ["--until", NOW.date().isoformat()]  # the data's "today", whenever this runs
    for period, since in (("last 90 days", None), ("whole year", YEAR_AGO)):
        extra = until if since is None else [*until, "--since", since.isoformat()]
        first_day = (since or (NOW.date() - timedelta(days=89))).isoformat()
        start = medians([run([SURVEYSYNC, "--version"]) for _ in range(repeats)])
        count = medians([run(count_command(directory, first_day)) for _ in range(repeats)])
        print(f"{period:<13} {'(surveysync --version)':<28} {start[0]:>7.2f} {start[1]:>6.2f}")
        print(f"{period:<13} {'(count)':<28} {count[0]:>7.2f} {count[1]:>6.2f}")
        for name, (command, terminal) in scenarios(config, directory / "report.html").items():
            wall, cpu = medians([run([*command, *extra], terminal) for _ in range(repeats)])
            print(
                f"{period:<13} {name:<28} {wall:>7.2f} {cpu:>6.2f} {cpu / start[1]:>14.1f} "
                f"{cpu / count[1]:>11.1f}",
                flush=True,
            )
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="Keep the generated ledger here.")
    args = parser.parse_args()
    directory = args.workdir or Path(tempfile.mkdtemp(prefix="bench-report-"))
    directory.mkdir(parents=True, exist_ok=True)
    ledger = directory / "ledger.sqlite"
    if not ledger.exists():
        started = time.perf_counter()
        build_ledger(ledger)
        print(f"built {ledger} in {time.perf_counter() - started:.0f} s")
    bench(directory, args.repeats)


if __name__ == "__main__":
    main()
