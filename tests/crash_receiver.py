"""A webhook receiver of its own, for the crash harness: a separate process on 127.0.0.1 that
implements surveysync's ``webhook`` contract, keeps every delivery durably and injects faults.

    python -m tests.crash_receiver --port 0 --db FILE --secret S --seed N --fault-rate 0.3
                                   [--plan FILE] [--kinds 429,500,...] [--bad-marker bounce]

It prints one JSON line per event on stdout, ``{"event": "listening", "port": P}`` first; then
``holding`` (a call held open; with ``kill_client`` the harness kills surveysync now) and
``dying`` (the receiver kills itself; ``down`` is how long the harness keeps it down).

What it does with each signed POST, in this order::

    1. signature     X-Surveysync-Signature = v1=HMAC-SHA256(secret, "<timestamp>.<body>"),
                     timestamp within 5 minutes; else 401 (recorded as bad_signature)
    2. early fault   429 with Retry-After, 500, 503, reset before handling, the receiver
                     killed before handling, or held until the harness kills the client
    3. idempotency   a key seen before with the same body gets its first answer again and
                     delivers nothing; with another body, 409
    4. bad address   a batch naming an address whose local part starts with the bad marker
                     is refused whole with 400 (the client then sends one message at a time)
    5. delivery      the key, its answer and one row per message, committed in one
                     transaction (WAL, synchronous=FULL) before any byte of the answer
    6. late fault    handled then reset, handled then held until the client gives up,
                     handled then the receiver killed, handled then held while the harness
                     kills the client

Faults come from a plan: ``--plan`` names faults for given call numbers (a scripted trial);
every other call gets one with probability ``--fault-rate``, drawn from a generator seeded by
``--seed`` and the call's number. Call numbers are kept in the record, so they go on counting
across restarts and the same seed gives the same faults to the same calls.

What it must never do: answer 2xx for a message it has not committed; deliver twice under one
key; decide anything by timing (a held call ends when the client closes it, never on a clock).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import random
import select
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

EARLY = ("429", "500", "503", "reset_before", "die_before", "kill_client_before")
LATE = ("handled_reset", "handled_hold", "die_after", "kill_client_after")
# The random plan's faults and how often each is drawn; kill_client_* are only scripted.
RANDOM_WEIGHTS = {
    "429": 2,
    "500": 2,
    "503": 2,
    "reset_before": 2,
    "handled_reset": 2,
    "handled_hold": 2,
    "die_before": 1,
    "die_after": 1,
}
SIGNATURE_TOLERANCE_S = 300
HOLD_LIMIT_S = 900.0  # a held call the client never closes is dropped after this (never seen)

SCHEMA = """
CREATE TABLE IF NOT EXISTS posts (
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, pid INTEGER NOT NULL, key TEXT,
    body_sha TEXT, request_ids TEXT NOT NULL, fault TEXT, outcome TEXT NOT NULL,
    status INTEGER);
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY, body_sha TEXT NOT NULL, status INTEGER NOT NULL,
    answer TEXT NOT NULL, first_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, key TEXT NOT NULL,
    body_sha TEXT NOT NULL, message_sha TEXT NOT NULL, to_addr TEXT NOT NULL,
    post_seq INTEGER NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, pid INTEGER NOT NULL,
    kind TEXT NOT NULL, seq INTEGER, detail TEXT);
"""


@dataclass(frozen=True)
class Fault:
    kind: str
    retry_after: float | None = None  # for 429/500/503: the Retry-After header, if any
    down: float = 0.0  # for die_*: seconds the harness keeps the receiver down


@dataclass(frozen=True)
class Call:
    """One signed survey POST as received."""

    seq: int
    key: str
    body_sha: str
    messages: list[dict[str, Any]]

    @property
    def request_ids(self) -> list[str]:
        return [str(m.get("request_id")) for m in self.messages]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


class Plan:
    """Which fault, if any, call number ``seq`` gets."""

    def __init__(
        self,
        seed: int,
        fault_rate: float,
        scripted: dict[int, Fault],
        kinds: Sequence[str],
        max_down: float,
    ) -> None:
        self.seed = seed
        self.fault_rate = fault_rate
        self.scripted = scripted
        self.kinds = list(kinds)
        self.max_down = max_down

    def fault_for(self, seq: int) -> Fault | None:
        if seq in self.scripted:
            return self.scripted[seq]
        rng = random.Random(f"{self.seed}:{seq}")
        if not self.kinds or rng.random() >= self.fault_rate:
            return None
        kind = rng.choices(self.kinds, [RANDOM_WEIGHTS[k] for k in self.kinds])[0]
        if kind in ("429", "503"):
            return Fault(kind, retry_after=float(rng.choice([0, 1])))
        if kind.startswith("die_"):
            return Fault(kind, down=round(rng.uniform(0.2, self.max_down), 2))
        return Fault(kind)


def load_plan(args: argparse.Namespace) -> Plan:
    scripted: dict[int, Fault] = {}
    if args.plan:
        data = json.loads(Path(args.plan).read_text(encoding="utf-8"))
        for seq, spec in data.get("faults", {}).items():
            scripted[int(seq)] = Fault(
                spec["kind"], spec.get("retry_after"), float(spec.get("down", 0.0))
            )
    kinds = [k for k in args.kinds.split(",") if k] if args.kinds else list(RANDOM_WEIGHTS)
    unknown = [k for k in [*kinds, *(f.kind for f in scripted.values())] if k not in EARLY + LATE]
    if unknown:
        raise SystemExit(f"unknown fault kinds: {', '.join(unknown)}")
    return Plan(args.seed, args.fault_rate, scripted, kinds, args.max_down)


class Record:
    """The receiver's durable memory: one SQLite file, every write committed before answering."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._seq = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM posts").fetchone()[0]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return int(self._seq)

    def post(self, call: Call, fault: str | None, outcome: str, status: int | None) -> None:
        with self._lock, self._transaction() as conn:
            self._insert_post(conn, call, fault, outcome, status)

    def event(self, name: str, seq: int | None = None, **detail: Any) -> None:
        with self._lock, self._transaction() as conn:
            conn.execute(
                "INSERT INTO events (at, pid, kind, seq, detail) VALUES (?, ?, ?, ?, ?)",
                (time.time(), os.getpid(), name, seq, json.dumps(detail)),
            )

    def answer_once(self, call: Call, fault: str | None, bad_marker: str) -> tuple[Answer, str]:
        """The answer to a call, and what it was (delivered, replayed, conflict, bad_address).
        A new key is delivered and remembered in the same transaction."""
        with self._lock, self._transaction() as conn:
            found = conn.execute(  # a call without a key is never a repeat
                "SELECT body_sha, status, answer FROM keys WHERE key = ? AND key != ''",
                (call.key,),
            ).fetchone()
            if found is not None:
                answer, outcome = _replay(call, found)
            elif any(_is_bad(m, bad_marker) for m in call.messages):
                answer, outcome = _bad_address(call, bad_marker), "bad_address"
            else:
                answer, outcome = self._deliver(conn, call), "delivered"
            self._insert_post(conn, call, fault, outcome, answer.status)
        return answer, outcome

    def _deliver(self, conn: sqlite3.Connection, call: Call) -> Answer:
        results = [
            {"request_id": rid, "status": "sent", "id": f"rcv-{call.seq}-{n}"}
            for n, rid in enumerate(call.request_ids)
        ]
        answer = Answer(200, {"results": results})
        conn.execute(
            "INSERT OR IGNORE INTO keys (key, body_sha, status, answer, first_seq)"
            " VALUES (?, ?, ?, ?, ?)",
            (call.key, call.body_sha, answer.status, json.dumps(answer.body), call.seq),
        )
        now = time.time()
        conn.executemany(
            "INSERT INTO deliveries (request_id, key, body_sha, message_sha, to_addr, post_seq,"
            " at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    str(m.get("request_id")),
                    call.key,
                    call.body_sha,
                    _sha(json.dumps(m, sort_keys=True).encode("utf-8")),
                    str(m.get("to", "")).lower(),
                    call.seq,
                    now,
                )
                for m in call.messages
            ],
        )
        return answer

    def _insert_post(
        self,
        conn: sqlite3.Connection,
        call: Call,
        fault: str | None,
        outcome: str,
        status: int | None,
    ) -> None:
        conn.execute(
            "INSERT INTO posts (seq, at, pid, key, body_sha, request_ids, fault, outcome, status)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                call.seq,
                time.time(),
                os.getpid(),
                call.key,
                call.body_sha,
                json.dumps(call.request_ids),
                fault,
                outcome,
                status,
            ),
        )


def _replay(call: Call, found: tuple[str, int, str]) -> tuple[Answer, str]:
    body_sha, status, answer = found
    if body_sha == call.body_sha:
        return Answer(int(status), json.loads(answer)), "replayed"
    message = "this Idempotency-Key was used with another body"
    return Answer(409, {"message": message}), "conflict"


def _is_bad(message: dict[str, Any], marker: str) -> bool:
    return bool(marker) and str(message.get("to", "")).lower().startswith(marker)


def _bad_address(call: Call, marker: str) -> Answer:
    count = sum(_is_bad(m, marker) for m in call.messages)
    return Answer(400, {"message": f"{count} recipient(s) refused: invalid address"})


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def announce(event: str, **fields: Any) -> None:
    """One JSON line on stdout for the harness."""
    sys.stdout.write(json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n")
    sys.stdout.flush()


class Receiver:
    """Decides what happens to each call; the handler only moves bytes."""

    def __init__(self, record: Record, plan: Plan, secret: str, bad_marker: str) -> None:
        self.record = record
        self.plan = plan
        self.secret = secret.encode("utf-8")
        self.bad_marker = bad_marker.lower()

    def handle(self, exchange: Exchange, headers: dict[str, str], body: bytes) -> None:
        if not self._signed(headers, body):
            self.record.event("bad_signature")
            exchange.reply(Answer(401, {"message": "bad signature"}))
            return
        try:
            data = json.loads(body)
        except ValueError:
            exchange.reply(Answer(400, {"message": "the body is not JSON"}))
            return
        if not isinstance(data, dict) or not isinstance(data.get("messages", []), list):
            exchange.reply(Answer(400, {"message": "not a surveysync webhook body"}))
            return
        if data.get("type") == "ping":
            exchange.reply(Answer(200, {"ok": True}))
            return
        call = Call(
            self.record.next_seq(),
            headers.get("idempotency-key", ""),
            _sha(body),
            list(data.get("messages", [])),
        )
        fault = self.plan.fault_for(call.seq)
        if fault is not None and fault.kind in EARLY:
            self._early(exchange, call, fault)
            return
        answer, _ = self.record.answer_once(call, fault.kind if fault else None, self.bad_marker)
        if fault is not None:
            self._late(exchange, call, fault, answer)
        else:
            exchange.reply(answer)

    def _signed(self, headers: dict[str, str], body: bytes) -> bool:
        stamp = headers.get("x-surveysync-timestamp", "")
        given = headers.get("x-surveysync-signature", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > SIGNATURE_TOLERANCE_S:
            return False
        digest = hmac.new(self.secret, stamp.encode("ascii") + b"." + body, hashlib.sha256)
        return hmac.compare_digest("v1=" + digest.hexdigest(), given)

    def _early(self, exchange: Exchange, call: Call, fault: Fault) -> None:
        status = int(fault.kind) if fault.kind.isdigit() else None
        self.record.post(call, fault.kind, "fault", status)
        if status is not None:
            headers = (
                () if fault.retry_after is None else (("Retry-After", str(int(fault.retry_after))),)
            )
            exchange.reply(Answer(status, {"message": f"injected {status}"}, headers))
        elif fault.kind == "reset_before":
            exchange.reset()
        elif fault.kind == "die_before":
            self._die(call, fault)
        else:  # kill_client_before
            self._hold(exchange, call, "before", kill_client=True)

    def _late(self, exchange: Exchange, call: Call, fault: Fault, answer: Answer) -> None:
        if fault.kind == "handled_reset":
            exchange.reset()
        elif fault.kind == "handled_hold":
            self._hold(exchange, call, "after", kill_client=False)
        elif fault.kind == "die_after":
            self._die(call, fault)
        else:  # kill_client_after
            self._hold(exchange, call, "after", kill_client=True)

    def _hold(self, exchange: Exchange, call: Call, stage: str, *, kill_client: bool) -> None:
        self.record.event("holding", call.seq, stage=stage, kill_client=kill_client)
        announce("holding", seq=call.seq, stage=stage, kill_client=kill_client)
        closed = exchange.wait_for_client_close()
        self.record.event("released", call.seq, client_closed=closed)
        exchange.reset()

    def _die(self, call: Call, fault: Fault) -> None:
        self.record.event("dying", call.seq, kind=fault.kind, down=fault.down)
        announce("dying", seq=call.seq, kind=fault.kind, down=fault.down)
        os.kill(os.getpid(), signal.SIGKILL)


class Exchange:
    """The bytes side of one call: answer it, reset it, or wait until the client leaves."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._handler = handler

    def reply(self, answer: Answer) -> None:
        data = json.dumps(answer.body).encode("utf-8")
        handler = self._handler
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Connection", "close")
        for name, value in answer.headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
        handler.close_connection = True

    def reset(self) -> None:
        """Close with RST, not FIN (SO_LINGER 0). The socket really closes when the handler
        closes its files, right after this call returns, with nothing written."""
        handler = self._handler
        with contextlib.suppress(OSError):
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.connection.close()
        handler.close_connection = True

    def wait_for_client_close(self) -> bool:
        """Block until the client closes the connection (gave up, or was killed)."""
        sock = self._handler.connection
        deadline = time.monotonic() + HOLD_LIMIT_S
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if not readable:
                break
            try:
                if not sock.recv(4096):
                    return True
            except OSError:
                return True
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ReceiverServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.receiver.handle(Exchange(self), headers, body)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the record is the log


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, receiver: Receiver) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.receiver = receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanished mid-answer (killed by the harness) is expected here; any
        # other error is the receiver's own, recorded so that the harness fails on it.
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.receiver.record.event("receiver_error", error=repr(error))
            super().handle_error(request, client_address)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--db", type=Path, required=True, help="the record (SQLite file)")
    parser.add_argument(
        "--secret",
        default=os.environ.get("CRASH_RECEIVER_SECRET", ""),
        help="the webhook secret (default: $CRASH_RECEIVER_SECRET)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the random faults")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of calls faulted")
    parser.add_argument("--kinds", default="", help="comma-separated random fault kinds")
    parser.add_argument("--plan", type=Path, help="JSON: {'faults': {'<call>': {'kind': ...}}}")
    parser.add_argument(
        "--max-down",
        type=float,
        default=6.0,
        help="longest down time, in seconds, after the receiver kills itself",
    )
    parser.add_argument(
        "--bad-marker", default="bounce", help="refuse addresses whose local part starts with this"
    )
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("--secret (or CRASH_RECEIVER_SECRET) is required")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    record = Record(args.db)
    receiver = Receiver(record, load_plan(args), args.secret, args.bad_marker)
    server = ReceiverServer(args.port, receiver)
    port = server.server_address[1]
    record.event("started", port=port)
    announce("listening", port=port)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # every answer is already committed
    server.serve_forever()


if __name__ == "__main__":
    main()
