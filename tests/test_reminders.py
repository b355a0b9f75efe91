"""Reminders as customers get them: the review reminder a week after the survey and the
optional reminder to those who did not answer, sent by the nightly run (clock injected) on
SQLite and PostgreSQL ledgers, answered and unsubscribed from through the real survey page;
once each, never after an unsubscribe, never twice across a crash, and the address gone
from the ledger as soon as it is no longer needed."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from surveysync.config import ConfigError, load_settings
from surveysync.console import Output, print_report
from surveysync.ledger.schema import metadata
from surveysync.model import RequestStatus
from surveysync.providers import (
    OutboxProvider,
    OutgoingEmail,
    Provider,
    SendResult,
    WebhookProvider,
    create,
)
from surveysync.providers.base import Suppressed
from surveysync.reminders import ReminderComposer, cancel_impossible
from surveysync.sync import RunReport, SyncRequest, run_sync
from tests.conftest import Store
from tests.http_fake import FakeProvider, Recorded, Reply
from tests.provider_kit import Crash, CrashAfterSend, customers, use_provider
from tests.web_kit import SENT_AT, SurveyPage, survey_page

REVIEW_URL = "https://g.page/r/demo-cycles/review"
REVIEW = {"url": f'"{REVIEW_URL}"'}
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"


@pytest.fixture
def shared_store(tmp_path: Path, ledger_url: str) -> Store:
    """A store on each ledger the product supports (SQLite and PostgreSQL)."""
    return Store(tmp_path, ledger_url)


def night(n: int, hours: float = 0) -> datetime:
    """The nightly run ``n`` days after the surveys went out (23:00 store time)."""
    return SENT_AT + timedelta(days=n, hours=hours)


def run_night(store: Store, at: datetime, provider: Provider | None = None, **kw: Any) -> RunReport:
    """The nightly run at ``at``, its clock standing still there."""
    request = SyncRequest(now=at, clock=lambda: at, **kw)
    return run_sync(store.settings(), request, provider=provider)


def reminder_rows(store: Store) -> dict[str, tuple[Any, ...]]:
    """customer id -> (kind, status, error) of their reminder (one kind configured)."""
    rows = store.ledger_rows(
        "SELECT q.customer_id, r.kind, r.status, r.error FROM reminders r "
        "JOIN requests q ON q.id = r.request_id"
    )
    return {customer: tuple(rest) for customer, *rest in rows}


def reminder_emails(store: Store) -> list[tuple[str, EmailMessage]]:
    """(customer id, message) of every reminder in the outbox."""
    owners = dict(
        store.ledger_rows(
            "SELECT r.id, q.customer_id FROM reminders r JOIN requests q ON q.id = r.request_id"
        )
    )
    found = [(owners.get(str(m["X-Surveysync-Request"])), m) for m in store.messages()]
    return sorted((c, m) for c, m in found if c is not None)  # type: ignore[misc]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def ledger_dump(store: Store) -> str:
    """Every row of every table of the ledger, as text."""
    engine = create_engine(store.ledger_url)
    try:
        tables = inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert set(metadata.tables) <= set(tables)
    return "\n".join(str(row) for t in tables for row in store.ledger_rows(f"SELECT * FROM {t}"))


def seen(message: EmailMessage) -> tuple[str, ...]:
    """What the customer sees of an email, and its identity (the MIME boundary aside)."""
    headers = ("Message-ID", "Date", "Subject", "To", "List-Unsubscribe")
    return (*(str(message[h]) for h in headers), text_of(message), html_of(message))


def address(customer: str) -> str:
    return f"{customer.lower()}@example.com"


def answer(page: SurveyPage, customer: str, score: int) -> str:
    """The customer sends the survey form with ``score``; the token of the link used."""
    link = page.emails[customer].scores[score]
    with page.client() as client:
        assert client.post(link, data={"score": str(score)}).status_code == 200
    return link.rsplit("/", 1)[1]


@pytest.fixture
def reviewed(shared_store: Store) -> Iterator[SurveyPage]:
    """Five customers (en, nl, ko, es, sl) whose surveys went out with review reminders on;
    each answered 9 on the page an hour later."""
    with survey_page(shared_store, review=REVIEW) as page:
        for customer in page.emails:
            answer(page, customer, 9)
        yield page


# --- the review reminder ------------------------------------------------------------------------


def test_the_review_reminder_goes_out_on_day_seven_exactly_once(reviewed: SurveyPage) -> None:
    """Nothing on nights 1 to 6; on night 7 each customer gets one reminder in their own
    language; nothing more on a second run that night or on the nights after."""
    store = reviewed.store
    for n in range(1, 7):
        assert run_night(store, night(n)).counts["reminders_sent"] == 0
    assert reminder_emails(store) == []

    seventh = run_night(store, night(7))
    again = run_night(store, night(7, hours=0.5))
    later = [run_night(store, night(n)).counts["reminders_sent"] for n in (8, 9, 14)]

    assert seventh.counts["reminders_sent"] == 5
    assert again.counts["reminders_sent"] == 0 and later == [0, 0, 0]
    sent = reminder_emails(store)
    languages = {customer: str(m["Content-Language"]) for customer, m in sent}
    assert languages == {"C1": "en", "C2": "nl", "C3": "ko", "C4": "es", "C5": "sl"}
    subjects = {customer: str(m["Subject"]) for customer, m in sent}
    assert subjects["C1"] == "Kim, would you share your experience with Test Cycles?"
    assert subjects["C2"] == "Kim, wilt u uw ervaring met Test Cycles delen?"
    assert "리뷰" in subjects["C3"] and "reseña" in text_of(dict(sent)["C4"])
    assert [c for c, _ in sent] == ["C1", "C2", "C3", "C4", "C5"]
    assert {status for _, status, _ in reminder_rows(store).values()} == {"sent"}


def test_the_review_reminder_has_a_survey_emails_headers_and_working_links(
    reviewed: SurveyPage,
) -> None:
    """The reminder carries List-Unsubscribe (https and mailto) with one-click, its own
    Message-ID, Date and Content-Language; its review link goes through the page to the
    review site, and its unsubscribe link unsubscribes."""
    store = reviewed.store
    run_night(store, night(7))
    [(_, message)] = [(c, m) for c, m in reminder_emails(store) if c == "C1"]
    survey_ids = {str(m["Message-ID"]) for m in store.messages()} - {str(message["Message-ID"])}

    assert message["To"].addresses[0].addr_spec == "c1@example.com"
    assert re.fullmatch(
        r"<https?://127\.0\.0\.1:\d+/u/[^>]+>, <mailto:unsubscribe@demo-cycles\.example"
        r"\?subject=unsubscribe-[^>]+>",
        str(message["List-Unsubscribe"]),
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] not in survey_ids and message["Date"] is not None
    [review] = re.findall(r'href="([^"]+/r/[^"]+)"', html_of(message))
    assert review in text_of(message)
    with reviewed.client() as client:
        followed = client.get(review)
        unsubscribe = str(message["List-Unsubscribe"]).split(">")[0].lstrip("<")
        unsubscribed = client.post(unsubscribe, content=ONE_CLICK_BODY, headers=ONE_CLICK)
    assert followed.status_code == 303 and followed.headers["location"] == REVIEW_URL
    assert "redirected" in reviewed.outcomes("C1")
    assert unsubscribed.status_code == 200
    assert store.ledger_rows("SELECT source FROM suppressions") == [("one-click",)]


@pytest.mark.parametrize("how", ["link", "one-click", "provider"])
def test_no_review_reminder_after_an_unsubscribe(reviewed: SurveyPage, how: str) -> None:
    """Someone who unsubscribed since the survey, by the page's button, by their mailbox's
    RFC 8058 POST, or at the provider (its suppression list, pulled that night), gets no
    reminder; the others do, and the address is gone from the ledger."""
    store = reviewed.store
    unsubscribe = reviewed.emails["C2"].unsubscribe
    with reviewed.client() as client:
        if how == "link":
            assert client.post(unsubscribe, data={"confirm": "1"}).status_code == 200
        elif how == "one-click":
            done = client.post(unsubscribe, content=ONE_CLICK_BODY, headers=ONE_CLICK)
            assert done.status_code == 200
    provider = SuppressingOutbox(store.outbox, [address("C2")] if how == "provider" else [])

    report = run_night(store, night(7), provider=provider)

    assert report.counts["reminders_sent"] == 4 and report.counts["reminders_cancelled"] == 1
    assert "C2" not in {c for c, _ in reminder_emails(store)}
    assert reminder_rows(store)["C2"] == ("review", "cancelled", "unsubscribed")
    assert address("C2") not in ledger_dump(store)


def test_no_review_reminder_when_the_review_link_was_clicked(shared_store: Store) -> None:
    """A customer who followed the thank-you page's review link gets no reminder, and their
    address is forgotten the same night; the one who did not gets theirs."""
    with survey_page(shared_store, review=REVIEW, customers={"C1": "en", "C2": "nl"}) as page:
        token = answer(page, "C1", 10)
        answer(page, "C2", 10)
        with page.client() as client:
            assert client.get(f"{page.url}/r/{token}").status_code == 303
        assert run_night(shared_store, night(1)).counts["reminders_cancelled"] == 1
        assert address("C1") not in ledger_dump(shared_store)
        run_night(shared_store, night(7))
    assert [c for c, _ in reminder_emails(shared_store)] == ["C2"]
    assert reminder_rows(shared_store)["C1"] == ("review", "cancelled", "review_clicked")


def test_who_gets_a_review_reminder_follows_review_invite(store: Store) -> None:
    """With invite = "promoters", a 9 gets the reminder and an 8 does not (its address is
    forgotten at once); someone who never answered gets none, whoever is invited."""
    review = {**REVIEW, "invite": '"promoters"'}
    customers = {"C1": "en", "C2": "en", "C3": "en"}
    with survey_page(store, review=review, customers=customers) as page:
        answer(page, "C1", 9)
        answer(page, "C2", 8)
        run_night(store, night(1))
        assert address("C2") not in ledger_dump(store)
        run_night(store, night(7))
    assert [c for c, _ in reminder_emails(store)] == ["C1"]
    rows = reminder_rows(store)
    assert rows["C2"] == ("review", "cancelled", "not_invited")
    assert rows["C3"] == ("review", "cancelled", "not_answered")
    assert address("C3") not in ledger_dump(store)


def test_an_unsubscribe_forgets_the_address_at_the_pages_next_tick(reviewed: SurveyPage) -> None:
    """``cancel_impossible`` (for the survey page's tick) cancels the reminder of someone who
    just unsubscribed and forgets their address, sending nothing."""
    store = reviewed.store
    with reviewed.client() as client:
        client.post(reviewed.emails["C3"].unsubscribe, data={"confirm": "1"})

    assert cancel_impossible(reviewed.ledger, store.settings(), reviewed.clock()) == 1

    assert address("C3") not in ledger_dump(store)
    assert reminder_rows(store)["C3"] == ("review", "cancelled", "unsubscribed")
    assert reminder_emails(store) == []


def test_a_newer_survey_drops_the_older_ones_reminder(store: Store) -> None:
    """With no cooldown, a customer asked again three days later gets the newer survey's
    reminder in its time, never the older one's as well."""
    store.extra["rules"] = {"cooldown_months": "0"}
    with survey_page(store, review=REVIEW, customers={"C1": "en"}) as page:
        answer(page, "C1", 9)
        store.pos.sale("C1", night(3) - timedelta(hours=8))
        assert run_night(store, night(3)).counts["sent"] == 1
        token = page.site.signer.score_token(
            store.ledger_rows("SELECT id FROM requests ORDER BY settled_at DESC")[0][0],
            10,
            page.clock(),
        )
        page.clock.now = night(3, hours=1)
        with page.client() as client:
            client.post(f"{page.url}/s/{token}", data={"score": "10"})
        for n in range(4, 11):
            run_night(store, night(n))
    rows = store.ledger_rows(
        "SELECT r.status, r.error FROM reminders r JOIN requests q ON q.id = r.request_id "
        "ORDER BY q.settled_at"
    )
    assert rows == [("cancelled", "superseded"), ("sent", None)]
    assert len(reminder_emails(store)) == 1


def test_a_reminder_is_contact_for_nobodys_cooldown(reviewed: SurveyPage) -> None:
    """Sending the reminders leaves every cooldown as the surveys left it."""
    store = reviewed.store
    before = store.ledger_rows("SELECT * FROM cooldowns ORDER BY person_key")
    assert run_night(store, night(7)).counts["reminders_sent"] == 5
    assert store.ledger_rows("SELECT * FROM cooldowns ORDER BY person_key") == before


def test_the_address_is_gone_once_every_reminder_is_settled(reviewed: SurveyPage) -> None:
    """After night 7 no table of the ledger holds any customer's address; before it, only
    the reminders do."""
    store = reviewed.store
    kept = store.ledger_rows("SELECT email FROM reminders ORDER BY email")
    assert kept == [(address(c),) for c in ("C1", "C2", "C3", "C4", "C5")]
    assert store.ledger_rows("SELECT COUNT(*) FROM requests WHERE email IS NOT NULL") == [(0,)]
    run_night(store, night(7))
    dump = ledger_dump(store)
    assert not [c for c in ("C1", "C2", "C3", "C4", "C5") if address(c) in dump]


def test_a_dry_run_sends_no_reminder(reviewed: SurveyPage) -> None:
    """A dry run on night 7 sends nothing and leaves the reminders waiting."""
    store = reviewed.store
    assert run_night(store, night(7), dry_run=True).counts["reminders_sent"] == 0
    assert reminder_emails(store) == []
    assert {s for _, s, _ in reminder_rows(store).values()} == {"pending"}


# --- only after a survey that went out ----------------------------------------------------------


class Refusing(OutboxProvider):
    """The outbox, refusing one address and losing the answer for another."""

    def __init__(self, folder: Path, refuse: str, lose: str) -> None:
        super().__init__(folder)
        self.refuse, self.lose = refuse, lose

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        results: list[SendResult] = []
        for email in batch:
            to = email.message.recipient.addr_spec
            if to == self.refuse:
                results.append(SendResult(email.request_id, RequestStatus.REJECTED, error="550"))
            elif to == self.lose:
                results.append(SendResult(email.request_id, RequestStatus.IN_DOUBT, error="lost"))
            else:
                results += super().send([email])
        return results


def test_no_reminder_follows_a_survey_that_was_not_sent(shared_store: Store) -> None:
    """A survey refused by the provider or held in doubt plans no reminder and gets none;
    the sent one gets its reminder to non-answerers."""
    store = shared_store
    store.extra["reminders"] = {"no_answer_days": "3"}
    for customer in ("C1", "C2", "C3"):
        store.customer(customer)
        store.pos.sale(customer, SENT_AT - timedelta(hours=8))
    provider = Refusing(store.outbox, refuse=address("C1"), lose=address("C2"))
    run_night(store, SENT_AT, provider=provider)
    statuses = dict(store.ledger_rows("SELECT customer_id, status FROM requests"))
    assert statuses == {"C1": "rejected", "C2": "in_doubt", "C3": "sent"}

    for n in range(1, 5):
        run_night(store, night(n))

    assert [c for c, _ in reminder_emails(store)] == ["C3"]
    assert list(reminder_rows(store)) == ["C3"]


# --- never twice across a crash -----------------------------------------------------------------


class CrashBeforeSend:
    """A power cut after the reminders were marked sending, before the provider was called."""

    def __init__(self, real: Provider) -> None:
        self.real = real
        self.name = real.name
        self.max_batch_size = real.max_batch_size
        self.honours_idempotency_key = real.honours_idempotency_key
        self.renders_templates = real.renders_templates

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        raise Crash

    def check(self) -> str:
        return self.real.check()

    def close(self) -> None:
        self.real.close()


class NoKeys(OutboxProvider):
    """The outbox as a provider without idempotency keys (SMTP, SendGrid, Postmark...)."""

    honours_idempotency_key = False
    renders_templates = False


@pytest.mark.parametrize("crash", [CrashBeforeSend, CrashAfterSend])
@pytest.mark.parametrize("keys", [True, False])
def test_a_crash_between_claim_and_settle_never_sends_a_reminder_twice(
    reviewed: SurveyPage, crash: type[Any], keys: bool
) -> None:
    """A crash after the reminders were claimed (before or after the provider took them):
    the next night repeats the call as it was where the provider honours idempotency keys
    (one email each, the same email again), and otherwise holds them in doubt (never resent, the
    address forgotten)."""
    store = reviewed.store
    provider = OutboxProvider(store.outbox) if keys else NoKeys(store.outbox)
    with pytest.raises(Crash):
        run_night(store, night(7), provider=crash(provider))
    assert {s for _, s, _ in reminder_rows(store).values()} == {"sending"}
    first = {c: seen(m) for c, m in reminder_emails(store)}
    reviewed.clock.now = night(7, hours=2)
    answer(reviewed, "C1", 10)  # a changed answer changes nothing in the repeated email

    report = run_night(store, night(8), provider=provider)
    run_night(store, night(9), provider=provider)

    after = {c: seen(m) for c, m in reminder_emails(store)}
    if keys:
        assert report.counts["reminders_sent"] == 5
        assert len(after) == 5 and all(after[c] == first[c] for c in first)
        assert {s for _, s, _ in reminder_rows(store).values()} == {"sent"}
    else:
        assert report.counts["reminders_in_doubt"] == 5 and after == first
        assert {s for _, s, _ in reminder_rows(store).values()} == {"in_doubt"}
    assert len(store.messages()) == 5 + len(after)  # the surveys, and each reminder once
    assert store.ledger_rows("SELECT COUNT(*) FROM reminders WHERE email IS NOT NULL") == [(0,)]


def test_after_a_crash_the_webhook_gets_the_same_call_under_the_same_key(store: Store) -> None:
    """With the webhook (idempotency keys), the reminders' call a crash left unanswered is
    made again under its key and with the same body; the endpoint handles it once."""
    fake = FakeProvider({})
    fake.routes[("POST", "/hooks")] = _taking(fake)
    fake.start()
    try:
        hook = {"url": f'"{fake.url}/hooks"', "secret": '"s3cret"'}
        use_provider(store, "webhook", 10, hook, timeout_seconds="30")
        store.extra["reminders"] = {"no_answer_days": "2"}
        customers(store, 3)
        sent_at = datetime(2026, 11, 20, 23, tzinfo=SENT_AT.tzinfo)
        run_night(store, sent_at)
        webhook = create(store.settings().provider)
        assert isinstance(webhook, WebhookProvider)
        with pytest.raises(Crash):
            run_night(store, sent_at + timedelta(days=2), provider=CrashAfterSend(webhook))
        run_night(store, sent_at + timedelta(days=3), provider=webhook)
        webhook.close()
    finally:
        fake.stop()
    reminders = {r for (r,) in store.ledger_rows("SELECT id FROM reminders")}
    calls = [r for r in fake.requests if r.json()["messages"][0]["request_id"] in reminders]
    assert len(calls) == 2 and calls[0].body == calls[1].body
    assert calls[0].headers["idempotency-key"] == calls[1].headers["idempotency-key"]
    assert {k: n for k, n in fake.delivered.items() if k in reminders} == dict.fromkeys(
        reminders, 1
    )
    assert {s for _, s, _ in reminder_rows(store).values()} == {"sent"}


def _taking(fake: FakeProvider) -> Any:
    def route(request: Recorded) -> Reply:
        messages = request.json()["messages"]
        fake.deliver(*(m["request_id"] for m in messages))
        return Reply(200, {"results": [{"request_id": m["request_id"], "status": "sent"}
                                       for m in messages]})  # fmt: skip

    return route


# --- the reminder to people who did not answer --------------------------------------------------


def test_the_no_answer_reminder_goes_only_to_those_who_did_not_answer(shared_store: Store) -> None:
    """With no_answer_days = 3: the one who answered gets nothing; the one whose email only
    a link scanner visited, and the one who did nothing, get the survey once more, once;
    a score clicked in the reminder answers the original survey."""
    store = shared_store
    store.extra["reminders"] = {"no_answer_days": "3"}
    with survey_page(store, customers={"C1": "en", "C2": "nl", "C3": "es"}) as page:
        answer(page, "C1", 7)
        with page.client() as client:
            for score in (0, 10, 5):  # a scanner's pass, a second apart
                client.get(page.emails["C2"].scores[score])
                page.clock.advance(seconds=1)
        assert run_night(store, night(1)).counts["reminders_cancelled"] == 1
        assert address("C1") not in ledger_dump(store)
        assert run_night(store, night(2)).counts["reminders_sent"] == 0
        assert run_night(store, night(3)).counts["reminders_sent"] == 2
        assert run_night(store, night(4)).counts["reminders_sent"] == 0

        sent = dict(reminder_emails(store))
        assert sorted(sent) == ["C2", "C3"]
        assert sent["C3"]["Content-Language"] == "es"
        assert "recordatorio" in str(sent["C3"]["Subject"])
        links = re.findall(r'href="([^"]+/s/[^"]+)"', html_of(sent["C3"]))
        assert len(links) == 11
        page.clock.now = night(3, hours=1)
        with page.client() as client:
            assert client.post(links[8], data={"score": "8"}).status_code == 200
        assert page.answer("C3")["score"] == 8  # type: ignore[index]
    assert reminder_rows(store)["C1"] == ("no_answer", "cancelled", "answered")
    assert run_night(store, night(5)).counts["reminders_sent"] == 0
    assert len(reminder_emails(store)) == 2


def test_a_reminder_of_the_survey_is_off_by_default(reviewed: SurveyPage) -> None:
    """Without reminders.no_answer_days nobody is reminded of the survey itself; review
    reminders need review.url."""
    store = reviewed.store
    kinds = {kind for kind, _, _ in reminder_rows(store).values()}
    assert kinds == {"review"}
    settings = load_settings(store.write_config())
    assert settings.reminders.no_answer_days == 0 and settings.review.reminder_days == 7


# --- templates, settings and the summary --------------------------------------------------------


def test_a_broken_reminder_template_fails_check_but_not_the_night(
    reviewed: SurveyPage, tmp_path: Path
) -> None:
    """An operator's reminder template without the review link makes `surveysync check`
    fail naming it; the night still sends the reminder in the built-in wording."""
    store = reviewed.store
    folder = tmp_path / "templates" / "reminder_review" / "en"
    folder.mkdir(parents=True)
    (folder / "body.html").write_text("<p>{{ unsubscribe_url }}</p>", "utf-8")
    (folder / "subject.txt").write_text("A word from {{ store_name }}", "utf-8")
    store.extra["email"] = {"templates_dir": f'"{(tmp_path / "templates").as_posix()}"'}

    checked = store.cli("check")

    assert checked.exit_code == 1
    assert re.search(
        r"^templates failed\s+reminder_review/en/body.html .*the review link is missing",
        checked.output,
        re.M,
    )
    run_night(store, night(7))
    [message] = [m for c, m in reminder_emails(store) if c == "C1"]
    assert message["Subject"] == "A word from Test Cycles"
    assert "Write a review" in html_of(message)


def test_every_built_in_locale_has_both_reminders(store: Store) -> None:
    """The five built-in languages each have a review reminder and a survey reminder, every
    one rendering with its links."""
    composer = ReminderComposer(store.settings().store, store.settings().email)
    assert composer.problems == []
    for templates in composer.templates.values():
        assert templates.locales == {"en", "nl", "es", "ko", "sl"}


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("review", {"reminder_days": "-1"}, "review.reminder_days"),
        ("reminders", {"no_answer_days": "61"}, "reminders.no_answer_days"),
        ("reminders", {"days": "3"}, "reminders.days"),
    ],
)
def test_a_bad_reminder_setting_names_the_key(
    store: Store, section: str, values: dict[str, str], key: str
) -> None:
    """An unusable reminder setting stops with a message naming it."""
    store.extra[section] = values
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_settings(store.write_config())


def test_the_run_summary_counts_the_reminders(
    reviewed: SurveyPage, capsys: pytest.CaptureFixture[str]
) -> None:
    """The night's summary says how many reminders went out and how many were dropped."""
    store = reviewed.store
    with reviewed.client() as client:
        client.post(reviewed.emails["C5"].unsubscribe, data={"confirm": "1"})
    report = run_night(store, night(7))
    print_report(Output(), report, store.settings())
    printed = capsys.readouterr().out
    assert re.search(r"^reminders sent\t4\t", printed, re.M)
    assert re.search(r"^reminders cancelled\t1\t", printed, re.M)


class SuppressingOutbox(OutboxProvider):
    """The outbox with a suppression list, as the HTTP providers have one: the addresses
    the provider refuses to mail, which the nightly run pulls into the ledger."""

    def __init__(self, folder: Path, suppressed: list[str]) -> None:
        super().__init__(folder)
        self.suppressed = suppressed

    def fetch_suppressions(self, cursor: str | None) -> tuple[list[Suppressed], str | None]:
        return [Suppressed(e, "unsubscribed") for e in self.suppressed], None
