"""One contract, every provider: each behaviour below runs against every provider's own local
service (the HTTP fakes that answer as each API documents, the real aiosmtpd server, the
outbox folder) wherever the behaviour applies. What is particular to one provider (its wire
format, its quirks) stays in that provider's test module, next to its service.

Faults never race the clock: a held answer ends by the client giving up on it (see
``tests/http_fake.py``), retries do not wait (stamina's testing mode), and random faults are
drawn with a fixed seed.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from structlog.testing import capture_logs

from surveysync.config import ProviderKind, ProviderSettings
from surveysync.providers import REGISTRY, base, create
from surveysync.sync import SyncError
from tests.conftest import Store, local
from tests.http_fake import HOLD, RESET_AFTER, RESET_BEFORE, FakeProvider, Fault, status
from tests.provider_kit import (
    HttpService,
    Service,
    crash_after_send,
    customers,
    request_ids,
    run,
    statuses,
)
from tests.test_brevo import Brevo
from tests.test_mailgun import Mailgun
from tests.test_postmark import Postmark
from tests.test_resend import ResendService
from tests.test_sendgrid import SendGrid
from tests.test_smtp import SmtpService
from tests.test_webhook import Webhook

NIGHT = local(2026, 11, 20, 23)
NEXT_NIGHT = local(2026, 11, 21, 23)


pytestmark = pytest.mark.usefixtures("retries_without_waiting")


class OutboxService:
    """The outbox folder: a message is delivered when its .eml file is there."""

    kind: ClassVar[str] = "outbox"
    ready_words: ClassVar[str] = "writes .eml files to"
    unreachable_words: ClassVar[str] = "cannot create outbox folder"
    repeats_after_crash: ClassVar[bool] = True  # the file is named by the request
    http: FakeProvider | None = None

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "outbox"

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def configure(self, store: Store, *, reachable: bool = True, **_: object) -> None:
        folder = self.folder if reachable else self._under_a_file()
        store.first_run_start = "2026-11-19T00:00:00"
        store.extra["provider"] = {"kind": '"outbox"', "outbox_dir": f'"{folder.as_posix()}"'}

    def delivered(self) -> Counter[str]:
        found = Counter[str]()
        for path in self.folder.glob("*.eml"):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            found[str(message["X-Surveysync-Request"])] += 1
        return found

    def _under_a_file(self) -> Path:
        blocker = self.folder.parent / "not-a-folder"
        blocker.write_text("a file where the outbox folder should be\n", encoding="utf-8")
        return blocker / "outbox"


FACTORIES: dict[str, Callable[[Path], Service | OutboxService]] = {
    "outbox": OutboxService,
    "smtp": SmtpService,
    "sendgrid": lambda _: SendGrid(),
    "postmark": lambda _: Postmark(),
    "mailgun": lambda _: Mailgun(FakeProvider({})),
    "resend": lambda _: ResendService(),
    "brevo": lambda _: Brevo(FakeProvider({})),
    "webhook": lambda _: Webhook(),
}
HTTP = ["sendgrid", "postmark", "mailgun", "resend", "brevo", "webhook"]
SENDERS = ["smtp", *HTTP]  # every provider with a network, a key and faults
EVERYONE = ["outbox", *SENDERS]
WITH_LISTS = ["sendgrid", "postmark", "mailgun", "resend", "brevo"]
KEYED = ["resend", "webhook"]  # whose calls carry an idempotency key the provider honours


@pytest.fixture(autouse=True)
def no_thread_outlives_the_test() -> Iterator[None]:
    """Every server, handler and client thread a test starts has ended when it ends."""
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) <= before


@pytest.fixture
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    """The local service of the provider named by the test's parameter, running."""
    chosen = FACTORIES[request.param](tmp_path)
    chosen.start()
    yield chosen
    chosen.stop()


def over(kinds: list[str]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("service", kinds, indirect=True)


def add_sale(store: Store, customer_id: str, address: str, day: int = 20) -> None:
    store.customer(customer_id, address)
    store.pos.sale(customer_id, datetime(2026, 11, day, 12, 0))


def unsettled(store: Store) -> set[tuple[str, str, str]]:
    """What `surveysync status --json` lists as not settled: request id, status, address."""
    listed = json.loads(store.cli("status", "--json").output)["unsettled"]
    return {(u["request_id"], u["status"], u["email"]) for u in listed}


def ledger_text(store: Store) -> str:
    """Every row of every table of the ledger, as text."""
    tables = store.ledger_rows("SELECT name FROM sqlite_master WHERE type = 'table'")
    rows = {name: store.ledger_rows(f'SELECT * FROM "{name}"') for (name,) in tables}
    return json.dumps(rows, default=str, ensure_ascii=False)


MINIMAL_SECTIONS: dict[str, dict[str, object]] = {
    "mailgun": {"api_key": "k", "domain": "mg.example"},
    "webhook": {"url": "https://hooks.example/surveys", "secret": "s"},
    **{kind: {"api_key": "k"} for kind in ("sendgrid", "postmark", "resend", "brevo")},
}


@pytest.mark.parametrize("kind", list(ProviderKind))
def test_every_kind_is_built_by_the_adapter_its_module_names(kind: ProviderKind) -> None:
    """Each provider kind finds its module's adapter, built from the settings alone."""
    sections = {kind.value: MINIMAL_SECTIONS[kind.value]} if kind in MINIMAL_SECTIONS else {}
    provider = create(ProviderSettings(kind=kind, **sections))
    try:
        assert kind in REGISTRY and provider.name == kind.value
    finally:
        provider.close()


def test_the_error_tree_drawn_in_the_provider_seam_is_the_one_defined() -> None:
    """Every provider error class is drawn in ``providers/base.py``'s tree, and only those."""
    drawn = set(re.findall(r"(Provider\w+)\s{2,}", base.__doc__ or ""))
    defined = {
        name
        for name, value in vars(base).items()
        if isinstance(value, type) and issubclass(value, Exception)
    }
    assert drawn == defined == {"ProviderError", "ProviderUnavailable", "ProviderLost"}


# --- delivery through faults --------------------------------------------------------------------


@over(SENDERS)
def test_a_30_percent_fault_rate_never_delivers_a_survey_twice(
    store: Store, service: Service
) -> None:
    """429s, 5xx, resets before and after the work, held answers (or SMTP's busy replies and
    dropped connections) on 30 % of calls, over two runs: each survey arrives once and is
    sent, or may have arrived and is held in doubt; only providers whose calls carry a key
    (or a connection lost before the content) leave nothing in doubt."""
    service.configure(store, attempts=20)
    store.extra["provider"]["batch_size"] = "4"
    service.fault_rate(0.3)
    customers(store, 40)
    run(store, service.http, NIGHT)
    run(store, service.http, NEXT_NIGHT)

    delivered = service.delivered()
    sent, doubtful = set(request_ids(store, "sent")), set(request_ids(store, "in_doubt"))
    assert set(delivered.values()) == {1}
    assert len(sent) + len(doubtful) == 40
    assert sent <= set(delivered) <= sent | doubtful
    assert bool(doubtful) is not service.retries_lost_answers


@over(HTTP)
@pytest.mark.parametrize(
    "fault", [RESET_BEFORE, RESET_AFTER, HOLD], ids=["reset-before", "reset-after", "held"]
)
def test_a_lost_answer_is_repeated_under_its_key_or_held_in_doubt(
    store: Store, service: HttpService, fault: Fault
) -> None:
    """A send whose answer never comes (a reset before or after the work, or an answer held
    until the client gives up) is repeated under its own key where the provider has one;
    elsewhere its surveys are in doubt, listed by `status`, and never sent again."""
    service.configure(store)
    customers(store, 3)
    service.http.fail(*service.send_call, fault)
    run(store, service.http, NIGHT)
    run(store, service.http, NEXT_NIGHT)

    delivered = service.delivered()
    assert set(delivered.values()) <= {1}
    if service.retries_lost_answers:
        assert statuses(store) == ["sent"] * 3 and len(delivered) == 3
        return
    doubtful = request_ids(store, "in_doubt")
    assert doubtful and statuses(store).count("sent") == 3 - len(doubtful)
    arrived = set(delivered) & set(doubtful)
    assert arrived == (set() if fault is RESET_BEFORE else set(doubtful))
    assert unsettled(store) == {(rid, "in_doubt", "c***@example.com") for rid in doubtful}
    listed = store.cli("status").output
    assert re.search(r"in_doubt\s.*c\*\*\*@example\.com", listed), listed


def renders_templates(kind: str) -> bool:
    provider = create(ProviderSettings(kind=ProviderKind(kind), **{kind: MINIMAL_SECTIONS[kind]}))
    try:
        return provider.renders_templates
    finally:
        provider.close()


@over(HTTP)
def test_a_provider_that_renders_its_templates_gets_their_data_and_none_of_our_body(
    store: Store, service: HttpService
) -> None:
    """With email.provider_templates, a provider that renders its own templates is sent the
    template and its data, and none of the text or HTML surveysync would write (so they are
    not rendered for it); the webhook, whose receiver may use either, gets both."""
    template_id = "4711" if service.kind == "brevo" else "nps-tpl"  # Brevo's are numbers
    service.configure(store)
    store.extra.setdefault("email", {})["provider_templates"] = f'{{ "*" = "{template_id}" }}'
    customers(store, 2)
    run(store, service.http, NIGHT)

    assert statuses(store) == ["sent"] * 2
    wire = b"".join(r.body for r in service.http.requests if r.method == "POST").decode()
    assert template_id in wire and "/u/" in wire  # the template and its unsubscribe link
    ours = "How likely are you to recommend"  # the built-in English body's question
    assert (ours in wire) is not renders_templates(service.kind)
    assert renders_templates(service.kind) is (service.kind != "webhook")


@over(KEYED)
def test_a_call_lost_then_the_provider_gone_stays_under_its_key(
    store: Store, service: HttpService
) -> None:
    """A send that may have gone through (reset after the work), then 503 until the retries
    run out: the run fails and its surveys stay `sending` under that call's key, never back
    to pending (a new call would carry them under a new key: twice); the next night repeats
    the call under that key and each survey arrives once."""
    service.configure(store, attempts=3)
    customers(store, 3)
    service.http.fail(*service.send_call, RESET_AFTER, status(503), status(503))
    with pytest.raises(SyncError, match="HTTP 503"):
        run(store, service.http, NIGHT)

    assert statuses(store) == ["sending"] * 3 and len(service.delivered()) == 3
    [(key,)] = store.ledger_rows("SELECT DISTINCT batch_key FROM requests")
    run(store, service.http, NEXT_NIGHT)

    assert statuses(store) == ["sent"] * 3 and set(service.delivered().values()) == {1}
    sends = [r for r in service.http.requests if (r.method, r.path) == service.send_call]
    assert len(sends) == 4 and {r.headers["idempotency-key"] for r in sends} == {key}


@over(HTTP)
def test_429_with_retry_after_and_5xx_are_retried_waiting_as_asked(
    store: Store, service: HttpService
) -> None:
    """A 429 with Retry-After, then 500, 502 and 503 on a send are retried, the first after
    the wait the provider asked for; each survey arrives once."""
    service.configure(store)
    customers(store, 3)
    retry_later = status(429, Retry_After="7")
    service.http.fail(*service.send_call, retry_later, status(500), status(502), status(503))
    with capture_logs() as logs:
        run(store, service.http, NIGHT)

    assert statuses(store) == ["sent"] * 3
    assert service.delivered() == Counter(dict.fromkeys(request_ids(store), 1))
    waits = [e["wait_s"] for e in logs if e["event"] == "http.retry"]
    assert waits[0] == 7.0 and len(waits) == 4


@over(WITH_LISTS)
def test_a_suppression_at_the_provider_is_read_through_faults_and_skips_the_sale(
    store: Store, service: HttpService
) -> None:
    """Reading the suppression list is harmless to repeat: through a reset before and after,
    a held answer and a 503 it is read, and the suppressed person's sale is skipped."""
    assert service.list_call is not None
    service.configure(store)
    service.suppress("c1@example.com")
    service.http.fail(*service.list_call, RESET_BEFORE, RESET_AFTER, HOLD, status(503))
    customers(store, 3)
    report = run(store, service.http, NIGHT)

    assert report.counts["sent"] == 2 and report.skipped == {"unsubscribed": 1}
    assert service.http.unplanned() == []  # every fault met the list, none a send


# --- a crash between send and settle ----------------------------------------------------------


@over(EVERYONE)
def test_a_crash_after_sending_then_a_restart_never_sends_twice(
    store: Store, service: Service
) -> None:
    """The power goes right after the provider took a call: on restart a provider with an
    idempotency key repeats the call under the same key (sent, once); for the others the
    call's surveys are in doubt, listed by `status`, and never sent again."""
    service.configure(store)
    customers(store, 3)
    crash_after_send(store, NIGHT)
    in_flight = request_ids(store, "sending")
    assert in_flight

    run(store, service.http, NIGHT + timedelta(minutes=5))
    run(store, service.http, NEXT_NIGHT)

    assert service.delivered() == Counter(dict.fromkeys(request_ids(store, None), 1))
    if service.repeats_after_crash:
        assert statuses(store) == ["sent"] * 3
        return
    assert request_ids(store, "in_doubt") == in_flight
    assert statuses(store).count("sent") == 3 - len(in_flight)
    assert unsettled(store) == {(rid, "in_doubt", "c***@example.com") for rid in in_flight}


@over([kind for kind in EVERYONE if kind != "brevo"])  # Brevo's key outlives a quick restart
def test_with_the_resend_policy_a_crashed_call_goes_out_again(
    store: Store, service: Service
) -> None:
    """sync.in_doubt = "resend" is the operator's choice of a possible duplicate over a lost
    survey: after a crash the call in flight is sent again and ends sent; only a provider
    with an idempotency key keeps that from making a duplicate."""
    service.configure(store)
    store.extra["sync"] = {"in_doubt": '"resend"'}
    customers(store, 3)
    crash_after_send(store, NIGHT)
    in_flight = set(request_ids(store, "sending"))

    run(store, service.http, NIGHT + timedelta(minutes=5))

    assert statuses(store) == ["sent"] * 3
    twice = {rid for rid, times in service.delivered().items() if times == 2}
    assert twice == (set() if service.repeats_after_crash else in_flight)


# --- secrets and check -------------------------------------------------------------------------


@over(SENDERS)
def test_the_key_never_reaches_the_logs_the_ledger_or_any_output(
    store: Store, service: Service
) -> None:
    """Through retried faults, a refused address and then a refused key, the key (or
    password) is in no log event, no ledger row and no command's output, and no log event
    holds a full address."""
    service.configure(store)
    service.trouble()
    customers(store, 3)
    add_sale(store, "BAD", service.bad_address)
    with capture_logs() as logs:
        run(store, service.http, NIGHT)
        service.configure(store, secret=f"{service.secrets[0]}-revoked")
        add_sale(store, "LATE", "late@example.com", day=21)
        failed = store.cli("sync")
    assert failed.exit_code != 0 and statuses(store).count("rejected") == 1
    assert statuses(store).count("pending") == 1  # a refused key rejects nobody

    logged = json.dumps(logs, default=str, ensure_ascii=False)
    shown = store.cli("status").output + store.cli("status", "--json").output
    for text in (logged, ledger_text(store), shown, failed.output, store.cli("check").output):
        assert not [secret for secret in service.secrets if secret in text]
    assert "@example.com" not in logged.replace("***@example.com", "")


@over(EVERYONE)
def test_check_says_ready_refused_or_unreachable_in_plain_words(
    store: Store, service: Service
) -> None:
    """`surveysync check` says the provider is ready, that it refused the key (or password),
    or that it cannot be reached, each on the provider line and without the key."""
    service.configure(store)
    store.use_own_values()
    ready = store.cli("check")
    assert ready.exit_code == 0, ready.output
    assert re.search(rf"^provider\s+ok\s+{service.kind}: .*{re.escape(service.ready_words)}",
                     ready.output, re.MULTILINE), ready.output  # fmt: skip

    if service.kind != "outbox":  # a folder has no key
        service.configure(store, secret=f"{service.secrets[0]}-wrong")
        refused = store.cli("check")
        assert refused.exit_code == 1 and service.refused_words in refused.output
        assert not [secret for secret in service.secrets if secret in refused.output]

    service.configure(store, reachable=False)
    unreachable = store.cli("check")
    assert unreachable.exit_code == 1 and service.unreachable_words in unreachable.output
    assert re.search(r"^provider\s+failed\s", unreachable.output, re.MULTILINE)
