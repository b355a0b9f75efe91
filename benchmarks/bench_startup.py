"""How long a command takes to start and answer, as a support person types it: a fresh
process each time, Python's start-up and imports included.

Not a test: run it by hand (see benchmarks/README.md). It makes a demo store once (in a
temporary folder), then times, interleaved so that a busy machine slows each alike,
``--repeats`` runs of each of:

- ``python -c pass``: the floor, the interpreter alone;
- ``surveysync --help``;
- ``surveysync status`` on the demo's ledger;
- ``surveysync preview`` (renders one survey email from the store's templates).

It prints the median wall and CPU seconds of each and their ratio to the floor; CPU is the
figure to read on a busy machine. ``--baseline-src DIR`` times the same commands from another
source tree too (for example ``git archive <commit> | tar -x -C DIR``), in the same run.
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

_CLI = "from surveysync.cli import main; main()"


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, env=env, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def commands(config: Path) -> dict[str, list[str]]:
    cli = [sys.executable, "-c", _CLI]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "--help": [*cli, "--help"],
        "status": [*cli, "--config", str(config), "status"],
        "preview": [*cli, "--config", str(config), "preview"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--baseline-src", type=Path, help="another tree's root, to compare")
    args = parser.parse_args()
    trees = {"": dict(os.environ)}
    if args.baseline_src is not None:
        trees["baseline "] = os.environ | {"PYTHONPATH": str(args.baseline_src / "src")}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        work = Path(folder)
        subprocess.run(
            [sys.executable, "-c", _CLI, "demo", "--sales", "600"],
            cwd=work,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        config = work / "surveysync-demo" / "surveysync.toml"
        runs: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.repeats):
            for tree, env in trees.items():
                for name, command in commands(config).items():
                    if tree and name == "python -c pass":
                        continue
                    runs.setdefault(tree + name, []).append(timed(command, work, env))
    floor_wall = statistics.median(w for w, _ in runs["python -c pass"])
    floor_cpu = statistics.median(c for _, c in runs["python -c pass"])
    print(f"medians of {args.repeats} runs, interleaved")
    print(f"{'command':<25} {'wall s':>7} {'cpu s':>7} {'wall/floor':>10} {'cpu/floor':>9}")
    for name, found in runs.items():
        wall = statistics.median(w for w, _ in found)
        cpu = statistics.median(c for _, c in found)
        print(
            f"{name:<25} {wall:7.3f} {cpu:7.3f} {wall / floor_wall:10.1f} "
            f"{cpu / max(floor_cpu, 1e-3):9.1f}"
        )


if __name__ == "__main__":
    main()
