"""The same full sync on a SQLite ledger and on a PostgreSQL ledger, in pairs (issue 15, item 7).

Not a test: run it by hand (see benchmarks/README.md). It uses ``bench_sync.py``'s POS data,
webhook receiver and configuration. Each repetition runs, interleaved, each in a fresh child
process: the sync on a new SQLite ledger, then the sync on a new PostgreSQL database. It prints
each pair's wall and CPU seconds and their ratio, then the median ratio. Wall is the figure to
read here: the sync's CPU is the same on both, the difference is waiting for the server.

To see the plan of every slow statement, run it with ``PGOPTIONS="-c
session_preload_libraries=auto_explain -c auto_explain.log_min_duration=300"`` (a superuser
login): PostgreSQL's log then holds them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_sync  # the benchmark beside this one, found through the path above

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
DATABASE = "surveysync_bench_ledger"


def pg_config(directory: Path, receiver_url: str, admin: str) -> Path:
    """The sync benchmark's configuration with a new, empty PostgreSQL ledger."""
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    host = dict(part.split("=", 1) for part in admin.split())
    url = (
        f"postgresql+psycopg://{host['user']}@{host['host']}:{host.get('port', '5432')}/{DATABASE}"
    )
    sqlite = bench_sync.write_config(directory, receiver_url)
    config = directory / "surveysync-pg.toml"
    ledger = f'url = "sqlite:///{(directory / "ledger.sqlite").as_posix()}"'
    config.write_text(sqlite.read_text("utf-8").replace(ledger, f'url = "{url}"'), "utf-8")
    return config


def child(config: Path) -> dict[str, float]:
    """One sync, timed, in this (child) process."""
    started, cpu_started = time.perf_counter(), time.process_time()
    sales, sent = bench_sync.run_surveysync(config)
    return {
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu_started,
        "sent": sent,
        "sales": sales,
    }


def in_child(config: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(config)],
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench(size: int, repeats: int, workdir: Path, admin: str) -> None:
    receiver = bench_sync.Receiver()
    directory = workdir / f"n{size}"
    directory.mkdir(exist_ok=True)
    if not (directory / "pos.sqlite").exists():
        bench_sync.build_pos(directory / "pos.sqlite", size)
    print(f"{size:,} sales; pairs interleaved, each run in a fresh process")
    print(f"{'pair':>4} {'SQLite s':>9} {'PG s':>7} {'ratio':>6} {'SQLite CPU':>10} {'PG CPU':>7}")
    ratios = []
    for pair in range(1, repeats + 1):
        lite = in_child(bench_sync.write_config(directory, receiver.url))
        pg = in_child(pg_config(directory, receiver.url, admin))
        assert lite["sent"] == pg["sent"], (lite, pg)
        ratios.append(pg["seconds"] / lite["seconds"])
        print(
            f"{pair:>4} {lite['seconds']:>9.1f} {pg['seconds']:>7.1f} {ratios[-1]:>6.2f} "
            f"{lite['cpu']:>10.1f} {pg['cpu']:>7.1f}",
            flush=True,
        )
    print(f"median ratio {statistics.median(ratios):.2f}; each sent {lite['sent']:,.0f}")
    receiver.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="Keep the generated POS file here.")
    parser.add_argument("--admin", default=ADMIN, help="libpq string of a superuser login")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        bench(args.size, args.repeats, args.workdir, args.admin)
    else:
        with tempfile.TemporaryDirectory(prefix="surveysync-bench-") as workdir:
            bench(args.size, args.repeats, Path(workdir), args.admin)


if __name__ == "__main__":
    main()
