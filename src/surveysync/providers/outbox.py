"""The default provider: one RFC 5322 ``.eml`` file per request in a folder.

Used for the demo, for trying a configuration, and by stores whose mail is picked up by
another program. Writing is atomic (temporary file, then rename) and named by the request's
idempotency key, so sending the same request twice leaves one file: this provider honours
idempotency keys.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from surveysync.config import ProviderSettings
from surveysync.model import RequestStatus
from surveysync.providers.base import AdapterClass, OutgoingEmail, ProviderUnavailable, SendResult


class OutboxProvider:
    name = "outbox"
    honours_idempotency_key = True

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> Self:
        return cls(settings.outbox_dir, settings.batch_size)

    def __init__(self, folder: Path, max_batch_size: int = 500) -> None:
        self.folder = folder
        self.max_batch_size = max_batch_size

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        self._ensure_folder()
        return [self._write(email) for email in batch]

    def check(self) -> str:
        self._ensure_folder()
        if not os.access(self.folder, os.W_OK):
            raise ProviderUnavailable(f"outbox folder {self.folder} is not writable")
        return f"writes .eml files to {self.folder.resolve()}"

    def close(self) -> None:
        return None

    def _ensure_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProviderUnavailable(
                f"cannot create outbox folder {self.folder}: {exc.strerror}"
            ) from exc

    def _write(self, email: OutgoingEmail) -> SendResult:
        data = email.message.to_bytes()
        target = self.folder / f"{email.idempotency_key}.eml"
        try:
            fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, target)
        except OSError as exc:
            # A full disk or a lost share: nothing of this batch can be trusted to land.
            raise ProviderUnavailable(
                f"cannot write to outbox {self.folder}: {exc.strerror}"
            ) from exc
        return SendResult(email.request_id, RequestStatus.SENT, provider_message_id=target.name)


Adapter: AdapterClass = OutboxProvider  # what surveysync.providers finds for this kind
