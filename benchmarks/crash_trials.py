"""The long crash run of issue 11: many trials of ``surveysync sync`` killed with SIGKILL at
random moments, against the crash receiver injecting faults, then one clean sync and the
README's promises checked (tests/crash_checks.py).

    .venv/bin/python benchmarks/crash_trials.py --trials 200 --fault-rate 0.3 \\
        --ledger sqlite|postgresql --seed S [--sales N] [--workdir DIR] [--json FILE]

One trial: the next slice of the shop's sales is written to the POS, a sync is started and
killed after a random delay (drawn from the seeded generator, up to a little more than a
sync lasts when it is not killed); with probability ``--second-kill`` the sync that resumes
is killed too; then a sync runs to its end (it may still fail on faults). After the last
trial the receiver is restarted without faults and one sync finishes the work.

It prints a summary (trials, kills, faults by kind, calls, requests delivered, duplicates,
losses, in_doubt, left sending) and, for each duplicate or loss, the story of that request:
the calls that carried it, the faults, the kills and the sync log events around them.
Not a test: the delays are real, and the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

# The harness lives with the tests (the CI runs its short version); this script reuses it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from tests.crash_checks import (
    PROPERTIES,
    Evidence,
    Findings,
    causes,
    check,
    gather,
    read_ledger,
    read_record,
    story,
)
from tests.crash_harness import CrashRun, RunConfig, SyncResult
from tests.crash_shop import TZ, generate_shop

from surveysync import logging as logs

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LOSSES = ("sent_not_held", "missing_people", "unsettled")
DUPLICATES = ("duplicates", "people_twice")
STORIES_PER_PROPERTY = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--ledger", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sales", type=int, help="default: max(3000, 40 per trial)")
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--second-kill", type=float, default=0.3)
    parser.add_argument("--workdir", type=Path, help="kept afterwards; default: a temp dir")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--postgres", default=POSTGRES_ADMIN, help="admin URL (database test)")
    parser.add_argument(
        "--analyse", type=Path, metavar="ROOT", help="only explain the run kept in ROOT again"
    )
    return parser.parse_args()


@contextlib.contextmanager
def ledger_url(kind: str, root: Path, admin_url: str) -> Iterator[str]:
    """A fresh ledger: a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{(root / 'ledger.sqlite').as_posix()}"
        return
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"surveysync_crash_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


class KillClock:
    """Random kill delays, up to 1.3 times the median length of the syncs that ran to their
    end (3 s until one has)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._whole: list[float] = []

    def delay(self) -> float:
        recent = self._whole[-15:]
        limit = 1.3 * statistics.median(recent) if recent else 3.0
        return round(self._rng.uniform(0.0, limit), 3)

    def saw(self, result: SyncResult) -> None:
        if not result.killed:
            self._whole.append(result.ended - result.started)


def trials(run: CrashRun, args: argparse.Namespace, rng: random.Random) -> None:
    clock = KillClock(rng)
    per_trial = math.ceil(len(run.shop.sales) / args.trials)
    for number in range(1, args.trials + 1):
        run.pos.feed(per_trial)
        kills = 1 + (rng.random() < args.second_kill)
        for _ in range(kills):
            clock.saw(run.sync(kill_after=clock.delay()))
        clock.saw(run.sync())
        if number % 10 == 0 or number == args.trials:
            killed = sum(s.killed for s in run.syncs)
            print(
                f"  trial {number}/{args.trials}: {len(run.syncs)} syncs, {killed} killed",
                flush=True,
            )


def summary(
    run: CrashRun, findings: Findings, seconds: float, args: argparse.Namespace
) -> dict[str, Any]:
    syncs = run.syncs
    stats = findings.stats
    return {
        "ledger": args.ledger,
        "seed": args.seed,
        "trials": args.trials,
        "fault_rate": args.fault_rate,
        "sales": stats["sales"],
        "syncs": len(syncs),
        "kills": sum(s.killed for s in syncs),
        "kills_by_reason": dict(sorted(_count(s.kill for s in syncs if s.killed).items())),
        "sync_exit_codes": dict(sorted(_count(str(s.exit_code) for s in syncs).items())),
        "sync_failures": dict(
            sorted(_count(_failure(s) for s in syncs if s.exit_code > 0).items())
        ),
        "calls": stats["calls"],
        "faults": {k[6:]: v for k, v in sorted(stats.items()) if k.startswith("fault:")},
        "call_outcomes": {k[8:]: v for k, v in sorted(stats.items()) if k.startswith("outcome:")},
        "receiver_deaths": stats["receiver_deaths"],
        "receiver_errors": stats["receiver_errors"],
        "requests": {k[7:]: v for k, v in sorted(stats.items()) if k.startswith("ledger:")},
        "delivered": stats["delivered"],
        "duplicates": sum(len(findings.of(p)) for p in DUPLICATES),
        "losses": sum(len(findings.of(p)) for p in LOSSES),
        "in_doubt": stats["ledger:in_doubt"],
        "in_doubt_delivered": stats["in_doubt_delivered"],
        "left_sending": stats["ledger:sending"],
        "violations": {p: len(findings.of(p)) for p in PROPERTIES},
        "seconds": round(seconds, 1),
    }


def _failure(sync: SyncResult) -> str:
    """Why a sync exited non-zero: the error type its log names, else its last line."""
    lines = sync.log.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in reversed(lines):
        if '"error_type"' in line:
            return str(json.loads(line).get("error_type"))
    return lines[-1][:80] if lines else "no output"


def _count(items: Iterator[str | None] | list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[str(item)] = counts.get(str(item), 0) + 1
    return counts


def print_findings(syncs: list[SyncResult], findings: Findings, evidence: Evidence) -> None:
    """Each violated property with a few examples; then each path to a duplicate or a 409,
    counted, with the full story of its first example."""
    for name in PROPERTIES:
        found = findings.of(name)
        if found:
            print(f"\n{name}: {len(found)}")
            print("\n".join(f"  {line}" for line in found[:STORIES_PER_PROPERTY]))
    for cause, examples in sorted(causes(evidence, syncs).items()):
        print(f"\n{cause}: {len(examples)}")
        print("\n".join(f"  {line}" for line in examples[:STORIES_PER_PROPERTY]))
        request_id = _first_request(examples[0], evidence)
        if request_id:
            print("\n".join(story(request_id, evidence, syncs)))


def _first_request(example: str, evidence: Evidence) -> str | None:
    """The request an example is about: named first, or the first of the call it names."""
    word = example.split()[0].rstrip(":")
    if len(word) == 32:
        return word
    call = int(example.split("repeated in call ")[1].split()[0])
    return next((p.request_ids[0] for p in evidence.posts if p.seq == call), None)


def save_syncs(root: Path, syncs: list[SyncResult]) -> None:
    rows = [{**vars(s), "log": str(s.log)} for s in syncs]
    (root / "syncs.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


def load_syncs(root: Path) -> list[SyncResult]:
    """The syncs of a kept run: from syncs.json, or (older runs) rebuilt from their logs,
    their start and end taken from the first and last log line."""
    saved = root / "syncs.json"
    if saved.exists():
        return [
            SyncResult(**{**row, "log": Path(row["log"])}) for row in json.loads(saved.read_text())
        ]
    syncs = []
    for index, log in enumerate(sorted((root / "logs").glob("sync-*.log")), start=1):
        text = log.read_text(encoding="utf-8", errors="replace")
        stamps = [
            datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00")).timestamp()
            for line in text.splitlines()
            if line.startswith("{") and '"timestamp"' in line
        ]
        ended = "run.finished" in text or "run.failed" in text
        code = (0 if "run.finished" in text else 1) if ended else -9
        if stamps:
            syncs.append(
                SyncResult(index, min(stamps) - 1.0, max(stamps) + 0.5, code, None, None, log)
            )
    return syncs


def analyse(root: Path) -> None:
    """Explain a kept run again: its duplicates and 409s by path, with stories."""
    ledger = root / "ledger.sqlite"
    requests, decisions = read_ledger(f"sqlite:///{ledger}") if ledger.exists() else ({}, {})
    posts, deliveries, events = read_record(root / "receiver.sqlite")
    evidence = Evidence([], requests, decisions, posts, deliveries, events, {})
    print_findings(load_syncs(root), Findings(), evidence)


def main() -> None:
    args = parse_args()
    if args.analyse:
        analyse(args.analyse)
        return
    rng = random.Random(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crash-trials-"))
    root = workdir / f"{args.ledger}-seed{args.seed}"
    root.mkdir(parents=True, exist_ok=True)
    # The reference run happens in this process: its log goes to a file, not the summary.
    logs.configure("warning", stream=(root / "reference.log").open("w", encoding="utf-8"))
    started = time.monotonic()
    now = datetime.now(TZ).replace(tzinfo=None)
    shop = generate_shop(args.seed, args.sales or max(3000, 40 * args.trials), args.days, now)
    config = RunConfig(
        seed=args.seed,
        fault_rate=args.fault_rate,
        batch_size=args.batch_size,
        lookback_days=args.days + 2,
    )
    print(
        f"crash trials: {args.trials} trials, {len(shop.sales)} sales, ledger {args.ledger}, "
        f"faults {args.fault_rate:.0%}, seed {args.seed}, in {root}",
        flush=True,
    )
    with (
        ledger_url(args.ledger, root, args.postgres) as url,
        CrashRun(root, url, shop, config) as run,
    ):
        trials(run, args, rng)
        run.pos.feed(run.pos.left)
        final = run.final_sync()
        evidence = gather(run, datetime.now(TZ))
        findings = check(evidence)
    figures = summary(run, findings, time.monotonic() - started, args)
    figures["final_sync_exit"] = final.exit_code
    figures["causes"] = {c: len(e) for c, e in sorted(causes(evidence, run.syncs).items())}
    print(json.dumps(figures, indent=2))
    print_findings(run.syncs, findings, evidence)
    save_syncs(root, run.syncs)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
