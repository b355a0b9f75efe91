"""From a claimed request to its ``SurveyEmail``: language, template data, signed links.

Never sends, never touches the ledger; the clock is the run's ``now``, passed in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.headerregistry import Address
from functools import cached_property
from typing import Any

from surveysync.addresses import AcceptedAddress
from surveysync.config import EmailSettings, StoreSettings
from surveysync.render.headers import display_name
from surveysync.render.message import (
    ProviderTemplate,
    RenderError,
    SurveyEmail,
    clean_text,
    deliverable,
    recipient,
)
from surveysync.render.templates import HTML, SUBJECT, TEXT, ScoreLink, TemplateSet
from surveysync.render.tokens import SCORES, LinkSigner

_SUBJECT_LIMIT = 200
# Who a preview greets, per locale: a name as a customer of that language would have it.
SAMPLE_FIRST_NAMES = {"en": "Emma", "nl": "Sanne", "es": "Lucía", "ko": "민준", "sl": "Ana"}
PREVIEW_REQUEST_ID = "0" * 32


class Renderer:
    """``remote_bodies``: the provider renders its templates itself (``renders_templates``),
    so a message with a provider template gets its subject here but no text or HTML: those
    would be rendered, signed and thrown away."""

    def __init__(
        self, store: StoreSettings, email: EmailSettings, *, remote_bodies: bool = False
    ) -> None:
        self._store = store
        self._email = email
        self._remote_bodies = remote_bodies
        self.templates = TemplateSet(email.templates_dir)
        self.signer = LinkSigner(
            email.link_secret.get_secret_value(), timedelta(days=email.link_valid_days)
        )

    @property
    def locales(self) -> frozenset[str]:
        return self.templates.locales

    def locale_for(self, language: str | None) -> str:
        """The customer's language when we have templates for it, else the store's default."""
        for candidate in (language, self._store.default_locale, "en"):
            if candidate and candidate in self.locales:
                return candidate
        raise RenderError("no template locale available")

    def render(
        self,
        request_id: str,
        email: str,
        payload: dict[str, Any],
        now: datetime,
        accepted: AcceptedAddress | None = None,
    ) -> SurveyEmail:
        """The survey email for one request, in the customer's language. ``accepted`` is
        ``email`` as this run's rules already accepted it (not checked again); without it,
        ``email`` is checked here (a request claimed by an earlier run)."""
        locale = self.locale_for(payload.get("language"))
        unsubscribe_token = self.signer.unsubscribe_token(request_id, now)
        context = self._context(request_id, payload, now, unsubscribe_token)
        template = self._provider_template(locale, context)
        text, html = ("", "") if template and self._remote_bodies else self._bodies(locale, context)
        return SurveyEmail(
            request_id=request_id,
            sender=self._sender,
            reply_to=self._email.reply_to,
            recipient=recipient(accepted) if accepted else deliverable(email),
            recipient_name=display_name(_full_name(payload)),
            subject=clean_text(self.templates.render(locale, SUBJECT, context), _SUBJECT_LIMIT),
            text=text,
            html=html,
            locale=locale,
            date=now,
            unsubscribe_url=context["unsubscribe_url"],
            unsubscribe_mailto=(
                f"mailto:{self._email.unsubscribe_mailto}?subject=unsubscribe-{unsubscribe_token}"
            ),
            provider_template=template,
        )

    def _bodies(self, locale: str, context: dict[str, Any]) -> tuple[str, str]:
        text = self.templates.render(locale, TEXT, context)
        return text, self.templates.render(locale, HTML, context)

    def preview(self, locale: str | None, email: str, now: datetime) -> SurveyEmail:
        """A sample email for this store, as a customer speaking ``locale`` would get it."""
        chosen = self.locale_for(locale)
        if locale and chosen != locale:
            known = ", ".join(sorted(self.locales))
            raise RenderError(f"no templates for locale {locale!r} (available: {known})")
        location = next(iter(self._store.locations.values()), "Main Street")
        payload = {
            "first_name": SAMPLE_FIRST_NAMES.get(chosen, "Alex"),
            "language": chosen,
            "location_name": location,
        }
        return self.render(PREVIEW_REQUEST_ID, email, payload, now)

    @cached_property
    def _sender(self) -> Address:
        try:
            return Address(
                display_name=clean_text(self._email.from_name), addr_spec=self._email.from_address
            )
        except (ValueError, IndexError) as exc:
            raise RenderError(f"unusable from_address: {exc}") from None

    def _context(
        self, request_id: str, payload: dict[str, Any], now: datetime, unsubscribe_token: str
    ) -> dict[str, Any]:
        base = self._email.survey_base_url.rstrip("/")
        unsubscribe_base = self._email.unsubscribe_base_url.rstrip("/")
        return {
            "first_name": clean_text(payload.get("first_name")),
            "store_name": clean_text(self._store.name),
            "location_name": clean_text(payload.get("location_name")),
            "score_links": [
                ScoreLink(n, f"{base}/{token}")
                for n, token in zip(SCORES, self.signer.score_tokens(request_id, now), strict=True)
            ],
            "unsubscribe_url": f"{unsubscribe_base}/{unsubscribe_token}",
        }

    def _provider_template(self, locale: str, context: dict[str, Any]) -> ProviderTemplate | None:
        templates = self._email.provider_templates
        template_id = templates.get(locale) or templates.get("*")
        if template_id is None:
            return None
        data = {
            "locale": locale,
            "first_name": context["first_name"],
            "store_name": context["store_name"],
            "location_name": context["location_name"],
            "scores": [{"score": s.score, "url": s.url} for s in context["score_links"]],
            "unsubscribe_url": context["unsubscribe_url"],
        }
        return ProviderTemplate(template_id, data)


def _full_name(payload: dict[str, Any]) -> str:
    parts = (clean_text(payload.get("first_name")), clean_text(payload.get("last_name")))
    return " ".join(p for p in parts if p)
