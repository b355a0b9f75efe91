"""Email providers behind one interface (``Provider`` in ``base``); ``create`` picks one.

``REGISTRY`` maps each ``ProviderKind`` to its adapter's ``from_settings``, found by name:
the module ``surveysync.providers.<kind>`` names its adapter class ``Adapter``. Adding a
provider is therefore one module here and one settings class in ``config`` (with its
``ProviderKind`` value and its ``ProviderSettings`` field of the same name); nothing else
changes. The registry is built when this package is imported, so a kind without a module
fails at start-up, never in the middle of a night.
"""

import importlib
from collections.abc import Callable

from surveysync.config import ProviderKind, ProviderSettings
from surveysync.providers.base import (
    AdapterClass,
    OutgoingEmail,
    Provider,
    ProviderError,
    ProviderLost,
    ProviderUnavailable,
    SendResult,
)
from surveysync.providers.brevo import BrevoProvider
from surveysync.providers.mailgun import MailgunProvider
from surveysync.providers.outbox import OutboxProvider
from surveysync.providers.postmark import PostmarkProvider
from surveysync.providers.resend import ResendProvider
from surveysync.providers.sendgrid import SendGridProvider
from surveysync.providers.smtp import SmtpProvider
from surveysync.providers.webhook import WebhookProvider

ProviderFactory = Callable[[ProviderSettings], Provider]


def _factory(kind: ProviderKind) -> ProviderFactory:
    """The ``from_settings`` of the adapter that the module named after ``kind`` declares."""
    module = importlib.import_module(f"{__name__}.{kind.value}")
    adapter: AdapterClass = module.Adapter
    return adapter.from_settings


REGISTRY: dict[ProviderKind, ProviderFactory] = {kind: _factory(kind) for kind in ProviderKind}


def create(settings: ProviderSettings) -> Provider:
    """The adapter for ``settings.kind``, built from its settings."""
    return REGISTRY[settings.kind](settings)


__all__ = [
    "REGISTRY",
    "BrevoProvider",
    "MailgunProvider",
    "OutboxProvider",
    "OutgoingEmail",
    "PostmarkProvider",
    "Provider",
    "ProviderError",
    "ProviderFactory",
    "ProviderLost",
    "ProviderUnavailable",
    "ResendProvider",
    "SendGridProvider",
    "SendResult",
    "SmtpProvider",
    "WebhookProvider",
    "create",
]
