"""Throughput and peak memory of one full sync, for N sales in a SQLite POS, beside two floors.

Not a test: run it by hand (see benchmarks/README.md). Every measurement runs in a fresh child
process, so that peak RSS (ru_maxrss) belongs to that one run. For each N the script reports
the median of several repetitions, interleaved, of:

* ``sync``     the whole pipeline as ``surveysync sync`` runs it (POS read, rules, ledger
               writes, rendering, the ``webhook`` provider POSTing signed batches to a receiver
               on 127.0.0.1, logging at info to a JSON-lines file), on a new SQLite ledger;
* ``raw``      floor (a): the same rows (the preset's SQL over the same window, in the same
               order) streamed with the driver (``sqlite3``) and counted, nothing else;
* ``minimal``  floor (b): a minimal hand-written pipeline in plain Python: the same rows read
               with ``sqlite3``, decided with dicts (walk-in, return, no or invalid address,
               opted out, one request per person: newest sale first), one decision row per
               sale and one small record per request written with ``executemany`` in one
               transaction on a new SQLite file.

The receiver is a small threaded HTTP server in this (the parent) process, so that its work is
not counted in the sync's time or memory: it counts messages and answers each batch with a
per-message ``sent`` result, as the webhook contract has it (``providers/webhook.py``).
Peak RSS is quoted beside the RSS of a child that only imported surveysync (``idle``).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Europe/Amsterdam")
DAYS = 60
NOW = datetime(2026, 6, 1, 23, 0, tzinfo=TZ)
FIRST_DAY = (NOW - timedelta(days=DAYS)).replace(hour=0, minute=0, tzinfo=None)
SECRET = "bench-webhook-secret"


# --- the receiver (parent process) ---------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """Counts the messages it is POSTed; answers each one ``sent`` (the webhook contract)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.messages = 0
        self.calls = 0
        self.count_lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/surveys"


_REQUEST_ID = re.compile(rb'"request_id":"([^"]+)"')


class _ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the provider's client expects
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        # Only the ids, not the whole JSON: in JSON text a quote inside a string is always
        # escaped, so this pattern can only be a message's key.
        ids = [match.decode() for match in _REQUEST_ID.findall(body)]
        with self.server.count_lock:
            self.server.messages += len(ids)
            self.server.calls += 1
        answer = {"results": [{"request_id": i, "status": "sent", "id": f"m-{i}"} for i in ids]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


# --- the data ------------------------------------------------------------------------------


def build_pos(path: Path, sales: int, seed: int = 1) -> None:
    """A POS like the demo's, written in bulk: N sales over 60 days, a customer per 4 sales,
    numbered in time order as a till numbers them."""
    from sqlalchemy import create_engine

    from surveysync.demo import create_pos_schema

    create_pos_schema(create_engine(f"sqlite:///{path}"))
    rng = random.Random(seed)
    customers = max(50, sales // 4)
    span = DAYS * 86_400 - 7_200
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO locations VALUES (?, ?)", [(1, "Centrum"), (2, "Noord")])
    db.executemany("INSERT INTO employees VALUES (?, ?)", [(1, "Anouk"), (2, "Bram")])
    db.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_customer(rng, number) for number in range(1, customers + 1)),
    )
    # A POS numbers its transactions as they happen: ids (and rows) in time order.
    times = sorted(FIRST_DAY + timedelta(seconds=rng.randrange(span)) for _ in range(sales))
    db.executemany(
        "INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (_sale(rng, number, at, customers) for number, at in enumerate(times, start=1)),
    )
    db.commit()
    db.close()


def _customer(rng: random.Random, number: int) -> tuple[object, ...]:
    roll = rng.random()
    email = None if roll < 0.04 else "jan@@example.com" if roll < 0.07 else f"c{number}@example.com"
    name = rng.choice(["Jan", "Siobhán", "민준", "Špela", "Sam 🚲"])
    return (f"C{number}", name, "de Vries", email, "nl", rng.random() > 0.06, rng.random() < 0.04)


def _sale(rng: random.Random, number: int, at: datetime, customers: int) -> tuple[object, ...]:
    customer = None if rng.random() < 0.08 else f"C{rng.randint(1, customers)}"
    finalized = None if rng.random() < 0.01 else at + timedelta(minutes=rng.randint(0, 90))
    kind = rng.choices(["sale", "return", "void"], weights=[95, 4, 1])[0]
    total = f"{rng.uniform(5, 2500):.2f}"
    return (number, customer, rng.randint(1, 2), rng.randint(1, 2), at, finalized, total, kind)


def write_config(directory: Path, receiver_url: str) -> Path:
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
[provider]
kind = "webhook"
[provider.webhook]
url = "{receiver_url}"
secret = "{SECRET}"
[logging]
dir = "{(directory / "logs").as_posix()}"
""",
        encoding="utf-8",
    )
    return config


# --- the floors: the same rows with the driver alone -----------------------------------------


def _window_rows(pos: sqlite3.Connection, newest_first: bool = False) -> sqlite3.Cursor:
    """The rows the sync reads: the preset's SQL over the whole window, in key order."""
    from surveysync.pos.sql.mapping import ASCEND_QUERY, EARLIEST, LATEST

    order = "DESC" if newest_first else "ASC"
    query = f"SELECT * FROM ({ASCEND_QUERY}) ORDER BY sale_at {order}, transaction_id {order}"
    params = {
        "start": FIRST_DAY.isoformat(sep=" "),
        "end": NOW.replace(tzinfo=None).isoformat(sep=" "),
        "earliest": EARLIEST.isoformat(sep=" "),
        "latest": LATEST.isoformat(sep=" "),
    }
    return pos.execute(query, params)


def raw_floor(directory: Path) -> tuple[int, int]:
    pos = sqlite3.connect(directory / "pos.sqlite")
    rows = sum(1 for _ in _window_rows(pos))
    pos.close()
    return rows, 0


_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def minimal_floor(directory: Path) -> tuple[int, int]:
    """Read, decide with dicts, one decision row per sale, one small record per request."""
    ledger_path = directory / "minimal.sqlite"
    for leftover in directory.glob("minimal.sqlite*"):
        leftover.unlink()
    ledger = sqlite3.connect(ledger_path, isolation_level=None)
    ledger.execute("PRAGMA journal_mode = WAL")
    ledger.execute("PRAGMA synchronous = NORMAL")
    ledger.execute(
        "CREATE TABLE decisions (transaction_id TEXT NOT NULL, customer_ref TEXT NOT NULL, "
        "reason TEXT, request_id TEXT, PRIMARY KEY (transaction_id, customer_ref))"
    )
    ledger.execute("CREATE TABLE requests (id TEXT PRIMARY KEY, email TEXT, name TEXT)")
    pos = sqlite3.connect(directory / "pos.sqlite")
    pos.row_factory = sqlite3.Row
    asked: set[str] = set()
    decisions: list[tuple[Any, ...]] = []
    requests: list[tuple[Any, ...]] = []
    for row in _window_rows(pos, newest_first=True):
        reason, request_id = _minimal_decision(row, asked), None
        if reason is None:
            request_id = uuid.uuid4().hex
            requests.append((request_id, row["email"], row["first_name"]))
        decisions.append((str(row["transaction_id"]), row["customer_id"] or "", reason, request_id))
    ledger.execute("BEGIN")
    ledger.executemany("INSERT INTO decisions VALUES (?, ?, ?, ?)", decisions)
    ledger.executemany("INSERT INTO requests VALUES (?, ?, ?)", requests)
    ledger.execute("COMMIT")
    ledger.close()
    pos.close()
    return len(decisions), len(requests)


def _minimal_decision(row: sqlite3.Row, asked: set[str]) -> str | None:
    email = row["email"]
    if row["finalized_at"] is None:
        return "not_finalized"
    if row["customer_id"] is None:
        return "walk_in"
    if row["kind"] != "sale":
        return "return"
    if not email:
        return "no_email"
    if not _ADDRESS.fullmatch(email):
        return "invalid_email"
    if not row["include_in_communications"]:
        return "excluded"
    if row["unsubscribed"]:
        return "unsubscribed"
    person = email.lower()
    if person in asked:
        return "duplicate_in_run"
    asked.add(person)
    return None


# --- one measurement, in a child process ----------------------------------------------------


def run_surveysync(config: Path) -> tuple[int, int]:
    from surveysync.commands import configure_logs
    from surveysync.config import load_settings
    from surveysync.sync import SyncRequest, run_sync

    settings = load_settings(config)
    configure_logs(settings)  # as `surveysync sync` does: info, JSON lines to a file too
    (config.parent / "ledger.sqlite").unlink(missing_ok=True)
    for leftover in config.parent.glob("ledger.sqlite-*"):
        leftover.unlink()
    report = run_sync(settings, SyncRequest(now=NOW))
    assert report.status == "succeeded", report.error
    return report.counts["sales_read"], report.counts["sent"]


def measure(mode: str, directory: Path) -> dict[str, float]:
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "sync":
        sales, sent = run_surveysync(directory / "surveysync.toml")
    elif mode == "raw":
        sales, sent = raw_floor(directory)
    elif mode == "minimal":
        sales, sent = minimal_floor(directory)
    else:  # idle: what importing surveysync costs
        import surveysync.sync  # noqa: F401

        sales = sent = 0
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "seconds": seconds,
        "cpu": cpu,
        "sales": sales,
        "sent": sent,
        "peak_mb": peak_kib / 1024,
    }


def in_child(mode: str, directory: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(directory)],
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the sync's console log; its file log stays in DIR/logs
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --- the report -----------------------------------------------------------------------------

MODES = ("raw", "minimal", "sync")


def bench(sizes: list[int], repeats: int, workdir: Path) -> None:
    receiver = Receiver()
    idle = statistics.median(in_child("idle", workdir)["peak_mb"] for _ in range(repeats))
    print(f"idle child (imports only): peak RSS {idle:.0f} MB; {repeats} repetitions each\n")
    print(
        f"{'sales':>9} {'sync s':>7} {'CPU s':>6} {'sales/s':>8} {'CPU/s':>7} {'raw s':>6} "
        f"{'min s':>6} {'/raw':>5} {'/min':>5} {'CPU/min':>7} {'requests':>8} {'received':>8} "
        f"{'peak MB':>7} {'min MB':>6}"
    )
    for size in sizes:
        directory = workdir / f"n{size}"
        directory.mkdir(exist_ok=True)
        if not (directory / "pos.sqlite").exists():
            build_pos(directory / "pos.sqlite", size)
        write_config(directory, receiver.url)
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        received = []
        for _ in range(repeats):  # interleaved, so every mode sees the same machine
            for mode in MODES:
                before = receiver.messages
                runs[mode].append(in_child(mode, directory))
                print(f"  {size} {mode}: {runs[mode][-1]}", file=sys.stderr, flush=True)
                if mode == "sync":
                    received.append(receiver.messages - before)
        print(_row(size, runs, received[0]), flush=True)
    receiver.shutdown()


def _row(size: int, runs: dict[str, list[dict[str, float]]], received: int) -> str:
    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    sync, cpu, raw = med("sync", "seconds"), med("sync", "cpu"), med("raw", "seconds")
    least, least_cpu = med("minimal", "seconds"), med("minimal", "cpu")
    sales, sent = runs["sync"][0]["sales"], runs["sync"][0]["sent"]
    return (
        f"{size:>9,} {sync:>7.2f} {cpu:>6.2f} {sales / sync:>8,.0f} {sales / cpu:>7,.0f} "
        f"{raw:>6.2f} {least:>6.2f} {sync / raw:>5.1f} {sync / least:>5.2f} "
        f"{cpu / least_cpu:>7.2f} {sent:>8,.0f} {received:>8,} "
        f"{med('sync', 'peak_mb'):>7.0f} {med('minimal', 'peak_mb'):>6.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,400000,1000000", help="N, comma-separated")
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
