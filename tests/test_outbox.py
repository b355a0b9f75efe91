"""The outbox folder as a program that picks up its mail sees it: one complete .eml per
request, never a half-written one under that name, and nothing else left behind."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from surveysync.config import EmailSettings, StoreSettings
from surveysync.model import RequestStatus
from surveysync.providers import OutgoingEmail, ProviderUnavailable
from surveysync.providers.outbox import OutboxProvider
from surveysync.render import Renderer

NOW = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
STRICT = email.policy.default.clone(raise_on_defect=True)


def outgoing(count: int) -> list[OutgoingEmail]:
    renderer = Renderer(StoreSettings(name="Test Cycles"), EmailSettings())
    emails = []
    for n in range(count):
        payload = {"first_name": "Mira", "language": "en"}
        message = renderer.render(f"{n:032x}", f"mira.{n}@example.com", payload, NOW)
        emails.append(OutgoingEmail(message.request_id, message.request_id, message, "k"))
    return emails


def test_each_request_is_one_complete_eml_and_nothing_else(tmp_path: Path) -> None:
    batch = outgoing(3)
    outbox = OutboxProvider(tmp_path / "outbox")
    results = outbox.send(batch) + outbox.send(batch[:1])  # the first one sent again
    assert [r.status for r in results] == [RequestStatus.SENT] * 4
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == sorted(f"{e.idempotency_key}.eml" for e in batch)
    for sent in batch:
        raw = (tmp_path / "outbox" / f"{sent.idempotency_key}.eml").read_bytes()
        parsed = email.message_from_bytes(raw, policy=STRICT)
        assert parsed["X-Surveysync-Request"] == sent.request_id
        assert parsed["To"].addresses[0].addr_spec == sent.message.recipient.addr_spec


def test_a_write_that_fails_is_unavailable_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Something other than a file where a message must go (here a folder): the provider is
    unavailable, and the folder holds no hidden half-written file afterwards."""
    [first] = outgoing(1)
    folder = tmp_path / "outbox"
    (folder / f"{first.idempotency_key}.eml").mkdir(parents=True)
    with pytest.raises(ProviderUnavailable, match="cannot write to outbox"):
        OutboxProvider(folder).send([first])
    assert [p.name for p in folder.iterdir()] == [f"{first.idempotency_key}.eml"]
