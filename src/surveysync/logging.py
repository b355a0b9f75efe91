"""structlog, configured once at the entry point.

Events go to stderr (stdout belongs to command output such as ``status --json``): readable
lines on a terminal, JSON lines otherwise. Every event passes ``mask_sensitive`` last before
rendering, so no email address or configured secret reaches any output, tracebacks included,
whatever a developer passed to the logger.
"""

from __future__ import annotations

import logging as stdlib_logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from pydantic import BaseModel, SecretStr

EMAIL = re.compile(
    r"([A-Za-z0-9._%+\-'!#$&*/=?^`{|}~\u00c0-\uffff])[A-Za-z0-9._%+\-'!#$&*/=?^`{|}~"
    r"\u00c0-\uffff]*@((?:[A-Za-z0-9\u00c0-\uffff-]+\.)+[A-Za-z\u00c0-\uffff]{2,})"
)
SECRET_MASK = "***"


def secret_values(settings: BaseModel) -> list[str]:
    """Every SecretStr value in a settings tree (what must never be logged)."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            found.extend(secret_values(value))
    return found


class SensitiveMasker:
    """A structlog processor: masks email addresses and known secrets in every value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = self.mask(value)
        return event_dict

    def mask(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._mask_text(value)
        if isinstance(value, dict):
            return {k: self.mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask(v) for v in value]
        if isinstance(value, BaseException):
            return self._mask_text(f"{type(value).__name__}: {value}")
        return value

    def _mask_text(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, SECRET_MASK)
        return EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def configure(
    level: str = "info", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Set up structlog for this process. Called by the CLI entry point, nowhere else."""
    out = stream or sys.stderr
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if out.isatty()
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            SensitiveMasker(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            stdlib_logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
