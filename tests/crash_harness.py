"""The crash harness: ``surveysync sync`` as a subprocess against the crash receiver
(tests/crash_receiver.py), killed with SIGKILL at chosen moments, then one clean sync, then
the README's promises checked against the ledger and the receiver's record
(tests/crash_checks.py).

    CrashRun            one shop, one ledger, one receiver; runs syncs and kills them
     ├── ReceiverProcess  the receiver subprocess; restarted on its port after it kills
     │                    itself, once its planned down time has passed (a negative one:
     │                    once the sync that saw it die has ended)
     └── SyncResult       what one sync did: exit code, how it was stopped, its log file

Two ways to kill a sync: ``kill_after`` seconds (the benchmark's random moments), or when the
receiver announces that it holds a call whose plan says ``kill_client_*`` (the tests: the
client is blocked in that very call when it dies, so the outcome never depends on speed).

It never edits the ledger and never signals a process it did not start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.crash_shop import WEBHOOK_SECRET, HttpTiming, PosFeeder, Shop, config_toml

REPO = Path(__file__).resolve().parents[1]
SYNC_LIMIT_S = 600.0  # a sync that runs longer than this is hung: a finding in itself
RECEIVER_START_S = 60.0
SCRIPTED_CLOCK_STEP_S = 10.0


class HarnessError(Exception):
    """The harness itself cannot go on (the receiver will not start, a sync hung)."""


@dataclass
class SyncResult:
    index: int
    started: float
    ended: float
    exit_code: int
    kill: str | None  # "timer" or "hold" when SIGKILL ended it; None: it ended by itself
    killed_at: float | None
    log: Path
    clock_offset: float = 0.0  # the sync's wall clock minus the real one (scripted clock)

    @property
    def killed(self) -> bool:
        return self.exit_code == -signal.SIGKILL


@dataclass
class RunConfig:
    """How a harness run behaves; the defaults are the benchmark's."""

    seed: int = 1
    fault_rate: float = 0.3
    kinds: tuple[str, ...] = ()  # random fault kinds; empty: every kind
    plan: dict[int, dict[str, Any]] = field(default_factory=dict)  # scripted, by call number
    batch_size: int = 20
    timing: HttpTiming = field(default_factory=HttpTiming)
    lookback_days: int = 8
    max_down: float = 6.0  # longest a receiver that killed itself stays down
    scripted_clock: bool = False  # each sync's clock 10 s past the last (tests/crash_sync.py)


class ReceiverProcess:
    """The receiver subprocess. It may kill itself (a planned fault); then it is started
    again on the same port once the down time it announced has passed."""

    def __init__(self, db: Path, args: list[str], on_hold: Callable[[dict[str, Any]], None]):
        self.db = db
        self.args = args
        self.port = 0
        self.deaths = 0
        self.starts = 0
        self.up = threading.Event()
        self._started = threading.Condition()
        self._on_hold = on_hold
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[str] | None = None
        self._stopping = False
        self._timer: threading.Timer | None = None
        self._down: dict[int, float] = {}
        self._parked = False  # died with a negative down time: back when the sync ends
        self._failure: HarnessError | None = None

    def start(self) -> None:
        with self._lock:
            if self._stopping:
                return
            argv = [
                sys.executable,
                "-m",
                "tests.crash_receiver",
                "--port",
                str(self.port),
                "--db",
                str(self.db),
                *self.args,
            ]
            env = {**os.environ, "CRASH_RECEIVER_SECRET": WEBHOOK_SECRET}
            proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise HarnessError(f"the receiver did not start (exit code {proc.wait()})")
            self.port = int(json.loads(line)["port"])
            self._proc = proc
            reader = threading.Thread(target=self._read, args=(proc, proc.stdout), daemon=True)
            reader.start()
            threading.Thread(target=self._watch, args=(proc, reader), daemon=True).start()
            self.up.set()
        with self._started:
            self.starts += 1
            self._started.notify_all()

    def wait_started(self, count: int) -> None:
        """Until the receiver has been started ``count`` times (first start included)."""
        with self._started:
            if not self._started.wait_for(lambda: self.starts >= count, RECEIVER_START_S):
                raise self._failure or HarnessError("the receiver did not come back")

    def wait_up(self) -> None:
        if not self.up.wait(RECEIVER_START_S):
            raise self._failure or HarnessError("the receiver did not come back")

    def reconfigure(self, args: list[str]) -> None:
        """Stop it, then start it again on its port with other arguments."""
        self.stop()
        with self._lock:
            self.args = args
            self._stopping = False
        self.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            if self._timer is not None:
                self._timer.cancel()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self.up.clear()

    def _read(self, proc: subprocess.Popen[str], stream: IO[str]) -> None:
        for line in stream:
            event = json.loads(line)
            if event["event"] == "dying":
                self._down[proc.pid] = float(event["down"])
            elif event["event"] == "holding":
                self._on_hold(event)

    def _watch(self, proc: subprocess.Popen[str], reader: threading.Thread) -> None:
        proc.wait()
        reader.join()  # its last line says how long to stay down
        if proc.stdout is not None:
            proc.stdout.close()
        with self._lock:
            if proc is not self._proc or self._stopping:
                return
            self.up.clear()
            self.deaths += 1
            down = self._down.get(proc.pid, 0.0)
            if down < 0:
                self._parked = True
                return
            self._timer = threading.Timer(down, self._restart)
            self._timer.start()

    def revive(self) -> None:
        """Start it again if it died to stay down until the sync running then had ended."""
        with self._lock:
            parked, self._parked = self._parked, False
        if parked:
            self.start()

    def _restart(self) -> None:
        try:
            self.start()
        except HarnessError as exc:
            self._failure = exc


class _Killer:
    """SIGKILL for one sync, once, remembering why and when."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._lock = threading.Lock()
        self.reason: str | None = None
        self.at: float | None = None

    def __call__(self, reason: str) -> None:
        with self._lock:
            if self.reason is None and self._proc.poll() is None:
                self._proc.kill()
                self.reason, self.at = reason, time.time()


class CrashRun:
    """One harness run: a shop fed into a POS, a ledger, a receiver, and the syncs made."""

    def __init__(self, root: Path, ledger_url: str, shop: Shop, config: RunConfig) -> None:
        self.root = root
        self.ledger_url = ledger_url
        self.shop = shop
        self.config = config
        self.syncs: list[SyncResult] = []
        root.mkdir(parents=True, exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        self.pos = PosFeeder(root / "pos.sqlite", shop)
        self.receiver = ReceiverProcess(root / "receiver.sqlite", self._receiver_args(), self._held)
        self._current: _Killer | None = None
        self._clock = 0.0

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> CrashRun:
        self.receiver.start()
        self._write_config()
        return self

    def __exit__(self, *exc: object) -> None:
        self.receiver.stop()
        self.pos.close()

    @property
    def config_path(self) -> Path:
        return self.root / "surveysync.toml"

    def _write_config(self) -> None:
        text = config_toml(
            self.root,
            self.ledger_url,
            f"http://127.0.0.1:{self.receiver.port}/hooks/surveys",
            first_day=self.shop.first_day,
            lookback_days=self.config.lookback_days,
            batch_size=self.config.batch_size,
            timing=self.config.timing,
        )
        self.config_path.write_text(text, encoding="utf-8")

    def _receiver_args(self, *, clean: bool = False) -> list[str]:
        config = self.config
        args = ["--seed", str(config.seed), "--max-down", str(config.max_down)]
        if clean:
            return [*args, "--fault-rate", "0"]
        args += ["--fault-rate", str(config.fault_rate)]
        if config.kinds:
            args += ["--kinds", ",".join(config.kinds)]
        if config.plan:
            plan = self.root / "plan.json"
            plan.write_text(json.dumps({"faults": config.plan}), encoding="utf-8")
            args += ["--plan", str(plan)]
        return args

    # --- syncs -------------------------------------------------------------------------------

    def sync(self, *, kill_after: float | None = None) -> SyncResult:
        """One ``surveysync sync``, killed after ``kill_after`` seconds or on a held call."""
        index = len(self.syncs) + 1
        log = self.root / "logs" / f"sync-{index:03d}.log"
        env = self._sync_env()
        with log.open("wb") as out:
            started = time.time()
            offset = float(env["CRASH_SYNC_CLOCK"]) - started if "CRASH_SYNC_CLOCK" in env else 0.0
            proc = subprocess.Popen(
                self._sync_argv(), stdout=out, stderr=subprocess.STDOUT, cwd=self.root, env=env
            )
            killer = self._current = _Killer(proc)
            timer = None if kill_after is None else threading.Timer(kill_after, killer, ("timer",))
            if timer is not None:
                timer.start()
            try:
                code = proc.wait(timeout=SYNC_LIMIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise HarnessError(f"sync {index} ran longer than {SYNC_LIMIT_S:.0f} s") from None
            finally:
                if timer is not None:
                    timer.cancel()
                self._current = None
        self.receiver.revive()
        killed = code == -signal.SIGKILL
        result = SyncResult(
            index,
            started,
            time.time(),
            code,
            killer.reason if killed else None,
            killer.at if killed else None,
            log,
            offset,
        )
        self.syncs.append(result)
        return result

    def final_sync(self) -> SyncResult:
        """The receiver restarted without faults, then one sync that must not be killed."""
        self.receiver.reconfigure(self._receiver_args(clean=True))
        self.receiver.wait_up()
        return self.sync()

    def _held(self, event: dict[str, Any]) -> None:
        # Only the kill_client faults end the sync; a plain hold waits for its own timeout.
        killer = self._current
        if killer is not None and event.get("kill_client"):
            killer("hold")

    def _sync_argv(self) -> list[str]:
        script = Path(sys.executable).with_name("surveysync")
        if self.config.scripted_clock or not script.exists():
            return [
                sys.executable,
                "-m",
                "tests.crash_sync",
                "--config",
                str(self.config_path),
                "sync",
            ]
        return [str(script), "--config", str(self.config_path), "sync"]

    def _sync_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SURVEYSYNC")}
        env["PYTHONPATH"] = str(REPO)
        if self.config.scripted_clock:
            self._clock = max(time.time(), self._clock + SCRIPTED_CLOCK_STEP_S)
            env["CRASH_SYNC_CLOCK"] = f"{self._clock:.3f}"
        return env
