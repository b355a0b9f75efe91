"""What each HTTP provider adapter costs per survey: building the call, sending it over
loopback to a server that answers as the provider does on success, and reading the answer.

Not a test: run it by hand (see benchmarks/README.md). The baseline, measured in the same
run, is the outbox provider writing the same emails to a temporary folder (MIME build plus a
file per email). Each figure is the median of several repetitions of sending the same
rendered emails in the provider's own batch size.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from surveysync.config import ProviderSettings, Settings
from surveysync.providers import OutgoingEmail, Provider, create
from surveysync.render import Renderer

NOW = datetime(2026, 6, 1, 21, 0, tzinfo=UTC)
KINDS = ["webhook", "sendgrid", "postmark", "resend", "brevo", "mailgun"]


def _count(body: bytes, kind: str) -> int:
    """How many messages a call carried, to answer with as many results."""
    if kind == "postmark":
        data = json.loads(body)
        return len(data["Messages"] if isinstance(data, dict) else data)
    if kind == "resend":
        return len(json.loads(body))
    return 1


def _answer(kind: str, body: bytes) -> tuple[int, Any]:
    count = _count(body, kind)
    return {
        "webhook": (200, {}),
        "sendgrid": (202, None),
        "postmark": (
            200,
            [{"ErrorCode": 0, "Message": "OK", "MessageID": str(n)} for n in range(count)],
        ),
        "resend": (200, {"data": [{"id": str(n)} for n in range(count)]}),
        "brevo": (201, {"messageIds": ["<x@brevo>"]}),
        "mailgun": (200, {"id": "<x@mailgun>", "message": "Queued. Thank you."}),
    }[kind]


def serve(kind: str) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def setup(self) -> None:
            super().setup()
            # Headers and body go out as separate writes: without this, Nagle and delayed
            # ACKs add ~40 ms to every call, which would be the benchmark's, not surveysync's.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, data = _answer(kind, body)
            payload = b"" if data is None else json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if kind == "sendgrid":
                self.send_header("X-Message-Id", "bench")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}"


def provider_for(kind: str, url: str, outbox: Path) -> Provider:
    sections: dict[str, Any] = {
        "webhook": {"url": f"{url}/hook", "secret": "bench-secret"},
        "sendgrid": {"api_key": "SG.bench", "base_url": url},
        "postmark": {"api_key": "pm-bench", "base_url": url},
        "resend": {"api_key": "re_bench", "base_url": url},
        "brevo": {"api_key": "xkeysib-bench", "base_url": url},
        "mailgun": {"api_key": "key-bench", "base_url": url, "domain": "mg.bench.example"},
    }
    if kind == "outbox":
        return create(ProviderSettings(kind="outbox", outbox_dir=outbox))  # type: ignore[arg-type]
    settings = ProviderSettings(kind=kind, batch_size=500, **{kind: sections[kind]})  # type: ignore[arg-type]
    return create(settings)


def emails(count: int) -> list[OutgoingEmail]:
    settings = Settings()
    renderer = Renderer(settings.store, settings.email)
    payload = {
        "first_name": "Mira",
        "last_name": "Novak",
        "location_name": "Centrum",
        "language": "nl",
    }
    made = []
    for n in range(count):
        rid = f"{n:032x}"
        message = renderer.render(rid, f"customer{n}@example.com", payload, NOW)
        made.append(OutgoingEmail(rid, rid, message, f"{n // 100:040x}"))
    return made


def send_all(provider: Provider, batch: Sequence[OutgoingEmail]) -> float:
    started = time.perf_counter()
    size = provider.max_batch_size
    for start in range(0, len(batch), size):
        results = provider.send(batch[start : start + size])
        assert all(r.status == "sent" for r in results), results[:1]
    return time.perf_counter() - started


def measure(kind: str, batch: Sequence[OutgoingEmail], repeats: int) -> tuple[float, int]:
    server, url = serve(kind)
    with tempfile.TemporaryDirectory() as folder:
        provider = provider_for(kind, url, Path(folder))
        try:
            runs = [send_all(provider, batch) for _ in range(repeats)]
        finally:
            provider.close()
            server.shutdown()
            server.server_close()
    return statistics.median(runs), provider.max_batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--emails", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    batch = emails(args.emails)
    baseline, _ = measure("outbox", batch, args.repeats)
    print(f"{args.emails} rendered emails; median of {args.repeats}; baseline: outbox\n")
    header = ("provider", "batch", "seconds", "emails/s", "µs/email", "/outbox")
    print("{:>9} {:>6} {:>8} {:>9} {:>9} {:>8}".format(*header))
    rows: list[tuple[str, Callable[[], tuple[float, int]]]] = [("outbox", lambda: (baseline, 500))]
    rows += [(kind, lambda kind=kind: measure(kind, batch, args.repeats)) for kind in KINDS]  # type: ignore[misc]
    for kind, run in rows:
        seconds, size = run()
        per = seconds / len(batch)
        print(
            f"{kind:>9} {size:>6} {seconds:>8.3f} {len(batch) / seconds:>9,.0f} "
            f"{per * 1e6:>9.0f} {seconds / baseline:>8.2f}"
        )


if __name__ == "__main__":
    main()
