"""The demo points at the survey page: its config serves the page on this machine, its
emails link there, and it says how to start the page and which link to open."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from surveysync import demo, links
from surveysync.config import load_settings
from surveysync.ledger import open_ledger
from tests.conftest import Store, local


def test_the_demo_config_serves_the_page_its_links_open_on(tmp_path: Path) -> None:
    """The demo's links are built from its [web] public_url, on 127.0.0.1:8080."""
    config = tmp_path / "surveysync.toml"
    text = demo.demo_config_toml(tmp_path, tmp_path / "outbox", datetime(2026, 1, 1))
    config.write_text(text, encoding="utf-8")
    settings = load_settings(config)
    assert settings.web.public_url == "http://127.0.0.1:8080" and settings.web.port == 8080
    assert settings.email.survey_base_url == "http://127.0.0.1:8080/s"
    assert settings.email.unsubscribe_base_url == "http://127.0.0.1:8080/u"


def test_the_demo_tells_how_to_start_the_page_and_a_real_link_to_open(store: Store) -> None:
    """After the nights, the demo prints the `web` command and a score link from the outbox
    that the page accepts."""
    store.extra["web"] = {"public_url": '"http://127.0.0.1:8080"'}
    store.customer("C1")
    store.pos.sale("C1", local(2026, 3, 10, 12))
    store.run(local(2026, 3, 10, 23))
    config = Path("surveysync-demo/surveysync.toml")
    lines = demo.page_hint(config, store.outbox)
    assert lines[1].strip() == "surveysync --config surveysync-demo/surveysync.toml web"
    link = lines[-1].strip()
    assert link.startswith("http://127.0.0.1:8080/s/")
    settings = store.settings()
    ledger = open_ledger(settings)
    try:
        verified = links.verify_link(
            ledger, links.link_signer(settings.email), link, local(2026, 3, 11)
        )
    finally:
        ledger.close()
    assert verified.score == 9
