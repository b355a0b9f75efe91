"""Throughput and peak memory of one full sync, for N sales in a SQLite POS.

Not a test: run it by hand (see benchmarks/README.md). Every measurement runs in a fresh child
process, so that peak RSS (ru_maxrss) belongs to that one run. For each N the script reports
the median of several repetitions of:

* ``sync``     the whole pipeline (POS read, rules, ledger, render, a counting provider);
* ``read``     the baseline: streaming the same days through the POS mapping alone, as the
               sync reads them, in the same run, so the sync can be quoted as a ratio to it
               on a noisy machine.

Peak RSS is quoted beside the RSS of a child that only imported surveysync (``idle``).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine

from surveysync.config import Settings, load_settings
from surveysync.demo import create_pos_schema
from surveysync.pos import PosSource
from surveysync.providers import OutgoingEmail, SendResult
from surveysync.sync import SyncRequest, run_sync
from surveysync.windows import slice_days

TZ = ZoneInfo("Europe/Amsterdam")
DAYS = 60
NOW = datetime(2026, 6, 1, 23, 0, tzinfo=TZ)
FIRST_DAY = (NOW - timedelta(days=DAYS)).replace(hour=0, minute=0, tzinfo=None)


class CountingProvider:
    """Accepts every message and counts it: the benchmark measures surveysync, not a disk."""

    name = "counting"
    max_batch_size = 500
    honours_idempotency_key = True

    def __init__(self) -> None:
        self.sent = 0

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        self.sent += len(batch)
        return [SendResult(e.request_id, "sent") for e in batch]

    def check(self) -> str:
        return "counts"

    def close(self) -> None:
        return None


# --- the data ------------------------------------------------------------------------------


def build_pos(path: Path, sales: int, seed: int = 1) -> None:
    """A POS like the demo's, written in bulk: N sales over 60 days, a customer per 4 sales."""
    create_pos_schema(create_engine(f"sqlite:///{path}"))
    rng = random.Random(seed)
    customers = max(50, sales // 4)
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO locations VALUES (?, ?)", [(1, "Centrum"), (2, "Noord")])
    db.executemany("INSERT INTO employees VALUES (?, ?)", [(1, "Anouk"), (2, "Bram")])
    db.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_customer(rng, number) for number in range(1, customers + 1)),
    )
    db.executemany(
        "INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (_sale(rng, number, customers) for number in range(1, sales + 1)),
    )
    db.commit()
    db.close()


def _customer(rng: random.Random, number: int) -> tuple[object, ...]:
    roll = rng.random()
    email = None if roll < 0.04 else "jan@@example.com" if roll < 0.07 else f"c{number}@example.com"
    name = rng.choice(["Jan", "Siobhán", "민준", "Špela", "Sam 🚲"])
    return (f"C{number}", name, "de Vries", email, "nl", rng.random() > 0.06, rng.random() < 0.04)


def _sale(rng: random.Random, number: int, customers: int) -> tuple[object, ...]:
    at = FIRST_DAY + timedelta(seconds=rng.randrange(DAYS * 86_400 - 7_200))
    customer = None if rng.random() < 0.08 else f"C{rng.randint(1, customers)}"
    finalized = None if rng.random() < 0.01 else at + timedelta(minutes=rng.randint(0, 90))
    kind = rng.choices(["sale", "return", "void"], weights=[95, 4, 1])[0]
    total = f"{rng.uniform(5, 2500):.2f}"
    return (number, customer, rng.randint(1, 2), rng.randint(1, 2), at, finalized, total, kind)


def settings_for(directory: Path) -> Settings:
    config = directory / "surveysync.toml"
    config.write_text(
        f"""
[store]
timezone = "Europe/Amsterdam"
[pos]
url = "sqlite:///{(directory / "pos.sqlite").as_posix()}"
[ledger]
url = "sqlite:///{(directory / "ledger.sqlite").as_posix()}"
[rules]
max_sale_age_days = 400
[sync]
first_run_start = {FIRST_DAY.isoformat()}
""",
        encoding="utf-8",
    )
    return load_settings(config)


# --- one measurement, in a child process ----------------------------------------------------


def measure(mode: str, directory: Path) -> dict[str, float]:
    settings = settings_for(directory)
    started = time.perf_counter()
    if mode == "sync":
        (directory / "ledger.sqlite").unlink(missing_ok=True)
        provider = CountingProvider()
        report = run_sync(settings, SyncRequest(now=NOW), provider=provider)
        assert report.status == "succeeded", report.error
        sales, sent = report.counts["sales_read"], provider.sent
    elif mode == "read":  # as the sync reads: one business day at a time, in chunks
        source = PosSource(settings.pos, TZ)
        days = slice_days(FIRST_DAY.replace(tzinfo=TZ), NOW, TZ)
        sales = sum(len(chunk) for day in days for chunk in source.sales(day.start, day.end))
        source.close()
        sent = 0
    else:  # idle: what importing surveysync costs
        sales = sent = 0
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"seconds": seconds, "sales": sales, "sent": sent, "peak_mb": peak_kib / 1024}


def in_child(mode: str, directory: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(directory)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --- the report -----------------------------------------------------------------------------


def bench(sizes: list[int], repeats: int, workdir: Path) -> None:
    idle = statistics.median(in_child("idle", workdir)["peak_mb"] for _ in range(repeats))
    print(f"idle child (imports only): peak RSS {idle:.0f} MB; {repeats} repetitions each\n")
    header = f"{'sales':>8} {'sync s':>8} {'sales/s':>9} {'read s':>8} {'sync/read':>9}"
    print(header + f" {'sent':>7} {'peak MB':>8}")
    for size in sizes:
        directory = workdir / f"n{size}"
        directory.mkdir(exist_ok=True)
        if not (directory / "pos.sqlite").exists():
            build_pos(directory / "pos.sqlite", size)
        syncs, reads = [], []
        for _ in range(repeats):  # interleaved, so both see the same machine
            reads.append(in_child("read", directory))
            syncs.append(in_child("sync", directory))
        sync_s = statistics.median(r["seconds"] for r in syncs)
        read_s = statistics.median(r["seconds"] for r in reads)
        peak = statistics.median(r["peak_mb"] for r in syncs)
        sales = syncs[0]["sales"]
        print(
            f"{size:>8} {sync_s:>8.2f} {sales / sync_s:>9,.0f} {read_s:>8.2f} "
            f"{sync_s / read_s:>9.2f} {syncs[0]['sent']:>7.0f} {peak:>8.0f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,200000,400000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="Keep the generated POS files here.")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], Path(args.child[1]))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        bench(sizes, args.repeats, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="surveysync-bench-") as workdir:
            bench(sizes, args.repeats, Path(workdir))


if __name__ == "__main__":
    main()
