"""Survey emails as a customer sees them: language, wording, links, and what cannot be forged."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import re
from datetime import UTC, datetime, timedelta
from email.header import decode_header
from pathlib import Path
from typing import Any

import pytest
from itsdangerous import Signer
from jinja2 import Template
from structlog.testing import capture_logs

from surveysync.config import EmailSettings, StoreSettings
from surveysync.render import (
    InvalidLink,
    LinkProblem,
    LinkSigner,
    Renderer,
    SurveyEmail,
    token_from,
)
from surveysync.render.korean import particle
from surveysync.render.tokens import LINK_SALT, SCORES

NOW = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
REQUEST = "0123456789abcdef0123456789abcdef"
LOCALES = ("en", "nl", "es", "ko", "sl")
# The NPS question, as each locale's template must ask it.
QUESTION = {
    "en": "How likely are you to recommend Test Cycles to a friend or colleague?",
    "nl": "Hoe waarschijnlijk is het dat u Test Cycles zou aanbevelen aan een vriend of collega?",
    "es": "¿Qué probabilidad hay de que recomiende Test Cycles a un amigo o colega?",
    "ko": "친구나 동료에게 Test Cycles을(를) 추천하실 가능성은 얼마나 되나요?",
    "sl": "Kako verjetno je, da bi trgovino Test Cycles priporočili prijatelju ali sodelavcu?",
}
GREETING = {
    "en": "Hi Mira,",
    "nl": "Beste Mira,",
    "es": "Hola, Mira:",
    "ko": "Mira님",
    "sl": "Mira!",
}
NEUTRAL_GREETING = {
    "en": "Hello,",
    "nl": "Beste klant,",
    "es": "Hola:",
    "ko": "고객님",
    "sl": "Pozdravljeni!",
}


def renderer(templates_dir: Path | None = None, **email: object) -> Renderer:
    store = StoreSettings(name="Test Cycles", default_locale="nl")
    return Renderer(store, EmailSettings(templates_dir=templates_dir, **email))  # type: ignore[arg-type]


def render(r: Renderer, first_name: str | None = "Mira", **payload: object) -> SurveyEmail:
    data = {"first_name": first_name, "last_name": "Novak", "location_name": "Centrum", **payload}
    return r.render(REQUEST, "mira@example.com", data, NOW)


def links(part: str, base: str) -> list[str]:
    return re.findall(rf"{re.escape(base)}/[A-Za-z0-9._-]+", part)


def score_links(message: SurveyEmail) -> dict[str, list[str]]:
    return {
        "text": links(message.text, "https://survey.example/s"),
        "html": links(message.html, "https://survey.example/s"),
    }


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("first_name", ["Mira", None])
def test_every_built_in_locale_renders_a_complete_email(
    locale: str, first_name: str | None
) -> None:
    """Each language has its own subject, greeting, NPS question, 11 scores and unsubscribe."""
    r = renderer()
    message = render(r, first_name, language=locale)
    signer = r.signer

    assert message.locale == locale
    assert message.subject and "{" not in message.subject
    greeting = GREETING[locale] if first_name else NEUTRAL_GREETING[locale]
    for part in (message.text, message.html.replace("<bdi>", "").replace("</bdi>", "")):
        assert greeting in part
        assert QUESTION[locale] in part
        assert "Centrum" in part
        assert message.unsubscribe_url in part
        assert "{{" not in part and "{%" not in part
    for part_links in score_links(message).values():
        scores = [signer.read(token_from(url), NOW).score for url in part_links]
        assert scores == list(range(11))
    assert f'<html lang="{locale}">' in message.html


def test_the_language_comes_from_the_pos_else_the_store_default() -> None:
    """A Korean customer gets Korean; no language or an unknown one gets the store's default."""
    r = renderer()
    assert render(r, language="ko").locale == "ko"
    assert render(r, language=None).locale == "nl"
    assert render(r, language="de").locale == "nl"


def test_korean_particles_follow_the_last_sound() -> None:
    """을/를 and friends agree with the name before them; an unknown sound gets both forms."""
    assert particle("민준", "을/를") == "민준을"
    assert particle("마트", "을/를") == "마트를"
    assert particle("서울", "으로/로") == "서울로"
    assert particle("부산", "으로/로") == "부산으로"
    assert particle("7", "이/가") == "7이"
    assert particle("Demo Cycles", "은/는") == "Demo Cycles은(는)"
    with pytest.raises(ValueError, match="unknown particle"):
        particle("x", "의/에")


# --- tokens --------------------------------------------------------------------------------


def test_a_link_token_names_its_request_and_score() -> None:
    """Every score link reads back as this request and its own score; unsubscribe as None."""
    r = renderer()
    message = render(r)
    claim = r.signer.read(token_from(message.unsubscribe_url), NOW)
    assert (claim.request_id, claim.score, claim.is_unsubscribe) == (REQUEST, None, True)
    assert claim.expires_at == NOW + timedelta(days=60)


def test_changing_any_character_of_a_token_makes_it_invalid() -> None:
    """One changed character anywhere (id, score, expiry or signature) is refused as tampered."""
    signer = LinkSigner("secret", timedelta(days=60))
    token = signer.score_token(REQUEST, 3, NOW)
    for i, char in enumerate(token):
        for replacement in {"A", "0", "-"} - {char}:
            forged = token[:i] + replacement + token[i + 1 :]
            with pytest.raises(InvalidLink) as refused:
                signer.read(forged, NOW)
            assert refused.value.problem is LinkProblem.TAMPERED, (i, forged)


def test_links_already_sent_keep_working() -> None:
    """The key is derived once per signer now; the tokens are still exactly those of
    itsdangerous' own Signer (as every link already in a mailbox was signed), both ways."""
    plain = Signer("s" * 32, salt=LINK_SALT, digest_method=hashlib.sha256)
    ours = LinkSigner("s" * 32, timedelta(days=60))
    expires = int((NOW + timedelta(days=60)).timestamp())
    for score in SCORES:
        token = ours.score_token(REQUEST, score, NOW)
        assert token == plain.sign(f"{REQUEST}.{score}.{expires}").decode("ascii")
    old = plain.sign(f"{REQUEST}.u.{expires}").decode("ascii")
    assert ours.read(old, NOW).is_unsubscribe


def test_a_better_score_cannot_be_forged_by_editing_the_link() -> None:
    """Turning a 3 into a 10 in the link is caught: the score is inside the signature."""
    signer = LinkSigner("secret", timedelta(days=60))
    token = signer.score_token(REQUEST, 3, NOW)
    forged = token.replace(f"{REQUEST}.3.", f"{REQUEST}.10.")
    with pytest.raises(InvalidLink, match="tampered"):
        signer.read(forged, NOW)


def test_a_token_from_another_install_or_too_old_is_refused() -> None:
    """Another secret's token is tampered; our own after link_valid_days is expired."""
    ours = LinkSigner("secret", timedelta(days=60))
    theirs = LinkSigner("other secret", timedelta(days=60))
    with pytest.raises(InvalidLink) as refused:
        ours.read(theirs.unsubscribe_token(REQUEST, NOW), NOW)
    assert refused.value.problem is LinkProblem.TAMPERED
    token = ours.unsubscribe_token(REQUEST, NOW)
    assert ours.read(token, NOW + timedelta(days=59, hours=23)).request_id == REQUEST
    with pytest.raises(InvalidLink) as refused:
        ours.read(token, NOW + timedelta(days=60))
    assert refused.value.problem is LinkProblem.EXPIRED


def test_a_token_is_found_in_a_link_a_mailto_subject_or_on_its_own() -> None:
    """Support can paste a whole link, the mailto subject, or just the token."""
    r = renderer()
    message = render(r)
    token = token_from(message.unsubscribe_url)
    subject = message.unsubscribe_mailto.split("subject=", 1)[1]
    assert token_from(subject) == token
    assert token_from(f"  {message.unsubscribe_url}?utm=x ") == token
    assert token_from(token) == token


# --- custom templates ------------------------------------------------------------------------


def write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_an_operator_template_replaces_the_built_in_one(tmp_path: Path) -> None:
    """A subject.txt in templates_dir/nl is used; the rest of nl stays built in."""
    write(tmp_path, "nl/subject.txt", "Uw mening over {{ store_name }}, {{ first_name }}?")
    r = renderer(tmp_path)
    message = render(r, language="nl")
    assert message.subject == "Uw mening over Test Cycles, Mira?"
    assert QUESTION["nl"] in message.text
    assert r.templates.problems == []


def test_an_operator_folder_can_add_a_language(tmp_path: Path) -> None:
    """A complete de/ folder (on the built-in layout) serves German customers."""
    write(tmp_path, "de/subject.txt", "Wie war Ihr Besuch bei {{ store_name }}?")
    write(
        tmp_path,
        "de/body.txt",
        '{% extends "layout.txt" %}{% block question %}Wie wahrscheinlich ist es, dass Sie '
        "{{ store_name }} weiterempfehlen?{% endblock %}{% block unsubscribe %}Abmelden"
        "{% endblock %}",
    )
    write(
        tmp_path,
        "de/body.html",
        '{% extends "layout.html" %}{% block unsubscribe %}Abmelden{% endblock %}',
    )
    r = renderer(tmp_path)
    message = render(r, language="de")
    assert message.locale == "de"
    assert message.subject == "Wie war Ihr Besuch bei Test Cycles?"
    assert "weiterempfehlen" in message.text
    assert len(score_links(message)["html"]) == 11


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("nl/body.html", "{% if first_name %}Hallo", "nl/body.html:1"),
        ("nl/body.txt", "{{ first_nmae }}", "'first_nmae' is undefined"),
        ("nl/subject.txt", "{# nothing #}", "the subject is empty"),
        ("nl/body.html", "<p>{{ unsubscribe_url }}</p>", "score links for 0, 1, 2"),
        ("layout.html", "<p>{{ store_name }}", "the score links"),
    ],
)
def test_a_broken_operator_template_is_reported_and_the_built_in_one_used(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    """A syntax error, a typo'd variable or a missing link is a problem naming the file; the
    email still goes out, in the built-in wording, with every link. The next night's
    renderer in the same process (checks are kept, not redone) reports it again."""
    write(tmp_path, name, text)
    with capture_logs() as logs:
        r = renderer(tmp_path)
    assert r.templates.problems
    assert all(expected in str(problem) for problem in r.templates.problems)
    message = render(r, language="nl")
    assert QUESTION["nl"] in message.text and QUESTION["nl"] in message.html
    assert len(score_links(message)["text"]) == 11
    assert message.unsubscribe_url in message.text
    assert any(e["event"] == "render.template_broken" for e in logs)
    with capture_logs() as next_night:
        again = renderer(tmp_path)
    assert again.templates.problems == r.templates.problems
    broken = [e for e in next_night if e["event"] == "render.template_broken"]
    assert len(broken) == len(r.templates.problems)


def test_a_broken_layout_is_named_as_the_broken_file(tmp_path: Path) -> None:
    """A layout.html that drops the unsubscribe link is one problem, naming layout.html, not
    one per locale's body.html that extends it."""
    builtin = (Path(__file__).parents[1] / "src/surveysync/templates/layout.html").read_text()
    write(tmp_path, "layout.html", builtin.replace("{{ unsubscribe_url }}", "#"))
    r = renderer(tmp_path)
    assert [p.template for p in r.templates.problems] == ["layout.html"]
    assert "unsubscribe link is missing" in str(r.templates.problems[0])


def test_an_edited_custom_template_is_used_by_the_next_renderer(tmp_path: Path) -> None:
    """Compiled templates are kept between nights, but an operator's edit is used the next
    night even when the file keeps its size and modification time."""
    write(tmp_path, "nl/subject.txt", "Hoi {{ first_name }}, versie A")
    path = tmp_path / "nl" / "subject.txt"
    stamp = path.stat()
    assert render(renderer(tmp_path), language="nl").subject == "Hoi Mira, versie A"
    assert render(renderer(tmp_path), language="nl").subject == "Hoi Mira, versie A"
    path.write_text("Hoi {{ first_name }}, versie B", encoding="utf-8")
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert render(renderer(tmp_path), language="nl").subject == "Hoi Mira, versie B"


def test_the_next_nights_renderer_does_not_check_the_same_templates_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every template is checked by rendering it with sample data, once per process and per
    content: the next night's renderer checks nothing again, unless the operator's folder
    has changed since."""
    renders: list[str] = []
    original = Template.render

    def counted(self: Template, *args: Any, **kwargs: Any) -> str:
        renders.append(str(self.name))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Template, "render", counted)
    write(tmp_path, "nl/subject.txt", "Hoi {{ first_name }}, versie A")
    renderer(tmp_path)
    renders.clear()
    renderer(tmp_path)
    renderer()
    assert renders == []
    write(tmp_path, "nl/subject.txt", "Hoi {{ first_name }}, versie B")
    renderer(tmp_path)
    assert "nl/subject.txt" in renders


def test_a_custom_template_failing_on_one_customer_falls_back_for_that_email(
    tmp_path: Path,
) -> None:
    """A template that only breaks on some data (here: a long name) is replaced at send time."""
    write(
        tmp_path,
        "nl/subject.txt",
        "{% if first_name|length > 20 %}{{ 1 // 0 }}{% endif %}Hoi {{ first_name }}",
    )
    r = renderer(tmp_path)
    assert render(r, "Mira", language="nl").subject == "Hoi Mira"
    with capture_logs() as logs:
        message = render(r, "M" * 30, language="nl")
    assert message.subject.startswith("M" * 30)
    assert [e["template"] for e in logs if e["event"] == "render.template_failed"] == [
        "nl/subject.txt"
    ]


# --- provider templates ----------------------------------------------------------------------


def test_a_provider_template_gets_the_same_data_as_the_local_templates() -> None:
    """With a provider template id per locale, the email carries it and the same links."""
    r = renderer(provider_templates={"*": "d-all", "ko": "d-ko"})
    korean = render(r, language="ko")
    dutch = render(r, language="nl")
    assert korean.provider_template is not None and dutch.provider_template is not None
    assert (korean.provider_template.template_id, dutch.provider_template.template_id) == (
        "d-ko",
        "d-all",
    )
    data = json.loads(json.dumps(korean.provider_template.data))
    assert data["first_name"] == "Mira" and data["store_name"] == "Test Cycles"
    assert data["location_name"] == "Centrum" and data["locale"] == "ko"
    assert [s["url"] for s in data["scores"]] == score_links(korean)["text"]
    assert data["unsubscribe_url"] == korean.unsubscribe_url
    assert render(renderer(), language="ko").provider_template is None


def test_for_a_provider_that_renders_its_templates_only_the_subject_is_rendered_here() -> None:
    """A provider that renders its own templates sends their data, never our text or HTML:
    those are not rendered for it. A locale without a provider template, or a provider
    that wants both (the webhook), still gets the whole email."""
    settings = EmailSettings(provider_templates={"nl": "d-nl"})
    store = StoreSettings(name="Test Cycles", default_locale="nl")
    remote = Renderer(store, settings, remote_bodies=True)
    dutch, english = render(remote, language="nl"), render(remote, language="en")
    local = render(Renderer(store, settings), language="nl")

    assert (dutch.text, dutch.html) == ("", "")
    assert dutch.subject == local.subject != ""
    assert dutch.provider_template == local.provider_template
    assert dutch.provider_template is not None
    assert english.provider_template is None and QUESTION["en"] in english.text
    assert QUESTION["nl"] in local.text and QUESTION["nl"] in local.html


# --- the message on the wire -----------------------------------------------------------------


HOSTILE_NAMES = [
    "Robert\r\nBcc: victim@example.com",
    'Ann "the boss" O\'Neil, <admin@example.com>',
    "<script>alert('x')</script>",
    "Ö" * 500,
    "מרים \u202egnp.exe",
    "🚲 Mira 😀",
    "민준",
    "=?utf-8?q?Injected?=",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_name_stays_inert_text(name: str) -> None:
    """Nothing in a name adds a header, changes the MIME structure, or runs as HTML."""
    message = render(renderer(), name, language="en")
    raw = message.to_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)

    assert sorted(parsed.keys()) == sorted(
        [
            "From", "To", "Subject", "Date", "MIME-Version", "Content-Type", "Message-ID",
            "List-Unsubscribe", "List-Unsubscribe-Post", "Content-Language", "X-Surveysync-Request",
        ]
    )  # fmt: skip
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    [to] = parsed["To"].addresses
    assert to.addr_spec == "mira@example.com"
    assert "\n" not in str(parsed["Subject"]) and "\r" not in to.display_name
    assert "\u202e" not in to.display_name and "\u202e" not in parsed["Subject"]
    html = parsed.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert parsed["X-Surveysync-Request"] == REQUEST
    if name.startswith("<script>"):
        assert "&lt;script&gt;" in html
    if name.startswith("=?"):  # shown as typed, never decoded as an encoded word
        assert to.display_name.startswith("= ?utf-8?q?Injected?=")


def test_long_headers_are_never_refolded_and_encoded_words_stay_short() -> None:
    """List-Unsubscribe is one line with its https and mailto URIs; a long Hangul subject
    becomes RFC 2047 words of at most 75 characters."""
    message = render(renderer(), "민준ü" * 40, language="ko")
    raw = message.to_bytes().decode("ascii")
    header_block = raw.split("\r\n\r\n", 1)[0]
    [unsubscribe] = [
        line for line in header_block.split("\r\n") if line.startswith("List-Unsubscribe:")
    ]
    assert unsubscribe == (
        f"List-Unsubscribe: <{message.unsubscribe_url}>, <{message.unsubscribe_mailto}>"
    )
    words = re.findall(r"=\?utf-8\?[bq]\?[^?]*\?=", header_block)
    assert words and all(len(word) <= 75 for word in words)
    for word in words:  # each word holds whole characters (RFC 2047 section 5)
        [(data, _charset)] = decode_header(word)
        assert isinstance(data, bytes) and data.decode("utf-8")
    body_lines = raw.split("\r\n\r\n", 1)[1].split("\r\n")
    assert all(len(line) <= 78 for line in body_lines)  # quoted-printable keeps to 76 + "="
    parsed = email.message_from_string(raw, policy=email.policy.default)
    assert parsed["Subject"] == message.subject
