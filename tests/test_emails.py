"""Survey emails through the whole pipeline: links that work, unsubscribes that hold, the
admin's preview and check, and operator templates that cannot break a night."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import surveysync.addresses
from surveysync.ledger import Ledger
from surveysync.links import link_signer, unsubscribe_by_link, verify_link
from surveysync.render import InvalidLink, LinkProblem, token_from
from tests.conftest import Store, local
from tests.hostile_corpus import INVALID_ADDRESSES, VALID_ADDRESSES

SURVEY_BASE = "https://survey.example/s"


def score_urls(message: EmailMessage, subtype: str = "plain") -> list[str]:
    part = message.get_body((subtype,))
    assert part is not None
    return re.findall(rf"{re.escape(SURVEY_BASE)}/[A-Za-z0-9._-]+", part.get_content())


def unsubscribe_url(message: EmailMessage) -> str:
    https, mailto = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
    assert mailto.startswith("mailto:")
    return str(https)


def open_ledger(store: Store) -> Ledger:
    settings = store.settings()
    return Ledger.open(settings.ledger.url.get_secret_value(), settings.store.id, None)


def one_sent_survey(store: Store, **customer: object) -> EmailMessage:
    store.customer("C1", **customer)  # type: ignore[arg-type]
    store.pos.sale("C1", datetime(2026, 11, 20, 10, 0))
    store.run(local(2026, 11, 20, 23))
    [message] = store.messages()
    return message


def test_each_score_link_names_this_request_and_its_score(store: Store) -> None:
    """The landing page learns the request, its store and the score from the link alone."""
    message = one_sent_survey(store)
    settings = store.settings()
    [request_id] = [row[0] for row in store.ledger_rows("SELECT id FROM requests")]
    ledger = open_ledger(store)
    try:
        for subtype in ("plain", "html"):
            verified = [
                verify_link(ledger, link_signer(settings.email), url, local(2026, 11, 21))
                for url in score_urls(message, subtype)
            ]
            assert [v.score for v in verified] == list(range(11))
            assert {(v.request.request_id, v.request.store) for v in verified} == {
                (request_id, "test")
            }
            assert {v.request.status for v in verified} == {"sent"}
    finally:
        ledger.close()


def test_a_link_to_a_request_the_ledger_does_not_know_is_refused(store: Store) -> None:
    """A correctly signed token for a request that is not in this ledger is 'unknown'."""
    one_sent_survey(store)
    settings = store.settings()
    signer = link_signer(settings.email)
    token = signer.score_token("f" * 32, 9, local(2026, 11, 21))
    ledger = open_ledger(store)
    try:
        with pytest.raises(InvalidLink) as refused:
            verify_link(ledger, signer, token, local(2026, 11, 21))
    finally:
        ledger.close()
    assert refused.value.problem is LinkProblem.UNKNOWN


def test_the_unsubscribe_link_stops_every_later_survey(store: Store) -> None:
    """After a click on the unsubscribe link, the person's next sale is skipped as unsubscribed,
    even once the cooldown has passed."""
    message = one_sent_survey(store)
    settings = store.settings()
    ledger = open_ledger(store)
    try:
        unsubscribe_by_link(
            ledger, link_signer(settings.email), unsubscribe_url(message), local(2026, 11, 21)
        )
    finally:
        ledger.close()
    later = store.pos.sale("C1", datetime(2027, 3, 1, 10, 0))
    store.run(local(2027, 3, 1, 23), since=local(2027, 3, 1, 0).date())
    assert store.decisions()[str(later)] == "unsubscribed"
    assert len(store.messages()) == 1


def test_support_can_unsubscribe_from_a_mailto_subject(store: Store) -> None:
    """`suppress add --link` takes the subject of a mailto unsubscribe and suppresses that
    person; `suppress list` then shows them, masked."""
    message = one_sent_survey(store)
    subject = message["List-Unsubscribe"].split("subject=", 1)[1].rstrip(">")
    result = store.cli("suppress", "add", "--link", subject)
    assert result.exit_code == 0, result.output
    assert "suppressed: c***@example.com" in result.output
    listed = store.cli("suppress", "list")
    assert "c***@example.com" in listed.output and "c1@example.com" not in listed.output


def test_a_tampered_link_changes_nothing(store: Store) -> None:
    """A link with one character changed is refused in plain words; no suppression is added."""
    message = one_sent_survey(store)
    url = unsubscribe_url(message)
    tampered = url[:-5] + ("A" if url[-5] != "A" else "B") + url[-4:]
    result = store.cli("suppress", "add", "--link", tampered)
    assert result.exit_code == 1
    assert "link refused (tampered" in result.output
    assert store.ledger_rows("SELECT * FROM suppressions") == []


def test_an_expired_link_is_refused(store: Store) -> None:
    """Past email.link_valid_days, a link no longer unsubscribes or scores."""
    message = one_sent_survey(store)
    settings = store.settings()
    token = token_from(unsubscribe_url(message))
    ledger = open_ledger(store)
    try:
        with pytest.raises(InvalidLink) as refused:
            verify_link(ledger, link_signer(settings.email), token, local(2026, 11, 20, 23) +
                        timedelta(days=61))  # fmt: skip
    finally:
        ledger.close()
    assert refused.value.problem is LinkProblem.EXPIRED


def test_a_customer_gets_the_survey_in_their_pos_language(store: Store) -> None:
    """A customer marked Slovenian in the POS gets the Slovenian email."""
    message = one_sent_survey(store, language="sl", first="Ana")
    assert message["Content-Language"] == "sl"
    assert message["Subject"] == ("Ana, kako ste bili zadovoljni z nakupom v trgovini Test Cycles?")
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Pozdravljeni, Ana!" in text and "(Centrum)" in text


HOSTILE = {
    "H1": "Eve\r\nBcc: all@example.com",
    "H2": "<script>alert(1)</script>",
    "H3": "Ø" * 500,
    "H4": "שרה \u202eevil",
    "H5": "🚲😀 Jo",
    "H6": '"Boss", <root@example.com>',
}


def test_hostile_names_arrive_as_inert_text(store: Store) -> None:
    """Names holding CR/LF, markup, quotes, RTL overrides, emoji or 500 characters each give
    one ordinary message to their own address and nobody else."""
    for customer_id, first in HOSTILE.items():
        store.customer(customer_id, first=first)
        store.pos.sale(customer_id, datetime(2026, 11, 20, 10, 0))
    store.run(local(2026, 11, 20, 23))
    messages = store.messages()
    assert store.recipients() == sorted(f"{c.lower()}@example.com" for c in HOSTILE)
    for message in messages:
        assert "Bcc" not in message and len(message.get_all("To")) == 1
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert "<script>" not in html and "\u202e" not in str(message["Subject"])
        assert len(score_urls(message, "html")) == 11


# --- admin: preview and check ----------------------------------------------------------------


def test_preview_shows_the_email_in_the_asked_language(store: Store, tmp_path: Path) -> None:
    """`preview --locale ko` prints the Korean headers and text; --html writes the HTML part."""
    html = tmp_path / "preview.html"
    result = store.cli("preview", "--locale", "ko", "--html", str(html))
    assert result.exit_code == 0, result.output
    assert "Subject: 민준님, Test Cycles 방문은 어떠셨나요?" in result.output
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in result.output
    assert "친구나 동료에게 Test Cycles을(를) 추천하실 가능성은" in result.output
    page = html.read_text("utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count(f'href="{SURVEY_BASE}/') == 11


def test_preview_of_an_unknown_locale_lists_the_available_ones(store: Store) -> None:
    """Asking for a language without templates is a usage error naming the ones there are."""
    result = store.cli("preview", "--locale", "fr")
    assert result.exit_code == 2
    assert "no templates for locale 'fr' (available: en, es, ko, nl, sl)" in result.output


def test_copied_templates_are_a_working_starting_point(store: Store, tmp_path: Path) -> None:
    """`preview --copy-templates` writes every built-in template; pointed at, it checks ok, and
    an edit there shows up in the next email."""
    folder = tmp_path / "my-templates"
    result = store.cli("preview", "--copy-templates", str(folder))
    assert result.exit_code == 0, result.output
    assert (folder / "ko" / "body.html").is_file() and (folder / "layout.txt").is_file()
    subject = folder / "en" / "subject.txt"
    subject.write_text("A quick question from {{ store_name }}", encoding="utf-8")
    store.extra["email"] = {"templates_dir": f'"{folder.as_posix()}"'}
    checked = store.cli("check")
    assert re.search(r"^templates ok\s+en, es, ko, nl, sl, custom folder", checked.output, re.M)
    assert one_sent_survey(store)["Subject"] == "A quick question from Test Cycles"


def test_a_broken_template_fails_check_but_not_the_night(store: Store, tmp_path: Path) -> None:
    """check names the broken file and line and exits 1; the sync still sends every survey,
    in the built-in wording."""
    (tmp_path / "t" / "en").mkdir(parents=True)
    (tmp_path / "t" / "en" / "body.html").write_text("<p>{% if first_name %}Hi</p>", "utf-8")
    store.extra["email"] = {"templates_dir": f'"{(tmp_path / "t").as_posix()}"'}
    checked = store.cli("check")
    assert checked.exit_code == 1
    assert re.search(r"^templates failed\s+en/body.html \(.*body.html:1\)", checked.output, re.M)
    message = one_sent_survey(store)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "How likely are you to recommend Test Cycles" in html
    assert len(score_urls(message, "html")) == 11


def test_each_address_is_checked_once_per_sale(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A night checks each sale's address once: the rules' check is the one the email is
    sent to (the syntax check costs as much as building the message did). A plain ASCII
    address is decided without email-validator's full parse."""
    checked: list[str] = []
    parsed: list[str] = []
    plain, validate = surveysync.addresses.accept_plain, surveysync.addresses.validate_email

    def counting_plain(text: str) -> Any:
        checked.append(text)
        return plain(text)

    def counting(text: str, **options: Any) -> Any:
        parsed.append(text)
        return validate(text, **options)

    monkeypatch.setattr(surveysync.addresses, "accept_plain", counting_plain)
    monkeypatch.setattr(surveysync.addresses, "validate_email", counting)
    for n, address in enumerate(["kim@example.com", "Jürgen@Bücher.Example", "bad@@x"]):
        store.customer(f"C{n}", address)
        store.pos.sale(f"C{n}", datetime(2026, 11, 20, 10, 0))
    store.run(local(2026, 11, 20, 23))
    assert store.recipients() == ["Jürgen@xn--bcher-kva.example", "kim@example.com"]
    assert sorted(checked) == sorted(["kim@example.com", "Jürgen@Bücher.Example", "bad@@x"])
    assert sorted(parsed) == sorted(["Jürgen@Bücher.Example", "bad@@x"])


_ADDRESS_PIECES = st.sampled_from(
    ["kim", "K", "0", "_", "+", "-", ".", "..", "@", "x", "Z9", "é", " ", "xn--", "--", "a" * 63]
)
_TOP_LEVEL = st.sampled_from(["com", "NL", "local", "test", "Onion", "c", "c0m", "1", "x" * 64])


@given(
    local_part=st.lists(_ADDRESS_PIECES, min_size=0, max_size=5).map("".join),
    labels=st.lists(_ADDRESS_PIECES, min_size=0, max_size=4).map("".join),
    top=_TOP_LEVEL,
)
def test_a_plain_address_is_accepted_as_the_full_check_accepts_it(
    local_part: str, labels: str, top: str
) -> None:
    """The shortcut for plain ASCII addresses answers as email-validator's full parse: the
    same address to send to and to match by, and never a yes where the full check says no."""
    for raw in (f"{local_part}@{labels}.{top}", f"{local_part}@{top}", local_part):
        assert_same_answer(raw)


@pytest.mark.parametrize(
    "raw",
    [a.format(n=1) for a in VALID_ADDRESSES] + INVALID_ADDRESSES + ["kim@Example.Local"],
)
def test_the_corpus_addresses_get_the_same_answer_from_the_shortcut(raw: str) -> None:
    assert_same_answer(raw)


def assert_same_answer(raw: str) -> None:
    shortcut = surveysync.addresses.accept_plain(raw)
    try:
        full = surveysync.addresses.accept_parsed(raw)
    except ValueError:
        assert shortcut is None, raw
        return
    assert shortcut in (None, full), raw
