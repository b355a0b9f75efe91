"""Email providers behind one interface (``Provider`` in ``base``); ``create`` picks one."""

from surveysync.config import ProviderKind, ProviderSettings
from surveysync.providers.base import (
    OutgoingEmail,
    Provider,
    ProviderError,
    ProviderInDoubt,
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


def create(settings: ProviderSettings) -> Provider:
    if settings.kind is ProviderKind.OUTBOX:
        return OutboxProvider(settings.outbox_dir, settings.batch_size)
    if settings.kind is ProviderKind.SMTP:
        return SmtpProvider(settings.smtp, batch_size=settings.batch_size)
    if settings.kind is ProviderKind.WEBHOOK:
        return WebhookProvider(settings.webhook, settings.http, batch_size=settings.batch_size)
    if settings.kind is ProviderKind.SENDGRID:
        return SendGridProvider(settings.sendgrid, settings.http, batch_size=settings.batch_size)
    if settings.kind is ProviderKind.RESEND:
        return ResendProvider(settings.resend, settings.http, batch_size=settings.batch_size)
    if settings.kind is ProviderKind.POSTMARK:
        return PostmarkProvider(settings.postmark, settings.http, batch_size=settings.batch_size)
    if settings.kind is ProviderKind.MAILGUN:
        return MailgunProvider(settings.mailgun, settings.http)
    if settings.kind is ProviderKind.BREVO:
        return BrevoProvider(settings.brevo, settings.http, batch_size=settings.batch_size)
    raise ProviderError(f"provider.kind {settings.kind!r} is not available")


__all__ = [
    "BrevoProvider",
    "MailgunProvider",
    "OutboxProvider",
    "OutgoingEmail",
    "PostmarkProvider",
    "Provider",
    "ProviderError",
    "ProviderInDoubt",
    "ProviderUnavailable",
    "SendGridProvider",
    "SendResult",
    "SmtpProvider",
    "WebhookProvider",
    "create",
]
