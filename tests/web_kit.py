"""The survey page under test: a store whose survey emails went out, and `surveysync web`'s
application on a real uvicorn server in a thread on 127.0.0.1, with an injected clock."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from surveysync.ledger import Ledger, open_ledger
from surveysync.web import Hooks, SurveySite, create_app
from surveysync.web.server import bind, listening_url
from tests.conftest import Store, local

# When the night's run sent the emails; the page's clock starts an hour later.
SENT_AT = local(2026, 3, 10, 23, 0)
BROWSER = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
_HREF = re.compile(r'href="([^"]+)"')


class Clock:
    """The page's clock: stands still until a test moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Email:
    """One customer's survey email, as the outbox holds it."""

    request_id: str
    locale: str
    scores: list[str]  # the eleven score links, 0 to 10
    unsubscribe: str
    html: str


@dataclass
class SurveyPage:
    store: Store
    ledger: Ledger
    clock: Clock
    url: str
    emails: dict[str, Email]  # by customer id
    app: Starlette

    def client(self, user_agent: str = BROWSER) -> httpx.Client:
        return httpx.Client(timeout=60, headers={"User-Agent": user_agent})

    @property
    def site(self) -> SurveySite:
        site: SurveySite = self.app.state.site
        return site

    def answer(self, customer: str) -> dict[str, Any] | None:
        rows = self.store.ledger_rows(
            "SELECT status, score, comment, answered_at FROM responses "
            f"WHERE request_id = '{self.emails[customer].request_id}'"
        )
        if not rows:
            return None
        status, score, comment, answered_at = rows[0]
        return {"status": status, "score": score, "comment": comment, "answered_at": answered_at}

    def outcomes(self, customer: str) -> list[str]:
        rows = self.store.ledger_rows(
            "SELECT outcome FROM clicks "
            f"WHERE request_id = '{self.emails[customer].request_id}' ORDER BY at, id"
        )
        return [outcome for (outcome,) in rows]


def emails_in(store: Store) -> dict[str, Email]:
    """Each customer's email in the outbox, by the customer id its request was made for."""
    owners = dict(store.ledger_rows("SELECT id, customer_id FROM requests"))
    found = {}
    for message in store.messages():
        found[owners[message["X-Surveysync-Request"]]] = email_of(message)
    return found


def email_of(message: EmailMessage) -> Email:
    html_part = message.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    links = _HREF.findall(html)
    scores = [link for link in links if "/s/" in link]
    [unsubscribe] = [link for link in links if "/u/" in link]
    assert len(scores) == 11
    return Email(
        message["X-Surveysync-Request"], message["Content-Language"], scores, unsubscribe, html
    )


CUSTOMERS = {"C1": "en", "C2": "nl", "C3": "ko", "C4": "es", "C5": "sl"}


@contextmanager
def survey_page(
    store: Store,
    *,
    hooks: Hooks | None = None,
    customers: dict[str, str] = CUSTOMERS,
    web: dict[str, str] | None = None,
    review: dict[str, str] | None = None,
) -> Iterator[SurveyPage]:
    """Customers who bought on SENT_AT's day, their emails sent (outbox) with links to a page
    served on 127.0.0.1, and that page running with a clock an hour after the sending."""
    sock = bind("127.0.0.1", 0)
    url = listening_url(sock)
    store.extra["web"] = {"public_url": f'"{url}"', **(web or {})}
    if review:
        store.extra["review"] = review
    for customer, language in customers.items():
        store.customer(customer, language=language)
        store.pos.sale(customer, SENT_AT - timedelta(hours=8))
    store.run(SENT_AT)
    settings = store.settings()
    ledger = open_ledger(settings)
    clock = Clock(SENT_AT + timedelta(hours=1))
    app = create_app(settings, ledger, clock, hooks, sweep_seconds=None)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, proxy_headers=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()  # the socket listens already: requests wait in its backlog until ready
    try:
        yield SurveyPage(store, ledger, clock, url, emails_in(store), app)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        ledger.close()
        sock.close()
