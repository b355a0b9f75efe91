"""The survey page's part in detractor alerts: after a sent form and on every sweep (when
clicked answers become final), what is due goes to the store manager through the configured
provider, without waiting for the night.

One provider for the process, made on first use, and one send at a time (the sweep and a
form may call together; ``alerts.send_due`` claims each alert once in the ledger anyway).
Never raises: a provider that cannot be reached leaves the alert waiting for the next tick.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import structlog

from surveysync import providers
from surveysync.alerts import send_due
from surveysync.config import Settings
from surveysync.ledger import Ledger, LedgerError
from surveysync.providers import Provider, ProviderError
from surveysync.web.app import Hooks

log = structlog.get_logger("surveysync.web")


class AlertHooks:
    def __init__(
        self, settings: Settings, make_provider: Callable[[], Provider] | None = None
    ) -> None:
        self._settings = settings
        self._make = make_provider or (lambda: providers.create(settings.provider))
        self._provider: Provider | None = None
        self._lock = threading.Lock()

    def hooks(self) -> Hooks:
        return Hooks(after_answer=self.after_answer, on_tick=self.on_tick)

    def after_answer(self, ledger: Ledger, request_id: str, now: datetime) -> None:
        self.on_tick(ledger, now)

    def on_tick(self, ledger: Ledger, now: datetime) -> None:
        if not self._settings.alerts.enabled:
            return
        with self._lock:
            try:
                counts = send_due(ledger, self._opened(), self._settings, now)
            except (ProviderError, LedgerError) as exc:
                log.warning("web.alerts_failed", error=str(exc))
                return
        if counts.sent or counts.queued:
            log.info("web.alerts", **counts.as_dict())

    def close(self) -> None:
        with self._lock:
            if self._provider is not None:
                self._provider.close()
                self._provider = None

    def _opened(self) -> Provider:
        if self._provider is None:
            self._provider = self._make()
        return self._provider
