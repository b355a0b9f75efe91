"""The default provider: one RFC 5322 ``.eml`` file per request in a folder.

Used for the demo, for trying a configuration, and by stores whose mail is picked up by
another program. Writing is atomic (temporary file, then rename) and named by the request's
idempotency key, so sending the same request twice leaves one file: this provider honours
idempotency keys.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from surveysync.config import ProviderSettings
from surveysync.model import RequestStatus
from surveysync.providers.base import AdapterClass, OutgoingEmail, ProviderUnavailable, SendResult

# Created here or not at all (never through a file or link already there), not inherited
# by a child process, and binary on Windows.
_NEW_FILE = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)
_NAME_ATTEMPTS = 100
_calls = itertools.count()


class OutboxProvider:
    name = "outbox"
    honours_idempotency_key = True
    renders_templates = False

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
            self._write_atomically(email.idempotency_key, data, target)
        except OSError as exc:
            # A full disk or a lost share: nothing of this batch can be trusted to land.
            raise ProviderUnavailable(
                f"cannot write to outbox {self.folder}: {exc.strerror}"
            ) from exc
        return SendResult(email.request_id, RequestStatus.SENT, provider_message_id=target.name)

    def _write_atomically(self, key: str, data: bytes, target: Path) -> None:
        """``target`` holds all of ``data`` or is as it was: a new hidden file, renamed.
        Named for this process and call: ``tempfile.mkstemp`` and a buffered file object
        took twice as long per email. A temporary file that failed is removed."""
        for _ in range(_NAME_ATTEMPTS):  # a name left by a killed process: take the next
            temporary = os.path.join(self.folder, f".{key}.{os.getpid()}.{next(_calls)}.tmp")
            try:
                fd = os.open(temporary, _NEW_FILE, 0o600)
            except FileExistsError:
                continue
            try:
                try:
                    _write_all(fd, data)
                finally:
                    os.close(fd)
                os.replace(temporary, target)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
            return
        raise FileExistsError(errno.EEXIST, "no free temporary name", str(self.folder))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


Adapter: AdapterClass = OutboxProvider  # what surveysync.providers finds for this kind
