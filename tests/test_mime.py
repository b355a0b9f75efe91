"""The survey email's bytes (``render.mime``) mean exactly what the email package's builder
wrote before (tests/mime_reference.py): parsed back with the strict policy, every header and
both parts' content are the same, over every built-in locale, the hostile names and
addresses, and bodies with every kind of line end, trailing space and non-ASCII."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from datetime import UTC, datetime, timedelta, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveysync.config import EmailSettings, StoreSettings
from surveysync.render import Renderer, SurveyEmail, deliverable
from tests.hostile_corpus import NAMES, VALID_ADDRESSES
from tests.mime_reference import stdlib_bytes
from tests.test_render import HOSTILE_NAMES

STRICT = email.policy.default.clone(raise_on_defect=True)
NOW = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
LOCALES = ("en", "nl", "es", "ko", "sl")
ADDRESSES = [a.format(n=7) for a in VALID_ADDRESSES]
RENDERER = Renderer(StoreSettings(name="Test Cycles", default_locale="nl"), EmailSettings())


def parsed(raw: bytes) -> EmailMessage:
    """As a mail client reads it: headers in UTF-8 (RFC 6532) for a non-ASCII local part."""
    message = email.message_from_string(raw.decode("utf-8"), policy=STRICT)
    assert isinstance(message, EmailMessage)
    return message


def meaning(raw: bytes) -> dict[str, Any]:
    """What a reader of the message gets: each header as parsed (addresses as pairs, the date
    as a datetime), and each part's type, charset and decoded content."""
    message = parsed(raw)
    fields: dict[str, Any] = {}
    for name, value in message.items():
        if name == "Content-Type":  # the boundary is random; the rest must match
            fields[name] = (value.content_type, value.params.keys() - {"boundary"})
        elif hasattr(value, "addresses"):
            fields[name] = [(a.display_name, a.addr_spec) for a in value.addresses]
        elif hasattr(value, "datetime"):
            fields[name] = value.datetime
        else:
            fields[name] = str(value)
    parts = [
        (
            part.get_content_type(),
            part.get_content_charset(),
            part["Content-Transfer-Encoding"],
            part["MIME-Version"],
            part.get_content(),
        )
        for part in message.iter_parts()
    ]
    return {"headers": sorted(fields.items()), "parts": parts}


def assert_same_meaning(message: SurveyEmail) -> bytes:
    raw = message.to_bytes()
    assert meaning(raw) == meaning(stdlib_bytes(message))
    header, body = raw.split(b"\r\n\r\n", 1)
    assert all(len(line) <= 998 for line in header.split(b"\r\n"))
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))  # RFC 2045
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    return raw


def survey(first: str | None, last: str | None, address: str, locale: str) -> SurveyEmail:
    payload = {"first_name": first, "last_name": last, "language": locale}
    return RENDERER.render("0123456789abcdef0123456789abcdef", address, payload, NOW)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("address", ADDRESSES)
def test_every_locale_and_address_means_what_the_email_package_wrote(
    locale: str, address: str
) -> None:
    raw = assert_same_meaning(survey("Mira", "Novak", address, locale))
    [to] = parsed(raw)["To"].addresses
    assert to.addr_spec == deliverable(address).addr_spec


@pytest.mark.parametrize(("first", "last"), NAMES + [(n, None) for n in HOSTILE_NAMES])
def test_hostile_names_mean_what_the_email_package_wrote(
    first: str | None, last: str | None
) -> None:
    """Header injection attempts, CR/LF, very long names, encoded-word look-alikes, RTL
    overrides: the same single recipient and the same display name as before."""
    for address in ("kim@example.com", "민준.1@bücher.example"):
        raw = assert_same_meaning(survey(first, last, address, "en"))
        message = parsed(raw)
        assert len(message.get_all("To") or []) == 1 and "Bcc" not in message


def test_reply_to_and_an_internal_email_without_unsubscribe_headers() -> None:
    """A Reply-To, a sender named in non-ASCII, another time zone, and an alert-like email
    (no List-Unsubscribe) keep their meaning too."""
    message = dataclasses.replace(
        survey("Ana", "Kovač", "ana@example.si", "sl"),
        reply_to="help@demo-cycles.example",
        sender=Address(display_name="Kolesa Žiga", addr_spec="feedback@demo-cycles.example"),
        date=datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=2))),
    )
    raw = assert_same_meaning(message)
    assert parsed(raw)["Reply-To"].addresses[0].addr_spec == "help@demo-cycles.example"
    internal = dataclasses.replace(message, unsubscribe_url=None, unsubscribe_mailto=None)
    assert "List-Unsubscribe" not in parsed(assert_same_meaning(internal))


BODIES = [
    "",
    "one line without an end",
    "crlf\r\nlines\r\n",
    "lone\rcarriage\rreturns\r",
    "mixed\r\n\n\r\rends\n\n\n",
    "trailing spaces   \ntrailing tab\t\n",
    ".\n..\nFrom the start\n>From\n--boundary-looking\n--===============1==\n",
    "= equals =3D =?utf-8?b?x?= =\n",
    "x" * 500 + "\n" + "é" * 300 + "\n" + "민" * 200,
    "\x00nul \x07bell \x0bvt \x0cff \x1cfs \x85nel \u2028ls \u2029ps\n",
    "🚲😀 " * 40,
    '<html>\r\n<body style="x">\r\n  <a href="https://x/?a=1&b=2">x</a>\r\n</body></html>',
]


@pytest.mark.parametrize("body", BODIES)
def test_bodies_with_any_line_ends_decode_as_before(body: str) -> None:
    message = survey("Mira", "Novak", "mira@example.com", "en")
    assert_same_meaning(dataclasses.replace(message, text=body, html=body))


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(st.characters(blacklist_categories=["Cs"]), max_size=400),
    html=st.text(alphabet=st.sampled_from("ab =\t\r\n.-é민😀<>\"'"), max_size=400),
    name=st.text(max_size=120),
)
def test_any_body_and_name_mean_what_the_email_package_wrote(
    text: str, html: str, name: str
) -> None:
    message = survey(name, None, "mira@example.com", "en")
    assert_same_meaning(dataclasses.replace(message, text=text, html=html))


def test_a_line_break_smuggled_into_a_verbatim_header_is_refused() -> None:
    message = survey("Mira", "Novak", "mira@example.com", "en")
    bad = dataclasses.replace(message, request_id="x\r\nBcc: victim@example.com")
    with pytest.raises(ValueError, match="line break"):
        bad.to_bytes()
