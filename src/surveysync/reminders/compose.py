"""The reminder emails, each a ``SurveyEmail`` like the survey's, in the survey's language.

    kind       templates (built in: en, nl, es, ko, sl)     links
    review     ``reminder_review/<locale>/`` on             the review link (the survey
               ``reminder_review/layout.*``                 page's /r/<token>), unsubscribe
    no_answer  ``reminder_survey/<locale>/`` on the         the survey's 11 score links,
               survey's own ``layout.*``                    unsubscribe

An operator's ``email.templates_dir`` overrides them file by file, as it does the survey's;
each is checked with sample data when the composer is built, and a broken one is reported
(``problems``, which ``surveysync check`` prints) and replaced by the built-in one.

Every link is signed for the survey request the reminder follows up, so an answer given from
a reminder lands on the original survey, and the review link and the unsubscribe link work
as they do from the survey page (the review link carries the request's unsubscribe token:
/r/ takes any token of the request). Tokens and the Date header are made as of the provider
call's time, and nothing in the email depends on what may change since (the answer), so a
call repeated after a crash is the same email byte for byte; its Message-ID is the
reminder's own. Reminders are always rendered here, never from
``email.provider_templates`` (those render the survey).

Never sends, never touches the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from email.headerregistry import Address
from functools import cached_property
from typing import Any

from surveysync.config import EmailSettings, StoreSettings
from surveysync.ledger.reminders import DueReminder
from surveysync.reminder_rules import ReminderKind
from surveysync.render import (
    LinkSigner,
    RenderError,
    SurveyEmail,
    TemplateProblem,
    TemplateSet,
    clean_text,
    deliverable,
)
from surveysync.render.templates import (
    HTML,
    SAMPLE_BASE,
    SUBJECT,
    SURVEY_TEMPLATES,
    TEXT,
    MissingLinks,
    ScoreLink,
    TemplateFamily,
)
from surveysync.render.tokens import SCORES

_SUBJECT_LIMIT = 200


def _review_sample(first_name: str = "Sam", location_name: str = "Main St") -> dict[str, Any]:
    return {
        "first_name": first_name,
        "store_name": "Sample Store",
        "location_name": location_name,
        "review_url": f"{SAMPLE_BASE}/r/sample",
        "unsubscribe_url": f"{SAMPLE_BASE}/u/sample",
    }


def _require_review_links(output: str, context: Mapping[str, Any]) -> None:
    if context["review_url"] not in output:
        raise MissingLinks("the review link is missing")
    if context["unsubscribe_url"] not in output:
        raise MissingLinks("the unsubscribe link is missing")


REVIEW_TEMPLATES = TemplateFamily(
    "reminder_review/",
    (_review_sample(), _review_sample(first_name=""), _review_sample(location_name="")),
    _require_review_links,
)
# The survey once more: the survey's sample data and links, its own words.
SURVEY_AGAIN_TEMPLATES = TemplateFamily(
    "reminder_survey/", SURVEY_TEMPLATES.samples, SURVEY_TEMPLATES.require_links
)


class ReminderComposer:
    def __init__(self, store: StoreSettings, email: EmailSettings) -> None:
        self._store = store
        self._email = email
        self.templates = {
            ReminderKind.REVIEW: TemplateSet(email.templates_dir, REVIEW_TEMPLATES),
            ReminderKind.NO_ANSWER: TemplateSet(email.templates_dir, SURVEY_AGAIN_TEMPLATES),
        }
        self._signer = LinkSigner(
            email.link_secret.get_secret_value(), timedelta(days=email.link_valid_days)
        )

    @property
    def problems(self) -> list[TemplateProblem]:
        return [p for templates in self.templates.values() for p in templates.problems]

    def compose(self, reminder: DueReminder, as_of: datetime) -> SurveyEmail:
        """The reminder's email, as of ``as_of`` (its provider call's time)."""
        if reminder.email is None:
            raise RenderError("the reminder no longer holds an address")
        as_of = as_of.astimezone(self._store.tz)
        templates = self.templates[reminder.kind]
        locale = self._locale_for(templates, reminder.locale)
        unsubscribe_token = self._signer.unsubscribe_token(reminder.request_id, as_of)
        context = self._context(reminder, as_of, unsubscribe_token)
        subject = templates.render(locale, SUBJECT, context)
        return SurveyEmail(
            request_id=reminder.reminder_id,
            sender=self._sender,
            reply_to=self._email.reply_to,
            recipient=deliverable(reminder.email),
            recipient_name=clean_text(reminder.first_name),
            subject=clean_text(subject, _SUBJECT_LIMIT),
            text=templates.render(locale, TEXT, context),
            html=templates.render(locale, HTML, context),
            locale=locale,
            date=as_of,
            unsubscribe_url=context["unsubscribe_url"],
            unsubscribe_mailto=(
                f"mailto:{self._email.unsubscribe_mailto}?subject=unsubscribe-{unsubscribe_token}"
            ),
        )

    def _locale_for(self, templates: TemplateSet, locale: str | None) -> str:
        """The survey's language when there are reminder templates for it, else the store's
        default, else English (as the survey's renderer chooses)."""
        for candidate in (locale, self._store.default_locale, "en"):
            if candidate and candidate in templates.locales:
                return candidate
        raise RenderError("no reminder template locale available")

    def _context(
        self, reminder: DueReminder, as_of: datetime, unsubscribe_token: str
    ) -> dict[str, Any]:
        unsubscribe_base = self._email.unsubscribe_base_url.rstrip("/")
        context: dict[str, Any] = {
            "first_name": clean_text(reminder.first_name),
            "store_name": clean_text(self._store.name),
            "location_name": clean_text(reminder.location_name),
            "unsubscribe_url": f"{unsubscribe_base}/{unsubscribe_token}",
        }
        if reminder.kind is ReminderKind.REVIEW:
            # Any valid token of the request opens /r/. The unsubscribe token depends on
            # nothing the customer may change since (a score would: a repeat after a crash
            # must be the same email), and moved to /s/ it answers nothing.
            review_base = self._email.review_base_url.rstrip("/")
            context["review_url"] = f"{review_base}/{unsubscribe_token}"
        else:
            base = self._email.survey_base_url.rstrip("/")
            signer, request_id = self._signer, reminder.request_id
            context["score_links"] = [
                ScoreLink(n, f"{base}/{signer.score_token(request_id, n, as_of)}") for n in SCORES
            ]
        return context

    @cached_property
    def _sender(self) -> Address:
        try:
            return Address(
                display_name=clean_text(self._email.from_name), addr_spec=self._email.from_address
            )
        except (ValueError, IndexError) as exc:
            raise RenderError(f"unusable from_address: {exc}") from None
