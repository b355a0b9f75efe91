"""Settings that still hold the example values of `surveysync init`'s file, for ``check``.

A file straight from ``init`` validates (every value in it is well formed) but would send
surveys from a made-up domain, signed with a secret anyone can read in this package. Found:

    placeholders     the example file's own values: the link secret, the store's name (as
                     ``store.name`` and ``email.from_name``), and the demo's POS as ``pos.url``
    example domains  a sender or alert address, or a link in the emails, on a domain reserved
                     for examples (RFC 2606: example.com, .net, .org, and the .example, .test
                     and .invalid top-level domains), whichever value it is (a provider's
                     own settings are checked by asking the provider)

A setting left out of the file holds the same built-in value and is found the same way. Reads
settings only; never shows a secret.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from surveysync.config import Settings, SqlPosSettings, example_config_text

_EXAMPLE_TLDS = frozenset({"example", "test", "invalid"})
_EXAMPLE_DOMAINS = frozenset({"example.com", "example.net", "example.org"})
_DEMO_POS = ("surveysync-demo", "pos.sqlite")
_NEW_SECRET = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'


@dataclass(frozen=True, slots=True)
class ExampleValue:
    """One setting that still holds an example value: what it holds (never a secret's value)
    and what to put there instead."""

    setting: str
    shown: str
    advice: str

    def __str__(self) -> str:
        return f"{self.setting} holds an example value, {self.shown}: set {self.advice}"


def example_values(settings: Settings) -> list[ExampleValue]:
    """Every setting of ``settings`` that holds an example value, in the file's order."""
    return [*_placeholders(settings), *_on_example_domains(settings)]


@cache
def _init_file() -> dict[str, Any]:
    return tomllib.loads(example_config_text())


def _placeholders(settings: Settings) -> Iterator[ExampleValue]:
    written = _init_file()
    example_name = written["store"]["name"]
    if settings.store.name == example_name:
        yield ExampleValue(
            "store.name", repr(example_name), "the store's name as customers know it"
        )
    if _reads_the_demo_pos(settings):
        yield ExampleValue("pos.url", "the demo's POS", "the URL of the store's POS database")
    if settings.email.from_name == written["email"]["from_name"]:
        yield ExampleValue("email.from_name", repr(example_name), "the sender's name in emails")
    if settings.email.link_secret.get_secret_value() == written["email"]["link_secret"]:
        yield ExampleValue(
            "email.link_secret",
            "the secret printed in the example file (anyone could forge the emails' links)",
            f"a secret of your own, ideally through link_secret_file; make one with: {_NEW_SECRET}",
        )


def _reads_the_demo_pos(settings: Settings) -> bool:
    """``pos.url`` names the demo's SQLite file (wherever its folder is resolved from)."""
    if not isinstance(settings.pos, SqlPosSettings):
        return False
    url = settings.pos.url.get_secret_value()
    if not url.startswith("sqlite:"):
        return False
    return PurePosixPath(url.replace("\\", "/")).parts[-2:] == _DEMO_POS


def _on_example_domains(settings: Settings) -> Iterator[ExampleValue]:
    for setting, value in _addresses_and_links(settings):
        host = _host_of(value)
        if host is not None and is_example_domain(host):
            shown = f"{value!r} (a domain reserved for examples)"
            yield ExampleValue(setting, shown, _advice(setting))


def _addresses_and_links(settings: Settings) -> Iterator[tuple[str, str]]:
    """(setting, value) of each address and link the configured store uses."""
    email = settings.email
    yield "email.from_address", email.from_address
    if email.reply_to:
        yield "email.reply_to", email.reply_to
    yield "email.unsubscribe_mailto", email.unsubscribe_mailto
    yield "email.survey_base_url", email.survey_base_url
    yield "email.unsubscribe_base_url", email.unsubscribe_base_url
    if settings.review.url and settings.review.reminder_days > 0:
        yield "email.review_base_url", email.review_base_url  # only review reminders link it
    for setting, optional in (
        ("web.public_url", settings.web.public_url),
        ("review.url", settings.review.url),
    ):
        if optional:
            yield setting, optional
    yield from (("alerts.to", address) for address in settings.alerts.to)


def _host_of(value: str) -> str | None:
    """The domain of an address (``a@b``) or of a link (``https://b/...``)."""
    if "://" not in value:
        return value.rpartition("@")[2] or None
    return urlsplit(value).hostname


def is_example_domain(host: str) -> bool:
    """True for a domain reserved for examples and tests (RFC 2606), or one under it."""
    labels = host.lower().rstrip(".").split(".")
    if labels[-1] in _EXAMPLE_TLDS:
        return True
    return ".".join(labels[-2:]) in _EXAMPLE_DOMAINS


_ADVICE = {
    "email.from_address": "the address surveys are sent from, on the store's own domain",
    "email.reply_to": "where customers' replies should go",
    "email.unsubscribe_mailto": "an address of the store's that receives unsubscribe emails",
    "alerts.to": "the store manager's address",
    "web.public_url": "the address customers reach the survey page at",
    "review.url": "the store's review page (for example its Google review link)",
}


def _advice(setting: str) -> str:
    # Every other setting found here is a link to the survey page.
    return _ADVICE.get(
        setting, "the survey page's public address (or web.public_url, which sets every link)"
    )
