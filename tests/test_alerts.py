"""Detractor alerts and the daily digest as a store manager gets them: through the real SMTP
server (aiosmtpd on 127.0.0.1) with the ``smtp`` provider, or as ``.eml`` files in the outbox;
once each, whatever the provider does in between and whoever crashes."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from surveysync.alerts import IN_FLIGHT_LIMIT, AlertCounts, retry_pause, send_due
from surveysync.config import ConfigError, Settings, load_settings
from surveysync.ledger import Ledger, open_ledger
from surveysync.model import ResponseStatus
from surveysync.providers import (
    OutboxProvider,
    OutgoingEmail,
    Provider,
    SendResult,
    SmtpProvider,
    create,
)
from surveysync.sync import SyncRequest, run_sync
from tests.answer_kit import AnswerBook
from tests.conftest import Store, local
from tests.provider_kit import Crash, CrashAfterSend
from tests.smtp_server import Handler, StartServer

pytestmark = pytest.mark.usefixtures("retries_without_waiting")

MANAGER = "manager@demo-cycles.example"
NOW = local(2026, 3, 14, 15)
ANSWERED = NOW - timedelta(hours=1)  # about a sale on 12 March
COMMENT = "De remmen piepen nog steeds na de reparatie.\nNiemand belde terug."

def configure(
    store: Store,
    *,
    smtp_port: int | None = None,
    to: tuple[str, ...] = (MANAGER,),
    mode: str = "each",
    digest: str = "off",
    locale: str = "en",
) -> Settings:
    """The store's settings with alerts to ``to``, through SMTP on ``smtp_port`` (else the
    outbox); the SMTP provider tries each message twice before giving up for now."""
    store.extra["store"] = {"default_locale": f'"{locale}"'}
    store.extra["alerts"] = {
        "to": "[" + ", ".join(f'"{a}"' for a in to) + "]",
        "mode": f'"{mode}"',
        "digest": f'"{digest}"',
    }
    if smtp_port is not None:
        store.extra["provider"] = {"kind": '"smtp"'}
        store.extra["provider.smtp"] = {
            "host": '"127.0.0.1"',
            "port": str(smtp_port),
            "security": '"none"',
            "timeout_seconds": "10",
            "retry_attempts": "2",
        }
    return store.settings()


@contextmanager
def ledger_of(settings: Settings) -> Iterator[Ledger]:
    ledger = open_ledger(settings)
    try:
        yield ledger
    finally:
        ledger.close()


def answers(settings: Settings) -> AnswerBook:
    """An answer book on its own ledger connection (closed by the test's end)."""
    return AnswerBook(open_ledger(settings))


def deliver(
    settings: Settings, now: datetime, *, digests: bool = False, provider: Provider | None = None
) -> AlertCounts:
    """One ``send_due`` as a process would make it: its own ledger and provider."""
    own = provider is None
    provider = provider or create(settings.provider)
    try:
        with ledger_of(settings) as ledger:
            return send_due(ledger, provider, settings, now, digests=digests)
    finally:
        if own:
            provider.close()


def alert_rows(store: Store) -> list[tuple[Any, ...]]:
    return store.ledger_rows("SELECT kind, status, attempts FROM alerts ORDER BY created_at")


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML parts, with the wire's CRLF line ends read as newlines."""
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return tuple(part.get_content().replace("\r\n", "\n") for part in (text, html))  # type: ignore[return-value]


def answer_three(settings: Settings, **request: Any) -> str:
    book = answers(settings)
    try:
        return book.answered(3, ANSWERED, comment=COMMENT, **request)
    finally:
        book.ledger.close()


# --- one alert per detractor ------------------------------------------------------------------


def test_a_three_with_a_comment_sends_the_manager_one_alert(
    store: Store, start_server: StartServer
) -> None:
    """A 3 with a comment reaches the manager once, through SMTP, with everything needed to
    find the customer in the POS, and no unsubscribe headers."""
    server = start_server()
    settings = configure(store, smtp_port=server.port)
    answer_three(settings)

    counts = deliver(settings, NOW)

    assert (counts.queued, counts.sent) == (1, 1)
    [received] = server.handler.received
    assert received.rcpt_tos == [MANAGER]
    message = received.parsed()
    assert message["Subject"] == "Unhappy customer at Centrum: score 3"
    assert "List-Unsubscribe" not in message and message["Content-Language"] == "en"
    text, html = parts(message)
    assert text.startswith("Kim gave Test Cycles a score of 3 out of 10.")
    for fact in (
        COMMENT,
        "Score: 3/10",
        "First name: Kim",
        "Customer ID: C0042",
        "POS transaction: T-1001",
        "Sale date: March 12, 2026",
        "Location: Centrum",
        "Technician: Anouk",
    ):
        assert fact in text
    assert "C0042" in html and "Niemand belde terug." in html

    assert deliver(settings, NOW + timedelta(hours=1)).sent == 0
    assert len(server.handler.received) == 1
    assert alert_rows(store) == [("detractor", "sent", 1)]


def test_the_provider_down_then_back_delivers_the_alert_once(
    store: Store, start_server: StartServer
) -> None:
    """With no mail server listening the alert waits, counted and logged; it is not tried
    again before its pause; once the server is back it arrives, once."""
    port = start_server.reserve()
    settings = configure(store, smtp_port=port)
    answer_three(settings)

    with capture_logs() as events:
        down = deliver(settings, NOW)

    assert (down.sent, down.waiting) == (0, 1)
    [deferred] = [e for e in events if e["event"] == "alert.deferred"]
    assert deferred["attempts"] == 1 and deferred["log_level"] == "warning"
    assert alert_rows(store) == [("detractor", "pending", 1)]

    server = start_server(port=port)
    assert deliver(settings, NOW + timedelta(seconds=30)).waiting == 1  # within its pause
    assert server.handler.received == []
    assert deliver(settings, NOW + timedelta(minutes=2)).sent == 1
    assert deliver(settings, NOW + timedelta(hours=1)).sent == 0
    assert server.handler.recipients() == [MANAGER]
    assert alert_rows(store) == [("detractor", "sent", 2)]


def test_a_server_that_answers_try_later_gets_the_alert_once_it_takes_it(
    store: Store, start_server: StartServer
) -> None:
    """A server answering 451 (greylisting) to both tries leaves the alert waiting; the next
    try after the pause delivers it once."""
    server = start_server(Handler(busy={MANAGER: 2}))
    settings = configure(store, smtp_port=server.port)
    answer_three(settings)

    assert deliver(settings, NOW).waiting == 1
    assert server.handler.received == []
    assert deliver(settings, NOW + timedelta(minutes=5)).sent == 1
    assert deliver(settings, NOW + timedelta(minutes=10)).sent == 0
    assert server.handler.recipients() == [MANAGER]


def test_a_refused_manager_address_is_logged_loudly_and_not_retried(
    store: Store, start_server: StartServer, quiet_logs: io.StringIO
) -> None:
    """A mail server that refuses the manager's address rejects the alert, logs an error
    naming the masked address, and is not asked again."""
    refusal = f"550 5.1.1 <{MANAGER}>: Recipient address rejected"
    server = start_server(Handler(refuse={MANAGER: refusal}))
    settings = configure(store, smtp_port=server.port)
    answer_three(settings)

    with capture_logs() as events:
        counts = deliver(settings, NOW)
    deliver(settings, NOW + timedelta(hours=2))  # logged for real this time

    assert counts.rejected == 1
    [rejected] = [e for e in events if e["event"] == "alert.rejected"]
    assert rejected["log_level"] == "error" and rejected["to"] == "m***@demo-cycles.example"
    assert server.handler.mail_commands == 1
    assert alert_rows(store) == [("detractor", "rejected", 1)]
    assert MANAGER not in quiet_logs.getvalue()


def test_an_alert_one_address_got_is_sent_and_the_refused_address_logged(
    store: Store, start_server: StartServer
) -> None:
    """When one of two addresses is refused, the other still gets the alert, it is not
    sent again, and the refusal is logged as an error."""
    owner = "owner@demo-cycles.example"
    server = start_server(Handler(refuse={owner: "550 5.1.1 no such user"}))
    settings = configure(store, smtp_port=server.port, to=(MANAGER, owner))
    answer_three(settings)

    with capture_logs() as events:
        counts = deliver(settings, NOW)
    deliver(settings, NOW + timedelta(hours=1))

    assert (counts.sent, counts.rejected) == (1, 0)
    assert server.handler.recipients() == [MANAGER]
    assert [e["to"] for e in events if e["event"] == "alert.rejected"] == [
        "o***@demo-cycles.example"
    ]
    assert alert_rows(store) == [("detractor", "sent", 1)]


def test_the_pause_between_tries_doubles_up_to_an_hour() -> None:
    """An alert the provider could not take waits 1, 2, 4 ... minutes, never over an hour."""
    pauses = [retry_pause(attempts) for attempts in (1, 2, 3, 7, 8, 50)]
    assert pauses == [timedelta(minutes=m) for m in (1, 2, 4, 60, 60, 60)]


def test_an_alert_goes_to_every_address_listed(store: Store, start_server: StartServer) -> None:
    """With two addresses in [alerts] to, each gets the alert, once."""
    server = start_server()
    settings = configure(store, smtp_port=server.port, to=(MANAGER, "owner@demo-cycles.example"))
    answer_three(settings)

    assert deliver(settings, NOW).sent == 1
    assert server.handler.recipients() == [MANAGER, "owner@demo-cycles.example"]
    assert len({m.parsed()["Message-ID"] for m in server.handler.received}) == 2


class OneAtATime(OutboxProvider):
    """An outbox that takes one email per call, like Mailgun, and remembers each call."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, max_batch_size=1)
        self.calls: list[list[str]] = []

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        assert len(batch) <= self.max_batch_size
        self.calls.append([email.batch_key for email in batch])
        return super().send(batch)


def test_a_provider_that_takes_one_email_per_call_gets_one_call_per_address(
    store: Store,
) -> None:
    """The alert to two addresses goes out in two calls, each under its own key."""
    settings = configure(store, to=(MANAGER, "owner@demo-cycles.example"))
    answer_three(settings)
    provider = OneAtATime(store.outbox)

    assert deliver(settings, NOW, provider=provider).sent == 1

    assert len(store.messages()) == 2
    [[first], [second]] = provider.calls
    assert first != second


def test_no_alert_for_passives_promoters_scanners_or_unsettled_clicks(store: Store) -> None:
    """A 7, a 10, a scanner's pass over a 0 and a 2 still within its settle window raise no
    alert; the 2 does once its window has passed."""
    settings = configure(store)
    book = answers(settings)
    book.answered(7, ANSWERED)
    book.answered(10, ANSWERED)
    scanned = book.request(ANSWERED)
    book.answer(scanned, 0, ANSWERED, status=ResponseStatus.SCANNER)
    clicked = book.request(ANSWERED)
    book.answer(clicked, 2, NOW - timedelta(seconds=20), status=ResponseStatus.PROVISIONAL)
    book.ledger.close()

    assert deliver(settings, NOW).queued == 0
    assert store.messages() == []
    assert deliver(settings, NOW + timedelta(minutes=5)).sent == 1
    [message] = store.messages()
    assert message["Subject"] == "Unhappy customer at Centrum: score 2"


def test_with_no_address_alerts_are_off(store: Store) -> None:
    """An empty [alerts] to queues and sends nothing."""
    settings = configure(store, to=())
    answer_three(settings)

    assert deliver(settings, NOW) == AlertCounts()
    assert alert_rows(store) == [] and store.messages() == []


def test_an_answer_changed_to_a_promoters_before_it_went_out_sends_nothing(
    store: Store, start_server: StartServer
) -> None:
    """A queued alert whose answer became a 9 while the provider was away is dropped."""
    port = start_server.reserve()
    settings = configure(store, smtp_port=port)
    request_id = answer_three(settings)
    assert deliver(settings, NOW).waiting == 1

    book = answers(settings)
    book.change(request_id, NOW + timedelta(minutes=1), score=9)
    book.ledger.close()

    assert deliver(settings, NOW + timedelta(minutes=5)).failed == 1
    assert alert_rows(store) == [("detractor", "failed", 2)]


# --- what the email says ---------------------------------------------------------------------

HOSTILE_NAME = 'Eve\r\nBcc: all@example.com <b>"Boss"</b> \u202eevil'
HOSTILE_COMMENT = (
    '<script>alert("x")</script> & <a href="https://evil.example">klik</a>\n'
    "Tweede regel met 'quotes' en een emoji 🚲"
)


def test_hostile_names_and_comments_are_escaped_in_html_and_intact_in_text(
    store: Store,
) -> None:
    """Markup in a comment or name is shown, never run; a 2,000-character comment arrives
    whole in the text part; a name with a line break adds no header."""
    settings = configure(store)
    comment = HOSTILE_COMMENT + "\n" + "x" * (2000 - len(HOSTILE_COMMENT) - 1)
    book = answers(settings)
    book.answered(1, ANSWERED, comment=comment, first_name=HOSTILE_NAME, customer_id="<C1>")
    book.ledger.close()

    assert deliver(settings, NOW).sent == 1
    [message] = store.messages()
    assert "Bcc" not in message and len(message.get_all("To") or []) == 1
    text, html = parts(message)
    assert comment in text
    assert "<script>" not in html and "<a href" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;a href=" in html
    assert "&lt;C1&gt;" in html and "<C1>" in text
    assert "\u202e" not in text + html + str(message["Subject"])
    assert "Eve Bcc: all@example.com" in text  # the line break became a space


@pytest.mark.parametrize(
    ("locale", "subject", "opening"),
    [
        ("en", "Unhappy customer at Centrum: score 3", "Kim gave Test Cycles a score of 3"),
        ("nl", "Ontevreden klant (Centrum): score 3", "Kim heeft Test Cycles een 3 gegeven"),
        ("es", "Cliente insatisfecho en Centrum: puntuación 3", "Kim ha valorado Test Cycles"),
        ("ko", "불만족 고객 알림 (Centrum): 3점", "Kim 고객님이 Test Cycles에 10점 만점에 3점을"),
        ("sl", "Nezadovoljna stranka (Centrum): ocena 3", "Stranka Kim je trgovini Test Cycles"),
    ],
)
def test_the_alert_is_in_the_stores_default_language(
    store: Store, locale: str, subject: str, opening: str
) -> None:
    """Each built-in language names the score and location in the subject and writes the
    sale date its own way."""
    settings = configure(store, locale=locale)
    answer_three(settings)

    deliver(settings, NOW)

    [message] = store.messages()
    assert message["Subject"] == subject and message["Content-Language"] == locale
    text, _ = parts(message)
    assert text.startswith(opening)
    sale_dates = {
        "en": "March 12, 2026",
        "nl": "12 maart 2026",
        "es": "12 de marzo de 2026",
        "ko": "2026년 3월 12일",
        "sl": "12. 3. 2026",
    }
    assert sale_dates[locale] in text


def test_a_store_language_without_alert_wording_gets_english(store: Store) -> None:
    """A store whose default language has no built-in alert wording gets English alerts."""
    settings = configure(store, locale="de")
    answer_three(settings, first_name=None, location_name=None, employee_name=None)

    deliver(settings, NOW)

    [message] = store.messages()
    assert message["Subject"] == "Unhappy customer: score 3"
    text, _ = parts(message)
    assert text.startswith("A customer gave Test Cycles a score of 3 out of 10.")
    assert "Technician: –" in text


# --- the daily digest ---------------------------------------------------------------------

DAY = local(2026, 3, 13, 10)  # a Friday; the digest is sent at Saturday's nightly run
NIGHT = local(2026, 3, 14, 23)


def test_the_digest_lists_the_days_detractors_once(store: Store) -> None:
    """mode = "digest" sends no alert per answer, and one email after the day is over that
    lists that store day's detractors (times in the store's zone) with their comments."""
    settings = configure(store, mode="digest", digest="daily")
    book = answers(settings)
    book.answered(3, DAY, comment="Te lang gewacht", first_name="Kim")
    book.answered(5, local(2026, 3, 13, 23, 30), first_name="Jan")  # 22:30 UTC: Friday here
    book.answered(9, DAY, first_name="Promotor")
    scanned = book.request(DAY)
    book.answer(scanned, 0, DAY, status=ResponseStatus.SCANNER)
    book.answered(2, local(2026, 3, 14, 0, 30), first_name="Zaterdag")  # Friday in UTC
    book.ledger.close()

    assert deliver(settings, NIGHT).sent == 0  # the web tick: no digest, no single alerts
    assert deliver(settings, NIGHT, digests=True).sent == 1
    assert deliver(settings, NIGHT + timedelta(minutes=5), digests=True).sent == 0

    [digest] = store.messages()
    assert digest["Subject"] == "Unhappy customers on March 13, 2026: 2"
    text, html = parts(digest)
    assert "score of 6 or lower on March 13, 2026" in text
    assert "Te lang gewacht" in text and "Te lang gewacht" in html
    assert "First name: Kim" in text and "First name: Jan" in text
    assert "Promotor" not in text and "Zaterdag" not in text
    assert text.index("Kim") < text.index("Jan")

    assert deliver(settings, NIGHT + timedelta(days=1), digests=True).sent == 1
    [saturday] = [m for m in store.messages() if "March 14" in str(m["Subject"])]
    assert "First name: Zaterdag" in parts(saturday)[0]


def test_a_day_without_detractors_sends_no_digest(store: Store) -> None:
    """A quiet day (only promoters) leaves the manager's inbox alone."""
    settings = configure(store, mode="digest", digest="daily")
    book = answers(settings)
    book.answered(10, DAY)
    book.ledger.close()

    assert deliver(settings, NIGHT, digests=True) == AlertCounts()
    assert store.messages() == []


def test_both_sends_each_alert_and_the_digest(store: Store) -> None:
    """mode = "both": the answer's own alert as soon as it is final, and the digest after
    the day is over."""
    settings = configure(store, mode="both", digest="daily")
    book = answers(settings)
    book.answered(4, DAY, comment="Fiets niet klaar")
    book.ledger.close()

    assert deliver(settings, DAY + timedelta(minutes=5)).sent == 1
    assert deliver(settings, NIGHT, digests=True).sent == 1
    subjects = sorted(str(m["Subject"]) for m in store.messages())
    assert subjects == [
        "Unhappy customer at Centrum: score 4",
        "Unhappy customers on March 13, 2026: 1",
    ]


def test_the_digest_catches_up_on_nights_the_daemon_missed(store: Store) -> None:
    """After two nights off, the next night sends the digests of both days it missed."""
    settings = configure(store, mode="digest", digest="daily")
    book = answers(settings)
    book.answered(3, local(2026, 3, 10, 12))
    book.answered(2, local(2026, 3, 12, 12))
    book.answered(1, local(2026, 3, 13, 12))
    book.ledger.close()
    assert deliver(settings, local(2026, 3, 11, 23), digests=True).sent == 1  # the 10th

    assert deliver(settings, NIGHT, digests=True).sent == 2  # the 12th and the 13th

    subjects = sorted(str(m["Subject"]) for m in store.messages())
    assert subjects == [
        "Unhappy customers on March 10, 2026: 1",
        "Unhappy customers on March 12, 2026: 1",
        "Unhappy customers on March 13, 2026: 1",
    ]


# --- never twice, even across a crash ---------------------------------------------------------


def test_a_crash_between_sending_and_settling_never_sends_twice(
    store: Store, start_server: StartServer
) -> None:
    """A power cut right after the mail server took the alert leaves it in flight; another
    process leaves it alone while it could still be in progress, then holds it in doubt;
    the manager gets it once."""
    server = start_server()
    settings = configure(store, smtp_port=server.port)
    answer_three(settings)
    smtp = create(settings.provider)
    assert isinstance(smtp, SmtpProvider)

    with pytest.raises(Crash):
        deliver(settings, NOW, provider=CrashAfterSend(smtp))
    smtp.close()
    assert alert_rows(store) == [("detractor", "sending", 1)]

    assert deliver(settings, NOW + timedelta(minutes=10)) == AlertCounts()
    assert alert_rows(store) == [("detractor", "sending", 1)]
    assert deliver(settings, NOW + IN_FLIGHT_LIMIT + timedelta(minutes=1)).in_doubt == 1
    assert deliver(settings, NOW + timedelta(days=1)) == AlertCounts()

    assert server.handler.recipients() == [MANAGER]
    assert alert_rows(store) == [("detractor", "in_doubt", 1)]


def test_after_a_crash_an_idempotent_provider_gets_the_same_alert_again(store: Store) -> None:
    """With the outbox (which honours idempotency keys), the alert a crash left in flight is
    repeated under its key, as the same email: one file, sent."""
    settings = configure(store)
    answer_three(settings)
    outbox = create(settings.provider)
    assert isinstance(outbox, OutboxProvider)

    with pytest.raises(Crash):
        deliver(settings, NOW, provider=CrashAfterSend(outbox))
    [first] = store.messages()

    assert deliver(settings, NOW + IN_FLIGHT_LIMIT + timedelta(minutes=1)).sent == 1

    [again] = store.messages()
    for header in ("Message-ID", "Date", "Subject", "To"):
        assert again[header] == first[header]
    assert parts(again) == parts(first)
    assert alert_rows(store) == [("detractor", "sent", 2)]


def test_a_repeat_the_provider_cannot_take_stays_in_flight_until_it_can(
    store: Store, tmp_path: Path
) -> None:
    """The repeat of an alert a crash left in flight, refused for now, waits in flight and
    goes out later as the same email (never as a new one under the old key)."""
    settings = configure(store)
    answer_three(settings)
    with pytest.raises(Crash):
        deliver(settings, NOW, provider=CrashAfterSend(OutboxProvider(store.outbox)))
    [first] = store.messages()
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the outbox should be")
    later = NOW + IN_FLIGHT_LIMIT + timedelta(minutes=1)

    assert deliver(settings, later, provider=OutboxProvider(blocked / "outbox")).waiting == 1
    assert alert_rows(store) == [("detractor", "sending", 2)]
    assert deliver(settings, later + timedelta(minutes=1)).sent == 1

    [again] = store.messages()
    assert (again["Message-ID"], again["Date"]) == (first["Message-ID"], first["Date"])


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alerts", "problem"),
    [
        ({"to": '["not-an-address"]'}, "alerts.to"),
        ({"mode": '"digest"'}, "needs alerts.digest = 'daily'"),
        ({"digest": '"daily"'}, "needs alerts.mode = 'digest' or 'both'"),
        ({"detractor_max": "11"}, "alerts.detractor_max"),
        ({"mode": '"weekly"'}, "alerts.mode"),
    ],
)
def test_a_bad_alerts_setting_names_the_key(
    store: Store, alerts: dict[str, str], problem: str
) -> None:
    """An unusable [alerts] setting stops with a message naming it."""
    store.extra["alerts"] = alerts
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(")):
        load_settings(store.write_config())


def test_the_nightly_run_sends_the_alert_after_the_nights_surveys(store: Store) -> None:
    """A detractor's answer waiting in the ledger goes out with the next nightly run, which
    counts it in its summary; a dry run sends nothing."""
    settings = configure(store)
    answer_three(settings)
    dry = run_sync(settings, SyncRequest(now=NOW, dry_run=True))
    assert dry.counts["alerts_sent"] == 0 and alert_rows(store) == []
    night = run_sync(settings, SyncRequest(now=NOW))
    assert night.counts["alerts_sent"] == 1
    assert alert_rows(store) == [("detractor", "sent", 1)]
    assert [m["To"] for m in store.messages()] == [MANAGER]
