"""How long `surveysync demo` takes, the README's first command, as the user runs it: a fresh
process each time (Python's start-up and imports included), building the store, playing its
nights, its month of answers, and writing report.html.

Not a test: run it by hand (see benchmarks/README.md). Medians of ``--repeats`` runs, wall
and CPU seconds (CPU is the figure to read on a busy machine), beside baselines measured in
the same run, the runs interleaved so that a busy machine slows each alike:

- ``nights``: a child that does only what the demo did before it played answers (build the
  store, the two suppressions, the nightly runs), so ``demo - nights`` is what the answers
  and the report cost;
- ``--baseline-src DIR``: the same `surveysync demo` from another source tree (for example
  ``git archive <commit> | tar -x -C DIR``), so a change is measured against what it changed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_NIGHTS_ONLY = """
import sys
from datetime import datetime
from pathlib import Path
from surveysync import demo, logging as logs
from surveysync.config import load_settings
directory, outbox = Path(sys.argv[1]), Path(sys.argv[2])
config = demo.build_store(directory, outbox, 3000, 7)
settings = load_settings(config)
logs.configure("warning", logs.secret_values(settings))
now = datetime.now(settings.store.tz)
demo.suppress_examples(settings, now)
demo.run_nights(settings, demo.demo_nights(now), lambda event, amount: None)
"""
_DEMO = "from surveysync.cli import main; main()"


def run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def scenarios(work: Path, baseline_src: Path | None) -> dict[str, tuple[list[str], dict[str, str]]]:
    env = dict(os.environ)
    places = [str(work / "surveysync-demo"), str(work / "outbox")]
    found = {
        "demo": (
            [sys.executable, "-c", _DEMO, "demo", "--dir", places[0], "--outbox", places[1]],
            env,
        ),
        "nights": ([sys.executable, "-c", _NIGHTS_ONLY, *places], env),
    }
    if baseline_src is not None:
        old = env | {"PYTHONPATH": str(baseline_src / "src")}
        found["baseline demo"] = (found["demo"][0], old)
    return found


def bench(repeats: int, baseline_src: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        runs: dict[str, list[tuple[float, float]]] = {}
        for _ in range(repeats):
            for name, (command, env) in scenarios(Path(tmp), baseline_src).items():
                runs.setdefault(name, []).append(run(command, env))
    print(f"medians of {repeats}: wall s, CPU s, CPU / nights")
    nights_cpu = statistics.median(cpu for _, cpu in runs["nights"])
    for name, timings in runs.items():
        wall = statistics.median(w for w, _ in timings)
        cpu = statistics.median(c for _, c in timings)
        print(f"{name:<14} {wall:7.2f} {cpu:7.2f} {cpu / nights_cpu:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, help="another tree's root, to compare")
    args = parser.parse_args()
    bench(args.repeats, args.baseline_src)


if __name__ == "__main__":
    main()
