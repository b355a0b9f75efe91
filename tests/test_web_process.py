"""`surveysync web` as a real process on 127.0.0.1, sharing its ledger with the nightly run:
links from a real outbox email followed, the form sent, unsubscribing both ways, and the
links that cannot be used."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from surveysync.render import LinkSigner
from tests.conftest import TZ, Store
from tests.web_kit import BROWSER, Email, emails_in

LAUNCH = "from surveysync.cli import main; main()"
LINK_SECRET = "a-link-secret-for-the-page-process"
FULL_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]{2,}@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@dataclass
class PageProcess:
    process: subprocess.Popen[str]
    url: str
    stderr: list[str]
    pumps: list[threading.Thread]

    def close(self) -> None:
        """Stop the process if it still runs, and let go of its pipes."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=60)
        for pump in self.pumps:
            pump.join(timeout=60)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def start_page(config: Path, cwd: Path) -> PageProcess:
    """Start `surveysync web --port 0` and wait for the address it prints."""
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "--config", str(config), "web", "--port", "0"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    lines: queue.Queue[str | None] = queue.Queue()
    stderr: list[str] = []

    def pump(stream: object, sink: queue.Queue[str | None] | list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.put(line) if isinstance(sink, queue.Queue) else sink.append(line)
        if isinstance(sink, queue.Queue):
            sink.put(None)

    pumps = [
        threading.Thread(target=pump, args=(process.stdout, lines), daemon=True),
        threading.Thread(target=pump, args=(process.stderr, stderr), daemon=True),
    ]
    for thread in pumps:
        thread.start()
    first = lines.get(timeout=120)
    assert first is not None, f"surveysync web ended: {''.join(stderr)}"
    url = first.strip().removeprefix("surveysync web: ")
    with httpx.Client(timeout=60) as client:  # the socket listens: this waits for readiness
        assert client.get(f"{url}/healthz").json()["status"] == "ok"
    return PageProcess(process, url, stderr, pumps)


@pytest.fixture
def page(store: Store, tmp_path: Path) -> Iterator[tuple[Store, PageProcess, dict[str, Email]]]:
    """The page process started first (on a new ledger), then last night's run, whose
    emails link to it (web.public_url)."""
    store.extra["email"] = {"link_secret": f'"{LINK_SECRET}"'}
    store.extra["logging"] = {"dir": f'"{(tmp_path / "logs").as_posix()}"'}
    yesterday = datetime.now(TZ) - timedelta(days=1)
    store.first_run_start = (yesterday - timedelta(days=2)).strftime("%Y-%m-%dT00:00:00")
    for customer, language in {"C1": "nl", "C2": "en", "C3": "es"}.items():
        store.customer(customer, language=language, first=f"Naam{customer}")
        store.pos.sale(customer, yesterday.replace(hour=11, tzinfo=None))
    store.settings()
    running = start_page(store.config_path, tmp_path)
    try:
        store.extra["web"] = {"public_url": f'"{running.url}"'}
        store.run(datetime.now(TZ) - timedelta(minutes=10))
        yield store, running, emails_in(store)
    finally:
        running.close()


def test_a_customer_answers_from_the_email_and_changes_the_score_once(
    page: tuple[Store, PageProcess, dict[str, Email]],
) -> None:
    """The score link of a real outbox email opens the page in Dutch; the sent form with a
    comment is the answer in the ledger, and sending again changes the score."""
    store, _, emails = page
    link = emails["C1"].scores[7]
    with httpx.Client(timeout=60, headers={"User-Agent": BROWSER}) as browser:
        shown = browser.get(link)
        assert shown.status_code == 200 and '<html lang="nl">' in shown.text
        assert "Test Cycles" in shown.text and "Centrum" in shown.text
        assert "@" not in shown.text  # never the customer's address
        sent = browser.post(link, data={"score": "7", "comment": "Snel geholpen, dank!"})
        assert sent.status_code == 200 and "Hartelijk dank!" in sent.text
        changed = browser.post(link, data={"score": "9", "comment": "Snel geholpen, dank!"})
        assert changed.status_code == 200
    rows = store.ledger_rows("SELECT status, score, comment FROM responses")
    assert rows == [("confirmed", 9, "Snel geholpen, dank!")]
    kinds = store.ledger_rows("SELECT kind, score, outcome FROM clicks ORDER BY at, id")
    assert kinds == [
        ("score", 7, "provisional"),
        ("form", 7, "confirmed"),
        ("form", 9, "confirmed"),
    ]


def test_unsubscribe_by_button_and_by_one_click_post(
    page: tuple[Store, PageProcess, dict[str, Email]],
) -> None:
    """GET then the button unsubscribes one person; a provider's RFC 8058 POST another;
    both hold in the ledger at once."""
    store, _, emails = page
    with httpx.Client(timeout=60, headers={"User-Agent": BROWSER}) as browser:
        asked = browser.get(emails["C2"].unsubscribe)
        assert asked.status_code == 200 and "Unsubscribe from survey emails?" in asked.text
        assert store.ledger_rows("SELECT COUNT(*) FROM suppressions") == [(0,)]
        action = re.search(r'<form method="post" action="([^"]+)"', asked.text)
        assert action is not None
        target = httpx.URL(emails["C2"].unsubscribe).join(action[1])
        done = browser.post(target, data={"confirm": "1"})
        assert done.status_code == 200 and "You are unsubscribed" in done.text
    with httpx.Client(timeout=60) as provider:
        one_click = provider.post(
            emails["C3"].unsubscribe,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert one_click.status_code == 200
    sources = store.ledger_rows("SELECT source FROM suppressions ORDER BY created_at")
    assert sorted(sources) == [("link",), ("one-click",)]


def test_tampered_expired_and_unknown_links_get_plain_pages(
    page: tuple[Store, PageProcess, dict[str, Email]],
) -> None:
    """404 for tampered and unknown links, 410 for expired ones, in the store's language."""
    _, running, emails = page
    signer = LinkSigner(LINK_SECRET, timedelta(days=60))
    long_ago = datetime.now(TZ) - timedelta(days=90)
    link = emails["C1"].scores[3]
    cases = {
        link[:-4] + "AAAA": 404,
        f"{running.url}/s/{signer.score_token('0' * 32, 3, datetime.now(TZ))}": 404,
        f"{running.url}/s/{signer.score_token(emails['C1'].request_id, 3, long_ago)}": 410,
        f"{running.url}/u/{signer.unsubscribe_token(emails['C1'].request_id, long_ago)}": 410,
    }
    with httpx.Client(timeout=60) as client:
        for url, status in cases.items():
            answer = client.get(url)
            assert answer.status_code == status, url
            assert '<html lang="en">' in answer.text and "Traceback" not in answer.text


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals; WinSW stops with Ctrl+C")
def test_the_page_stops_cleanly_and_logs_no_address(
    page: tuple[Store, PageProcess, dict[str, Email]], tmp_path: Path
) -> None:
    """SIGTERM ends `surveysync web` with exit code 0; no log line holds an address or the
    link secret."""
    _, running, emails = page
    with httpx.Client(timeout=60, headers={"User-Agent": BROWSER}) as browser:
        browser.post(emails["C2"].scores[2], data={"score": "2", "comment": "x@example.com"})
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=30) == 0
    running.close()
    logged = [
        line for path in (tmp_path / "logs").glob("*") for line in path.read_text().splitlines()
    ]
    assert any('"web.listening"' in line for line in logged)
    assert any('"web.stopped"' in line for line in logged)
    for line in logged + running.stderr:
        assert not FULL_ADDRESS.search(line), line
        assert LINK_SECRET not in line, line
