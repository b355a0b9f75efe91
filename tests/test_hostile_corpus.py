"""The hostile corpus (tests/hostile_corpus.py) through real nightly runs: into the outbox,
and through the real SMTP server. Every message must parse back, with the strict policy, to
exactly the headers meant; every sale must be decided; nothing may raise."""

from __future__ import annotations

import email
import email.policy
import io
import re
from collections.abc import Iterator
from email.errors import NonASCIILocalPartDefect
from email.message import EmailMessage
from pathlib import Path

import pytest
import stamina

from surveysync.sync import RunReport
from tests.conftest import Store, local
from tests.hostile_corpus import Corpus, write_corpus
from tests.smtp_server import StartServer

NIGHT = local(2026, 11, 21, 23)
STRICT = email.policy.strict
HEADERS = sorted(
    [
        "From", "To", "Subject", "Date", "MIME-Version", "Content-Type", "Message-ID",
        "List-Unsubscribe", "List-Unsubscribe-Post", "Content-Language", "X-Surveysync-Request",
    ]
)  # fmt: skip


@pytest.fixture(autouse=True)
def retries_without_waiting() -> Iterator[None]:
    """stamina retries at once here, up to each test's configured attempts."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def corpus_store(root: Path) -> tuple[Store, Corpus]:
    root.mkdir(parents=True, exist_ok=True)
    store = Store(root)
    store.first_run_start = "2026-11-19T00:00:00"
    store.extra["pos"] = {"timestamps": '"utc"'}
    return store, write_corpus(root / "pos.sqlite")


def header_block(raw: bytes) -> str:
    return raw.decode("utf-8").split("\r\n\r\n", 1)[0]


def unfolded(block: str, name: str) -> str:
    """The value of header ``name`` as written, line breaks of folding removed."""
    [value] = re.findall(rf"^{name}: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", block, re.MULTILINE)
    return str(value).replace("\r\n", "")


def check_message(raw: bytes, corpus: Corpus) -> str:
    """Assert everything a mail client and a mail server rely on; returns the To address."""
    message: EmailMessage = email.message_from_string(raw.decode("utf-8"), policy=STRICT)  # type: ignore[assignment]
    assert sorted(message.keys()) == HEADERS
    [to] = message["To"].addresses
    tid = corpus.addresses[to.addr_spec]
    assert to.display_name == corpus.names[tid]
    # Byte for byte: the To header ends with the address the rules accepted.
    written = unfolded(header_block(raw), "To")
    assert written == to.addr_spec or written.endswith(f" <{to.addr_spec}>")
    for name in HEADERS:
        defects = message[name].defects
        if name == "To" and not to.addr_spec.isascii():  # RFC 6532, sent with SMTPUTF8
            defects = [d for d in defects if not isinstance(d, NonASCIILocalPartDefect)]
        assert not defects, (name, defects)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    return str(to.addr_spec)


def check_run(store: Store, corpus: Corpus, report: RunReport, logs: io.StringIO) -> None:
    assert report.status == "succeeded"
    assert store.decisions() == corpus.expected
    assert report.counts["unplaced_rows"] == corpus.unplaced
    assert report.counts["sent"] == corpus.requested
    assert "Traceback" not in logs.getvalue()
    unreadable = [line for line in logs.getvalue().splitlines() if "pos.row_unreadable" in line]
    assert len(unreadable) == sum(1 for v in corpus.expected.values() if v == "unreadable_row")
    assert all('"column": "' in line for line in unreadable)


def test_the_corpus_through_a_night_into_the_outbox(
    tmp_path: Path, quiet_logs: io.StringIO
) -> None:
    """Several hundred hostile rows: each sale decided, one well-formed message per request,
    each to exactly the address the rules accepted and to nobody else."""
    store, corpus = corpus_store(tmp_path / "outbox-store")
    assert len(corpus.expected) + corpus.unplaced >= 250

    report = store.run(NIGHT)

    check_run(store, corpus, report, quiet_logs)
    files = sorted(store.outbox.glob("*.eml"))
    sent_to = [check_message(path.read_bytes(), corpus) for path in files]
    assert sorted(sent_to) == sorted(corpus.addresses)


def test_the_corpus_through_a_night_over_smtp(
    tmp_path: Path, quiet_logs: io.StringIO, start_server: StartServer
) -> None:
    """The same corpus through the real SMTP server: one envelope recipient per message,
    the accepted address, and every message parses back as meant."""
    server = start_server()
    try:
        store, corpus = corpus_store(tmp_path / "smtp-store")
        store.extra["provider"] = {"kind": '"smtp"'}
        store.extra["provider.smtp"] = {
            "host": '"127.0.0.1"',
            "port": str(server.port),
            "security": '"none"',
            "timeout_seconds": "30",
        }
        report = store.run(NIGHT)
    finally:
        server.stop()

    check_run(store, corpus, report, quiet_logs)
    received = server.handler.received
    for message in received:
        [recipient] = message.rcpt_tos
        assert check_message(message.content, corpus) == recipient
    assert sorted(r for m in received for r in m.rcpt_tos) == sorted(corpus.addresses)
