"""The survey page under load: score clicks and form posts from concurrent clients against a
real `surveysync web` process on 127.0.0.1 with a SQLite ledger, while a nightly sync (another
process) writes to the same ledger.

Not a test: run it by hand (see benchmarks/README.md). Each round measures, with a freshly
started page process each time:

* ``quiet``  the baseline: the same load with nothing else writing to the ledger;
* ``sync``   the load while a sync of a night's sales runs in its own process, claiming,
             rendering and settling requests in the same SQLite file (a provider that
             accepts everything at once, so the sync writes as fast as it can).

It prints, per mode, the median over rounds of requests per second, p50 and p99 latency (as
the clients saw it, connection pool included), errors (anything but 200), and for ``sync``
how much of the load the sync overlapped. The target is p99 under 100 ms with no error.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import create_engine, insert

from surveysync.config import load_settings
from surveysync.demo import create_pos_schema, customers_table, locations_table
from surveysync.demo import transactions_table as sales_table
from surveysync.ledger import open_ledger
from surveysync.ledger.schema import requests
from surveysync.links import link_signer
from surveysync.providers import OutgoingEmail, SendResult
from surveysync.sync import SyncRequest, run_sync

TZ = ZoneInfo("Europe/Amsterdam")
DAY0 = datetime(2026, 3, 1, 0, 0)
LAUNCH = "from surveysync.cli import main; main()"
BROWSER = "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/124.0.0.0 Mobile Safari/537.36"


class AcceptingProvider:
    """Takes every message at once: the sync writes to the ledger as fast as it can."""

    name = "accepting"
    max_batch_size = 500
    honours_idempotency_key = True

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        return [SendResult(e.request_id, "sent") for e in batch]  # type: ignore[arg-type]


@dataclass
class Measured:
    mode: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    error_kinds: dict[str, int]
    overlap: float | None = None  # share of the load during which the sync ran

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def build(workdir: Path, emails: int, night_sales: int, rounds: int) -> Path:
    """A POS with ``emails`` customers bought on day 0 and ``night_sales`` new customers
    bought on each day 1..rounds; the config; the ledger after day 0's run."""
    pos = workdir / "pos.sqlite"
    engine = create_engine(f"sqlite:///{pos.as_posix()}")
    create_pos_schema(engine)
    with engine.begin() as conn:
        conn.execute(insert(locations_table), [{"id": 1, "name": "Centrum"}])
        for day in range(rounds + 1):
            count = emails if day == 0 else night_sales
            people = [f"D{day}-{n:06d}" for n in range(count)]
            conn.execute(insert(customers_table), [_customer(p) for p in people])
            conn.execute(insert(sales_table), [_sale(p, day, n) for n, p in enumerate(people)])
    engine.dispose()
    config = workdir / "surveysync.toml"
    config.write_text(
        f'[store]\nid = "bench"\n\n[pos]\nurl = "sqlite:///{pos.as_posix()}"\n\n'
        f'[ledger]\nurl = "sqlite:///{(workdir / "ledger.sqlite").as_posix()}"\n\n'
        f"[sync]\nfirst_run_start = {DAY0.isoformat()}\nlookback_days = 0\n\n"
        f'[web]\npublic_url = "http://127.0.0.1:8080"\nrate_burst = 100\n',
        encoding="utf-8",
    )
    night(config, 0)
    return config


def _customer(person: str) -> dict[str, object]:
    return {
        "id": person,
        "first_name": "Kim",
        "last_name": "Jansen",
        "email": f"{person.lower()}@example.com",
        "language": "nl",
        "include_in_communications": True,
        "unsubscribed": False,
    }


def _sale(person: str, day: int, n: int) -> dict[str, object]:
    at = DAY0 + timedelta(days=day, hours=9, seconds=n % 30_000)
    return {
        "customer_id": person,
        "location_id": 1,
        "employee_id": None,
        "created_at": at,
        "finalized_at": at,
        "total": 50,
        "kind": "sale",
    }


def night(config: Path, day: int) -> None:
    """The nightly run of ``day`` (23:00 store time), with the accepting provider."""
    now = datetime.combine(DAY0.date() + timedelta(days=day), datetime.min.time(), TZ)
    request = SyncRequest(now=now.replace(hour=23))
    run_sync(load_settings(config), request, provider=AcceptingProvider())  # type: ignore[arg-type]


def plan(config: Path, clicks: int, forms: int, seed: int) -> list[tuple[str, str, str | None]]:
    """The requests of one load, shuffled: (method, path, form body) over day 0's emails."""
    settings = load_settings(config)
    ledger = open_ledger(settings)
    with ledger.reading() as conn:
        ids = sorted(conn.scalars(requests.select().with_only_columns(requests.c.id)))
    ledger.close()
    signer = link_signer(settings.email)
    rng = random.Random(seed)
    now = datetime.now(UTC)
    scores = {rid: rng.randrange(11) for rid in ids}
    paths = {rid: f"/s/{signer.score_token(rid, scores[rid], now)}" for rid in ids}
    work: list[tuple[str, str, str | None]] = []
    for n in range(clicks):
        work.append(("GET", paths[ids[n % len(ids)]], None))
    for n in range(forms):
        rid = ids[n % len(ids)]
        work.append(("POST", paths[rid], f"score={scores[rid]}&comment=Goed+geholpen+{n}"))
    rng.shuffle(work)
    return work


class PageProcess:
    """`surveysync web --port 0` in its own process; its address from its first line."""

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "--config", str(config), "web", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip().removeprefix("surveysync web: ")
        httpx.get(f"{self.url}/healthz", timeout=60).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        if self.process.stdout is not None:
            self.process.stdout.close()


class Connection:
    """One keep-alive HTTP/1.1 connection, as plain as a load generator can be: httpx's
    async client costs twice the CPU of the page it measures, and on a small machine the
    clients would measure themselves."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: str | None) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = (body or "").encode("ascii")
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"User-Agent: {BROWSER}\r\nContent-Length: {len(payload)}\r\n"
            + ("Content-Type: application/x-www-form-urlencoded\r\n" if body else "")
            + "\r\n"
        )
        self.writer.write(head.encode("ascii") + payload)
        status = int((await self.reader.readline()).split()[1])
        length, closing = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            closing |= name.lower() == "connection" and "close" in value.lower()
        await self.reader.readexactly(length)
        if closing:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load(url: str, work: list[tuple[str, str, str | None]], clients: int) -> Measured:
    """``clients`` concurrent clients, each on its own keep-alive connection, take the
    requests of ``work`` one after another until none is left."""
    pending = list(reversed(work))
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    host, port = url.removeprefix("http://").rsplit(":", 1)

    async def client() -> None:
        connection = Connection(host, int(port))
        while pending:
            method, path, body = pending.pop()
            started = time.perf_counter()
            try:
                status = await connection.request(method, path, body)
                if status != 200:
                    errors[str(status)] += 1
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                errors[type(exc).__name__] += 1
                connection.close()
            latencies.append(time.perf_counter() - started)
        connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - began
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return Measured("", len(work), seconds, p50, p99, sum(errors.values()), dict(errors))


def measure(
    config: Path, work: list[tuple[str, str, str | None]], clients: int, day: int | None
) -> Measured:
    page = PageProcess(config)
    sync: subprocess.Popen[bytes] | None = None
    try:
        if day is not None:
            sync = subprocess.Popen([sys.executable, __file__, "_night", str(config), str(day)])
        start = time.monotonic()
        result = asyncio.run(load(page.url, work, clients))
        end = time.monotonic()
    finally:
        page.stop()
    result.mode = "quiet" if day is None else "sync"
    if sync is not None:
        sync_running_until = _wait(sync)
        result.overlap = max(0.0, min(sync_running_until, end) - start) / (end - start)
    return result


def _wait(process: subprocess.Popen[bytes]) -> float:
    """When the sync ended (monotonic), waiting for it if it still runs."""
    done = queue.Queue[float]()
    threading.Thread(target=lambda: (process.wait(), done.put(time.monotonic()))).start()
    ended = done.get(timeout=3600)
    if process.returncode != 0:
        raise SystemExit(f"the sync failed with exit code {process.returncode}")
    return ended


def report(results: list[Measured]) -> None:
    print("mode   rounds  req/s  p50 ms  p99 ms  errors  sync overlap")
    by_mode = {m: [r for r in results if r.mode == m] for m in ("quiet", "sync")}
    medians = {}
    for mode, rows in by_mode.items():
        rate = statistics.median(r.per_second for r in rows)
        p50 = statistics.median(r.p50_ms for r in rows)
        p99 = statistics.median(r.p99_ms for r in rows)
        errors = sum(r.errors for r in rows)
        overlaps = [r.overlap for r in rows if r.overlap is not None]
        overlap = f"{statistics.median(overlaps):.0%}" if overlaps else "-"
        medians[mode] = (rate, p99)
        print(f"{mode:6} {len(rows):6} {rate:6.0f} {p50:7.1f} {p99:7.1f} {errors:7}  {overlap}")
    (quiet_rate, quiet_p99), (sync_rate, sync_p99) = medians["quiet"], medians["sync"]
    print(f"sync/quiet: req/s {sync_rate / quiet_rate:.2f}, p99 {sync_p99 / quiet_p99:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=10_000)
    parser.add_argument("--forms", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--emails", type=int, default=2_000)
    parser.add_argument("--night-sales", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-web-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"building in {workdir} ...", flush=True)
    config = build(workdir, args.emails, args.night_sales, args.rounds)
    results = []
    for round_no in range(1, args.rounds + 1):
        work = plan(config, args.clicks, args.forms, seed=round_no)
        for day in (None, round_no):
            results.append(measure(config, work, args.clients, day))
            last = results[-1]
            print(
                f"round {round_no} {last.mode}: {last.per_second:.0f} req/s, "
                f"p50 {last.p50_ms:.1f} ms, p99 {last.p99_ms:.1f} ms, "
                f"errors {last.error_kinds or 0}",
                flush=True,
            )
    report(results)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_night":
        night(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
