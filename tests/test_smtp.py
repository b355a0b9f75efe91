"""The smtp provider against a real SMTP server (aiosmtpd on 127.0.0.1): what a store would
see in the server's mailbox, in the ledger and from `surveysync check` and `status`
(faults at random, crashes, the password and check's plain answers: the contract suite,
which drives ``SmtpService``)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
import stamina
from structlog.testing import capture_logs

from surveysync.providers import SmtpProvider
from surveysync.providers.pacing import Pacer
from surveysync.sync import SyncError, SyncRequest, run_sync
from tests.conftest import Store, local
from tests.provider_kit import FakeTime
from tests.smtp_server import (
    BUSY_REPLY,
    Handler,
    SmtpServer,
    StartServer,
    TestCertificates,
    certificates,
    reserve_port,
)
from tests.test_emails import HOSTILE

DAY = datetime(2026, 11, 20, 10, 0)
NIGHT = local(2026, 11, 20, 23)
NEXT_NIGHT = local(2026, 11, 21, 23)
SURVEY_URL = "https://survey.test/s"
UNSUBSCRIBE_URL = "https://survey.test/u"
PASSWORD = "pa55-w0rd-never-shown"
REFUSAL = "550 5.1.1 <{address}>: Recipient address rejected: no such user"

EXPECTED_HEADERS = sorted(
    [
        "From", "To", "Subject", "Date", "MIME-Version", "Content-Type", "Message-ID",
        "List-Unsubscribe", "List-Unsubscribe-Post", "Content-Language", "X-Surveysync-Request",
    ]
)  # fmt: skip


@pytest.fixture(autouse=True)
def retries_without_waiting() -> Iterator[None]:
    """stamina retries at once in these tests, up to each test's configured attempts."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


@pytest.fixture
def certs(tmp_path: Path) -> TestCertificates:
    return certificates(tmp_path)


def use_smtp(store: Store, port: int, **smtp: str) -> None:
    """Point the store at an SMTP server on 127.0.0.1:port (values are TOML)."""
    store.first_run_start = "2026-11-19T00:00:00"
    store.extra["provider"] = {"kind": '"smtp"'}
    store.extra["provider.smtp"] = {
        "host": '"127.0.0.1"',
        "port": str(port),
        "security": '"none"',
        "timeout_seconds": "30",  # generous: the server answers or drops, never stalls
        **smtp,
    }
    store.extra["email"] = {
        "survey_base_url": f'"{SURVEY_URL}"',
        "unsubscribe_base_url": f'"{UNSUBSCRIBE_URL}"',
    }


class SmtpService:
    """The SMTP server with STARTTLS and a login, as the contract suite drives it."""

    kind = "smtp"
    secrets = (PASSWORD,)
    bad_address = "refuse.me@example.com"
    ready_words = "(STARTTLS, authenticated as shop)"
    refused_words = "refused the username and password (535 "
    unreachable_words = "cannot reach 127.0.0.1"
    retries_lost_answers = False  # what the server took before the line died is in doubt
    repeats_after_crash = False  # SMTP has no idempotency key
    http = None

    def __init__(self, folder: Path) -> None:
        self.certs = certificates(folder)
        refusal = REFUSAL.format(address=self.bad_address)
        self.handler = Handler(refuse={self.bad_address: refusal})
        self._held = ExitStack()

    def start(self) -> None:
        self.port = self._held.enter_context(reserve_port())
        self.closed_port = self._held.enter_context(reserve_port())  # nobody ever listens
        login = ("shop", PASSWORD)
        tls = self.certs.server_context
        self.server = SmtpServer(self.handler, port=self.port, security="starttls", tls=tls,
                                 login=login).start()  # fmt: skip

    def stop(self) -> None:
        self.server.stop()
        self._held.close()

    def configure(
        self, store: Store, *, secret: str | None = None, reachable: bool = True, attempts: int = 8
    ) -> None:
        use_smtp(
            store,
            self.port if reachable else self.closed_port,
            security='"starttls"',
            username='"shop"',
            password=f'"{secret or PASSWORD}"',
            ca_file=f'"{self.certs.ca_file.as_posix()}"',
            retry_attempts=str(attempts),
        )

    def delivered(self) -> Counter[str]:
        return self.handler.delivered()

    def trouble(self) -> None:
        self.handler.busy["c0@example.com"] = 1  # 451, retried
        self.handler.drop_at_mail = {2}  # a line lost before the content, reopened

    def fault_rate(self, rate: float) -> None:
        self.handler.fault_rate = rate


def sales(store: Store, count: int, day: datetime = DAY) -> list[str]:
    """One sale each for customers C0..C<count-1>; returns their addresses."""
    for n in range(count):
        store.customer(f"C{n}")
        store.pos.sale(f"C{n}", day + timedelta(minutes=n))
    return [f"c{n}@example.com" for n in range(count)]


def statuses(store: Store) -> list[str]:
    return sorted(status for (status,) in store.ledger_rows("SELECT status FROM requests"))


# --- delivery ---------------------------------------------------------------------------------


def test_a_sync_delivers_one_complete_message_per_request(
    store: Store, start_server: StartServer
) -> None:
    """Each customer gets one well-formed survey email with every link, on one connection."""
    server = start_server()
    use_smtp(store, server.port)
    addresses = sales(store, 3)

    report = store.run(NIGHT)

    assert report.counts["sent"] == 3
    assert server.handler.recipients() == addresses
    assert all(len(m.rcpt_tos) == 1 for m in server.handler.received)
    assert {m.mail_from for m in server.handler.received} == {"feedback@demo-cycles.example"}
    assert len(server.handler.peers) == 1
    for received in server.handler.received:
        message = received.parsed()
        assert sorted(message.keys()) == EXPECTED_HEADERS
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        assert text is not None and html is not None
        plain = text.get_content()
        assert len(re.findall(re.escape(SURVEY_URL) + r"/\S+", plain)) == 11
        assert UNSUBSCRIBE_URL + "/" in plain
    message_ids = sorted(str(m.parsed()["Message-ID"]) for m in server.handler.received)
    kept = store.ledger_rows("SELECT status, provider_message_id FROM requests")
    assert sorted(status for status, _ in kept) == ["sent"] * 3
    assert sorted(message_id for _, message_id in kept) == message_ids


def test_a_refused_recipient_is_rejected_with_the_servers_reply(
    store: Store, start_server: StartServer
) -> None:
    """A 550 for one address is kept (address masked) and the rest of the batch goes out."""
    server = start_server()
    server.handler.refuse["c1@example.com"] = REFUSAL.format(address="c1@example.com")
    use_smtp(store, server.port)
    addresses = sales(store, 3)

    report = store.run(NIGHT)

    assert report.counts["sent"] == 2 and report.counts["rejected"] == 1
    assert server.handler.recipients() == [addresses[0], addresses[2]]
    status, error = _row_for(store, "C1")
    assert status == "rejected"
    assert error == "550 5.1.1 <c***@example.com>: Recipient address rejected: no such user"


def test_an_address_refused_for_good_is_suppressed_and_not_tried_again(
    store: Store, start_server: StartServer
) -> None:
    """A 550 at RCPT suppresses the address (`suppress list`: provider, rejected), so the
    customer's next sale is skipped as unsubscribed without a word to the server; a 4xx
    suppresses nothing; after `suppress remove` the address is tried again."""
    server = start_server()
    server.handler.refuse["c1@example.com"] = REFUSAL.format(address="c1@example.com")
    server.handler.busy["c2@example.com"] = 100  # 4xx for every try tonight
    use_smtp(store, server.port, retry_attempts="2")
    sales(store, 3)
    store.run(NIGHT)

    listed = store.cli("suppress", "list").output
    assert re.search(r"c\*\*\*@example\.com\s.*provider\s.*rejected", listed), listed
    assert listed.count("@example.com") == 1  # the busy one is not suppressed
    store.pos.sale("C1", datetime(2026, 12, 5, 12, 0))
    server.handler.busy.clear()
    server.handler.rcpt_addresses.clear()
    report = store.run(NIGHT + timedelta(days=15))
    assert report.counts["unsubscribed"] == 1
    assert server.handler.rcpt_addresses == ["c2@example.com"]  # the pending one, sent now
    assert store.cli("suppress", "remove", "--email", "c1@example.com").exit_code == 0
    store.pos.sale("C1", datetime(2026, 12, 6, 12, 0))
    store.run(NIGHT + timedelta(days=16))
    assert _statuses_for(store, "C1") == ["rejected", "rejected"]


def _statuses_for(store: Store, customer_id: str) -> list[str]:
    rows = store.ledger_rows(
        f"SELECT status FROM requests WHERE customer_id = '{customer_id}' ORDER BY created_at"
    )
    return [status for (status,) in rows]


def _row_for(store: Store, customer_id: str) -> tuple[str, str | None]:
    rows = store.ledger_rows(
        f"SELECT status, error FROM requests WHERE customer_id = '{customer_id}'"
    )
    assert len(rows) == 1
    status, error = rows[0]
    return status, error


def test_a_busy_answer_twice_is_retried_and_delivered_once(
    store: Store, start_server: StartServer
) -> None:
    """Two 451 replies are waited out within the run: the customer gets one email."""
    server = start_server()
    server.handler.busy["c0@example.com"] = 2
    use_smtp(store, server.port, retry_attempts="3")
    addresses = sales(store, 2)

    report = store.run(NIGHT)

    assert report.counts["sent"] == 2
    assert server.handler.recipients() == addresses
    assert server.handler.busy["c0@example.com"] == 0
    assert statuses(store) == ["sent", "sent"]


def test_a_recipient_busy_all_night_is_deferred_and_sent_by_the_next_run(
    store: Store, start_server: StartServer
) -> None:
    """A 451 that outlives the retries is tried again the next night, and sent once."""
    server = start_server()
    server.handler.busy["c0@example.com"] = 1_000
    use_smtp(store, server.port, retry_attempts="3")
    addresses = sales(store, 2)

    first = store.run(NIGHT)

    assert first.counts["pending"] == 1 and first.counts["sent"] == 1
    assert server.handler.busy["c0@example.com"] == 1_000 - 3
    assert _row_for(store, "C0") == ("pending", BUSY_REPLY)
    assert server.handler.recipients() == [addresses[1]]

    server.handler.busy.clear()
    second = store.run(NEXT_NIGHT)

    assert second.counts["sent"] == 1
    assert server.handler.recipients() == addresses
    assert statuses(store) == ["sent", "sent"]


# --- lost connections and lost servers ---------------------------------------------------------


def test_a_connection_dropped_at_mail_is_reopened_and_nobody_gets_two(
    store: Store, start_server: StartServer
) -> None:
    """A connection that breaks before a message went out is reopened; everyone gets one."""
    server = start_server()
    server.handler.drop_at_mail = {2}
    use_smtp(store, server.port)
    addresses = sales(store, 4)

    report = store.run(NIGHT)

    assert report.counts["sent"] == 4
    assert server.handler.recipients() == addresses
    assert server.handler.mail_commands == 5
    assert len(server.handler.peers) == 2


def test_a_connection_dropped_after_the_content_leaves_that_one_in_doubt(
    store: Store, start_server: StartServer
) -> None:
    """A message the server took but never confirmed is listed by status, never sent again."""
    server = start_server()
    server.handler.drop_after_content = {"c1@example.com"}
    use_smtp(store, server.port)
    addresses = sales(store, 3)

    report = store.run(NIGHT)

    assert report.counts["in_doubt"] == 1 and report.counts["sent"] == 2
    assert [m.rcpt_tos for m in server.handler.unanswered] == [["c1@example.com"]]
    assert server.handler.recipients() == [addresses[0], addresses[2]]
    assert statuses(store) == ["in_doubt", "sent", "sent"]
    status = store.cli("status")
    assert re.search(r"in_doubt\s.*c\*\*\*@example\.com", status.output), status.output

    store.run(NEXT_NIGHT)

    assert len(server.handler.unanswered) == 1
    assert server.handler.recipients() == [addresses[0], addresses[2]]


def test_a_server_that_is_down_fails_the_run_and_the_next_run_sends_each_once(
    store: Store, start_server: StartServer
) -> None:
    """Nothing is lost while the server is down: the next run, with it back, sends each once."""
    port = start_server.reserve()  # nothing listens there yet
    use_smtp(store, port)
    addresses = sales(store, 3)

    with pytest.raises(SyncError, match=r"cannot reach 127\.0\.0\.1:\d+: connection refused"):
        store.run(NIGHT)

    assert statuses(store) == ["pending"] * 3
    server = start_server(port=port)
    store.run(NEXT_NIGHT)

    assert server.handler.recipients() == addresses
    assert statuses(store) == ["sent"] * 3


def test_a_server_that_dies_half_way_keeps_what_it_took_as_sent(
    store: Store, start_server: StartServer
) -> None:
    """The messages accepted before the server went away are sent, and never sent again."""
    dying = start_server(Handler(stop_after=2))
    use_smtp(store, dying.port)
    addresses = sales(store, 4)

    with pytest.raises(SyncError):
        store.run(NIGHT)

    assert len(dying.handler.received) == 2
    assert statuses(store) == ["pending", "pending", "sent", "sent"]
    dying.stop()
    healthy = start_server(port=dying.port)
    store.run(NEXT_NIGHT)

    assert sorted(dying.handler.recipients() + healthy.handler.recipients()) == addresses
    assert len(healthy.handler.received) == 2
    assert statuses(store) == ["sent"] * 4


# --- TLS and authentication ------------------------------------------------------------------


def test_starttls_with_login_delivers_and_check_says_how(
    store: Store, start_server: StartServer, certs: TestCertificates
) -> None:
    """With STARTTLS and a password the mail goes out, and check names the setup."""
    server = start_server(security="starttls", tls=certs.server_context, login=("shop", PASSWORD))
    use_smtp(
        store,
        server.port,
        security='"starttls"',
        username='"shop"',
        password=f'"{PASSWORD}"',
        ca_file=f'"{certs.ca_file.as_posix()}"',
    )
    addresses = sales(store, 2)

    check = store.cli("check")
    store.run(NIGHT)

    assert re.search(
        rf"^provider\s+ok\s+smtp: 127\.0\.0\.1:{server.port} \(STARTTLS, authenticated as shop\)",
        check.output,
        re.MULTILINE,
    ), check.output
    assert server.handler.recipients() == addresses


def test_tls_from_the_first_byte_delivers(
    store: Store, start_server: StartServer, certs: TestCertificates
) -> None:
    """A server on an implicit-TLS port (465 style) gets the mail."""
    server = start_server(security="tls", tls=certs.server_context)
    use_smtp(store, server.port, security='"tls"', ca_file=f'"{certs.ca_file.as_posix()}"')
    addresses = sales(store, 2)

    store.run(NIGHT)

    assert server.handler.recipients() == addresses


def test_check_reports_an_untrusted_certificate(
    store: Store, start_server: StartServer, certs: TestCertificates
) -> None:
    """A certificate no trusted CA signed is named as such, not as a vague TLS error."""
    server = start_server(security="starttls", tls=certs.server_context)
    use_smtp(store, server.port, security='"starttls"')

    check = store.cli("check")

    assert check.exit_code == 1
    assert re.search(
        r"^provider\s+failed\s+the TLS certificate of 127\.0\.0\.1:\d+ is not trusted",
        check.output,
        re.MULTILINE,
    ), check.output


# --- pacing ----------------------------------------------------------------------------------


def test_sends_are_paced_to_max_per_second(store: Store, start_server: StartServer) -> None:
    """At 5 per second, ten messages take at least 1.8 s and never come closer than 0.2 s."""
    time = FakeTime(1_000.0)
    server = start_server(Handler(clock=time.clock))
    use_smtp(store, server.port, max_per_second="5")
    sales(store, 10)
    settings = store.settings()
    provider = SmtpProvider(
        settings.provider.smtp, batch_size=4, clock=time.clock, sleep=time.sleep
    )

    try:
        run_sync(settings, SyncRequest(now=NIGHT), provider=provider)
    finally:
        provider.close()

    times = server.handler.mail_times
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert len(times) == 10
    assert times[-1] - times[0] >= 1.8 - 1e-9
    assert min(gaps) >= 0.2 - 1e-9


def test_a_pacer_without_a_limit_never_sleeps() -> None:
    """No max_per_second means no waiting at all, however fast the sends come."""
    time = FakeTime(1_000.0)
    pacer = Pacer(None, clock=time.clock, sleep=time.sleep)
    for _ in range(100):
        pacer.wait()
    assert time.now == 1_000.0


# --- international addresses -----------------------------------------------------------------


def test_a_non_ascii_local_part_goes_out_with_smtputf8(
    store: Store, start_server: StartServer
) -> None:
    """jürgen@… is delivered, with SMTPUTF8, to a server that offers it."""
    server = start_server()
    use_smtp(store, server.port)
    store.customer("C1", "jürgen@example.com")
    store.pos.sale("C1", DAY)

    store.run(NIGHT)

    [received] = server.handler.received
    assert received.rcpt_tos == ["jürgen@example.com"]
    assert "SMTPUTF8" in received.mail_options
    assert received.parsed()["To"].addresses[0].addr_spec == "jürgen@example.com"
    assert statuses(store) == ["sent"]


def test_a_non_ascii_local_part_is_rejected_by_a_server_without_smtputf8(
    store: Store, start_server: StartServer
) -> None:
    """Without SMTPUTF8 on the server, jürgen@… is rejected with a clear reason; others go."""
    server = start_server(smtputf8=False)
    use_smtp(store, server.port)
    store.customer("C1", "jürgen@example.com")
    store.pos.sale("C1", DAY)
    store.customer("C2")
    store.pos.sale("C2", DAY + timedelta(minutes=5))

    store.run(NIGHT)

    assert server.handler.recipients() == ["c2@example.com"]
    status, error = _row_for(store, "C1")
    assert status == "rejected"
    assert error is not None and error.startswith("the server does not support SMTPUTF8")


# --- privacy ---------------------------------------------------------------------------------


def test_logs_of_a_troubled_run_hold_no_password_and_no_full_address(
    store: Store, start_server: StartServer, certs: TestCertificates
) -> None:
    """Refusals, busy replies, drops and a refused login are logged with addresses masked."""
    server = start_server(security="starttls", tls=certs.server_context, login=("shop", PASSWORD))
    server.handler.refuse["c1@example.com"] = REFUSAL.format(address="c1@example.com")
    server.handler.busy["c2@example.com"] = 1
    server.handler.drop_at_mail = {4}
    server.handler.drop_after_content = {"c4@example.com"}
    secure = {
        "security": '"starttls"',
        "username": '"shop"',
        "ca_file": f'"{certs.ca_file.as_posix()}"',
    }
    use_smtp(store, server.port, password=f'"{PASSWORD}"', **secure)
    addresses = sales(store, 6)

    with capture_logs() as events:
        report = store.run(NIGHT)
        use_smtp(store, server.port, password='"wrong-password-1234"', **secure)
        store.customer("C9")
        store.pos.sale("C9", DAY.replace(day=21))
        with pytest.raises(SyncError):
            store.run(NEXT_NIGHT)

    assert report.counts["rejected"] == 1 and report.counts["in_doubt"] == 1
    names = {event["event"] for event in events}
    assert {"smtp.refused", "smtp.retry", "smtp.reconnect", "smtp.in_doubt"} <= names
    assert "smtp.unavailable" in names
    logged = repr(events)
    for secret in (PASSWORD, "wrong-password-1234", *addresses, "c9@example.com"):
        assert secret not in logged


def test_a_server_busy_for_everyone_defers_the_batch_within_its_retry_time(
    store: Store, start_server: StartServer
) -> None:
    """When every recipient gets 451, retries stop once the batch's retry_seconds are spent:
    the rest get one try each and wait for the next night, instead of hours of retrying."""
    server = start_server()
    addresses = sales(store, 6)
    for address in addresses:
        server.handler.busy[address] = 1_000
    use_smtp(store, server.port, retry_attempts="3", retry_seconds="5")
    settings = store.settings()
    time = FakeTime(1_000.0)

    def ticking() -> float:  # every look at the clock finds two seconds gone
        time.now += 2
        return time.now

    provider = SmtpProvider(settings.provider.smtp, batch_size=6, clock=ticking, sleep=time.sleep)
    try:
        report = run_sync(settings, SyncRequest(now=NIGHT), provider=provider)
    finally:
        provider.close()

    assert report.counts["pending"] == 6
    assert statuses(store) == ["pending"] * 6
    tries = [1_000 - server.handler.busy[a] for a in addresses]
    assert tries[0] == 3 and tries[-4:] == [1] * 4  # retried while there was time, then not
    assert tries == sorted(tries, reverse=True)


def test_hostile_names_arrive_over_smtp_as_inert_text(
    store: Store, start_server: StartServer
) -> None:
    """CR/LF, markup, quotes, RTL overrides, emoji and 500-character names each reach their
    own address only, in one message with exactly the usual headers and both parts."""
    server = start_server()
    use_smtp(store, server.port)
    for customer_id, first in HOSTILE.items():
        store.customer(customer_id, first=first)
        store.pos.sale(customer_id, DAY)

    store.run(NIGHT)

    assert server.handler.recipients() == sorted(f"{c.lower()}@example.com" for c in HOSTILE)
    for received in server.handler.received:
        message = received.parsed()
        assert sorted(message.keys()) == EXPECTED_HEADERS
        [to] = message["To"].addresses
        assert [to.addr_spec] == received.rcpt_tos
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        html = message.get_body(("html",))
        assert html is not None and "<script>" not in html.get_content()
        assert "\u202e" not in str(message["Subject"]) + to.display_name
