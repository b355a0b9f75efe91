"""What support reads: stable events, and never an email address or a secret."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime

import structlog

from surveysync import logging as logs
from surveysync.config import load_settings
from tests.conftest import Store, local

FULL_EMAIL = re.compile(r"[A-Za-z0-9._%+-]*[A-Za-z0-9]{2}@[A-Za-z0-9.-]+\.[a-z]{2,}")


def test_a_full_run_logs_stable_events_without_addresses_or_secrets(store: Store) -> None:
    """Every line of a run's log is JSON, names its run, and holds no address or secret."""
    store.extra["email"] = {"link_secret": '"s3cret-link-key-123-of-32-bytes-or-more"'}
    store.extra["ledger"] = {"hash_secret": '"hash-key-456"'}
    for n in range(3):
        store.customer(f"C{n}", f"private.person{n}@example.com")
        store.pos.sale(
            f"C{n}", datetime(2026, 11, 20, 10, n), kind="layaway?" if n == 2 else "sale"
        )
    settings = load_settings(store.write_config())
    buffer = io.StringIO()
    logs.configure("debug", logs.secret_values(settings), stream=buffer)
    store.run(local(2026, 11, 20, 23))

    lines = buffer.getvalue().splitlines()
    events = [json.loads(line) for line in lines]
    names = [e["event"] for e in events]
    assert names[0] == "run.started" and names[-1] == "run.finished"
    assert "pos.row_unreadable" in names and "day.covered" in names
    assert all(e["run_id"] and e["store"] == "test" for e in events)
    assert events[-1]["counts"]["sent"] == 2
    for line in lines:
        assert not FULL_EMAIL.search(line), line
        assert "s3cret-link-key-123-of-32-bytes-or-more" not in line and "hash-key-456" not in line


def test_the_masker_covers_exceptions_nested_values_and_every_secret() -> None:
    """Addresses and secrets are masked inside exceptions, lists and dicts alike."""
    masker = logs.SensitiveMasker(["pg-password-1", "api-key-xyz"])
    event = masker(
        None,
        "error",
        {
            "event": "provider.failed",
            "error": ValueError("550 <jürgen.müller@example.de> unknown, key=api-key-xyz"),
            "details": {
                "to": ["kim.jansen@example.com"],
                "url": "postgresql://u:pg-password-1@h/db",
            },
            "exception": "Traceback ...\nSMTPRecipientsRefused: {'a.b@shop.nl': (550, b'x')}",
        },
    )
    text = json.dumps(event, ensure_ascii=False)
    assert "jürgen.müller@" not in text and "kim.jansen@" not in text and "a.b@shop.nl" not in text
    assert "api-key-xyz" not in text and "pg-password-1" not in text
    assert "j***@example.de" in text and "k***@example.com" in text and "***" in text


def test_log_events_carry_the_run_id_bound_for_the_run(store: Store) -> None:
    """Events logged during a run carry its id; after the run the binding is gone."""
    store.customer("C1")
    store.pos.sale("C1", datetime(2026, 11, 20, 10, 0))
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as captured:
        report = store.run(local(2026, 11, 20, 23))
    assert {e.get("run_id") for e in captured} == {report.run_id}
    assert structlog.contextvars.get_contextvars() == {}


def test_every_event_names_the_store_even_outside_a_run() -> None:
    """Start-up and idle events name the store too, also after a run unbound its own context."""
    buffer = io.StringIO()
    logs.configure("info", stream=buffer, store="north")
    log = structlog.get_logger("test")
    log.info("scheduler.started")
    structlog.contextvars.bind_contextvars(run_id=7, store="north")
    log.info("run.started")
    structlog.contextvars.unbind_contextvars("run_id", "store")
    log.info("scheduler.waiting")

    events = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [e["store"] for e in events] == ["north"] * 3
    assert [e.get("run_id") for e in events] == [None, 7, None]
    assert all(e["level"] == "info" and e["timestamp"].endswith("Z") for e in events)


def test_a_plain_console_gets_one_json_object_per_line() -> None:
    """Where stderr is not a terminal (a Windows service, a pipe) every line is JSON."""
    buffer = io.StringIO()
    logs.configure("info", stream=buffer)
    structlog.get_logger("test").info("run.started", note="Zoë's bike, 자전거")

    (line,) = buffer.getvalue().splitlines()
    assert json.loads(line)["note"] == "Zoë's bike, 자전거"
