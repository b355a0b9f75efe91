"""How many survey emails a second the outbox provider writes (issue 15, item 4).

Not a test: run it by hand (see benchmarks/README.md). It renders N survey emails once (the
demo's mix of languages, names in five scripts, some addresses with a non-ASCII local part
or an internationalized domain), then, per repetition and interleaved so that a busy machine
slows each alike:

- ``outbox``: ``OutboxProvider.send`` in its batch size into a fresh folder: the message
  bytes (``render.mime``), a temporary file, a rename;
- ``before``: the baseline, the outbox as it was before ``render.mime``: the email
  package's builder (``EmailMessage``, tests/mime_reference.py), ``tempfile.mkstemp``, a
  buffered file, a rename;
- ``bytes`` and ``bytes (email package)``: building the message bytes alone, no file;
- ``render``: ``Renderer.render`` for the same requests (what the sync does before a
  provider is called), to put the provider's share in proportion.

It prints the median of the repetitions: emails a second, microseconds an email, and the
ratio to the baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.mime_reference

from tests.mime_reference import stdlib_bytes

from surveysync.config import EmailSettings, StoreSettings
from surveysync.providers import OutgoingEmail
from surveysync.providers.outbox import OutboxProvider
from surveysync.render import Renderer, SurveyEmail

NOW = datetime(2026, 6, 1, 21, 0, tzinfo=UTC)
NAMES = [("Emma", "de Vries"), ("Lucía", "Núñez"), ("민준", "김"), ("Žiga", "Kovačič"), ("Ann", "")]
LANGUAGES = ["en", "nl", "es", "ko", "sl"]
DOMAINS = ["example.com", "bücher.example", "example.kr"]


def write_as_before(root: Path, batch: list[SurveyEmail]) -> None:
    """What ``OutboxProvider._write`` did for each email before ``render.mime``."""
    folder = Path(tempfile.mkdtemp(dir=root))
    for message in batch:
        data = stdlib_bytes(message)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, folder / f"{message.request_id}.eml")


@dataclasses.dataclass
class Case:
    name: str
    run: Callable[[], None]


def requests(count: int) -> list[tuple[str, str, dict[str, str]]]:
    made = []
    for n in range(count):
        first, last = NAMES[n % len(NAMES)]
        local = f"jürgen.{n}" if n % 20 == 0 else f"customer.{n}"
        address = f"{local}@{DOMAINS[n % len(DOMAINS)]}"
        payload = {"first_name": first, "last_name": last, "language": LANGUAGES[n % 5]}
        made.append((f"{n:032x}", address, payload))
    return made


def outgoing(emails: list[SurveyEmail]) -> list[OutgoingEmail]:
    return [OutgoingEmail(e.request_id, e.request_id, e, "bench") for e in emails]


def write_all(root: Path, batch: list[OutgoingEmail]) -> None:
    provider = OutboxProvider(Path(tempfile.mkdtemp(dir=root)))
    for start in range(0, len(batch), provider.max_batch_size):
        provider.send(batch[start : start + provider.max_batch_size])


def cases(root: Path, count: int) -> list[Case]:
    renderer = Renderer(StoreSettings(name="Demo Cycles"), EmailSettings())
    todo = requests(count)
    emails = [renderer.render(rid, address, payload, NOW) for rid, address, payload in todo]
    fast = outgoing(emails)
    return [
        Case("before", lambda: write_as_before(root, emails)),
        Case("outbox", lambda: write_all(root, fast)),
        Case("bytes (email package)", lambda: [stdlib_bytes(e) for e in emails] and None),
        Case("bytes", lambda: [e.to_bytes() for e in emails] and None),
        Case("render", lambda: [renderer.render(r, a, p, NOW) for r, a, p in todo] and None),
    ]


def bench(count: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        found = cases(Path(tmp), count)
        seconds: dict[str, list[float]] = {c.name: [] for c in found}
        for _ in range(repeats):
            for case in found:
                started = time.perf_counter()
                case.run()
                seconds[case.name].append(time.perf_counter() - started)
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    print(f"{count:,} emails, medians of {repeats}")
    print(f"{'':<22} {'emails/s':>9} {'µs/email':>9} {'/ baseline':>10}")
    for name, median in medians.items():
        baseline = medians["before" if "bytes" not in name else "bytes (email package)"]
        ratio = "" if name == "render" else f"{baseline / median:>10.2f}"
        print(f"{name:<22} {count / median:>9,.0f} {median / count * 1e6:>9,.0f} {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bench(args.emails, args.repeats)


if __name__ == "__main__":
    main()
