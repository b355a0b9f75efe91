"""The survey page and a nightly sync at the same time on one ledger (SQLite and
PostgreSQL): the page keeps answering while the sync writes, and both finish their work."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from surveysync.sync import RunReport, SyncRequest, run_sync
from tests.conftest import Store
from tests.web_kit import SENT_AT, survey_page

NEW_CUSTOMERS = 400


def test_the_page_keeps_answering_while_a_nightly_sync_writes(
    ledger_url: str, tmp_path: Path
) -> None:
    """Mid-run (held at its first chunk until the page has answered once, then running on),
    every page request is answered 200 and recorded, and the sync sends every survey."""
    store = Store(tmp_path, ledger_url)
    store.extra["pos"] = {"chunk_size": "100"}
    with survey_page(store) as page:
        night = SENT_AT + timedelta(days=1)
        for n in range(NEW_CUSTOMERS):
            store.customer(f"N{n:04d}")
            store.pos.sale(f"N{n:04d}", night - timedelta(hours=6, seconds=n))
        settings = store.settings()
        mid_run, page_answered = threading.Event(), threading.Event()
        reports: list[RunReport] = []

        def progress(event: str, amount: int) -> None:
            if event == "sales" and not mid_run.is_set():
                mid_run.set()
                assert page_answered.wait(timeout=120), "the page did not answer mid-run"

        def night_run() -> None:
            try:
                reports.append(run_sync(settings, SyncRequest(now=night), progress=progress))
            finally:
                mid_run.set()  # a run that failed early must not leave the test waiting

        sync = threading.Thread(target=night_run)
        sync.start()
        assert mid_run.wait(timeout=120)
        statuses: list[int] = []
        emails = list(page.emails.values())
        clicked, answering = emails[:4], emails[4]
        with page.client() as client:
            while sync.is_alive() or not statuses:
                email = clicked[len(statuses) % len(clicked)]
                statuses.append(client.get(email.scores[len(statuses) % 11]).status_code)
                page_answered.set()
                if len(statuses) >= 120:  # the four emails' bursts of visits are used up
                    break
            sync.join(timeout=600)
            answered = client.post(answering.scores[9], data={"score": "9"})
    assert set(statuses) == {200} and answered.status_code == 200
    assert reports and reports[0].status == "succeeded"
    assert reports[0].counts["sent"] == NEW_CUSTOMERS
    clicks = store.ledger_rows("SELECT COUNT(*) FROM clicks")[0][0]
    assert clicks == len(statuses) + 1
