"""The store manager's alert emails: one detractor's answer, or a day's digest of them.

Each is a ``SurveyEmail`` (what every provider sends) without unsubscribe links or headers,
in the store's default language (English when that has no built-in wording), plain text and
HTML. One email per address in ``[alerts] to``, all of one alert: ``<alert id>-<n>`` names
each, and is its idempotency key and its Message-ID.

Customer values (name, comment, ids, location, technician) reach the templates only as
variables: autoescaped in HTML, cleaned of control characters and bidirectional overrides,
and bounded in length. Never sends, never touches the ledger.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from email.headerregistry import Address
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from surveysync.alerts.wording import WORDING, locale_for, written_date
from surveysync.config import Settings
from surveysync.ledger.alerts import Detractor
from surveysync.render import RenderError, SurveyEmail, clean_text, deliverable

COMMENT_LIMIT = 2000
_SUBJECT_LIMIT = 200
_ID_LIMIT = 128
# Control characters but tab and newline, and the bidirectional overrides and isolates that
# could make the rest of the email read backwards: never part of a comment as shown.
_COMMENT_NOISE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NOTHING = "–"


def clean_comment(value: str | None) -> str:
    """A comment as the manager reads it: its lines kept, nothing that steers the display."""
    if not value:
        return ""
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    return _COMMENT_NOISE.sub("", text).strip()[:COMMENT_LIMIT]


class AlertComposer:
    def __init__(self, settings: Settings) -> None:
        self._store_name = clean_text(settings.store.name)
        self._tz = ZoneInfo(settings.store.timezone)
        self._threshold = settings.alerts.detractor_max
        self._to = list(settings.alerts.to)
        self.locale = locale_for(settings.store.default_locale)
        self._words = WORDING[self.locale]
        self._templates = Environment(
            loader=PackageLoader("surveysync.alerts", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            auto_reload=False,
        )
        try:
            self._sender = Address(
                clean_text(settings.email.from_name), addr_spec=settings.email.from_address
            )
        except (ValueError, IndexError) as exc:
            raise RenderError(f"unusable email.from_address: {exc}") from None

    def detractor(self, alert_id: str, answer: Detractor, as_of: datetime) -> list[SurveyEmail]:
        """One detractor's answer: its score, comment and the sale it is about."""
        words = self._words
        name = clean_text(answer.first_name)
        location = clean_text(answer.location_name)
        values = {"name": name, "store": self._store_name, "score": answer.score}
        intro = (words.intro_named if name else words.intro_anonymous).format(**values)
        subject = (words.subject if location else words.subject_no_location).format(
            score=answer.score, location=location
        )
        context = {"intro": intro, "answer": self._answer(answer)}
        return self._emails(alert_id, "detractor", subject, context, as_of)

    def digest(
        self, alert_id: str, day: date, answers: list[Detractor], as_of: datetime
    ) -> list[SurveyEmail]:
        """A store day's detractors, oldest answer first."""
        words = self._words
        written = written_date(day, self.locale)
        intro = words.digest_intro.format(store=self._store_name, date=written, max=self._threshold)
        subject = words.digest_subject.format(date=written, count=len(answers))
        context = {"intro": intro, "answers": [self._answer(a) for a in answers]}
        return self._emails(alert_id, "digest", subject, context, as_of)

    def _answer(self, answer: Detractor) -> dict[str, Any]:
        words = self._words
        sale_day = answer.sale_at.astimezone(self._tz).date() if answer.sale_at else None
        facts = [
            (words.score, f"{answer.score}/10"),
            (words.first_name, clean_text(answer.first_name)),
            (words.customer_id, clean_text(answer.customer_id, _ID_LIMIT)),
            (words.transaction_id, clean_text(answer.transaction_id, _ID_LIMIT)),
            (words.sale_date, written_date(sale_day, self.locale) if sale_day else ""),
            (words.location, clean_text(answer.location_name)),
            (words.employee, clean_text(answer.employee_name)),
        ]
        return {
            "comment": clean_comment(answer.comment),
            "facts": [(label, value or _NOTHING) for label, value in facts],
        }

    def _emails(
        self, alert_id: str, template: str, subject: str, context: dict[str, Any], as_of: datetime
    ) -> list[SurveyEmail]:
        subject = clean_text(subject, _SUBJECT_LIMIT)
        context |= {
            "words": self._words,
            "locale": self.locale,
            "subject": subject,
            "footer": self._words.footer.format(store=self._store_name),
        }
        text = self._templates.get_template(f"{template}.txt").render(context)
        html = self._templates.get_template(f"{template}.html").render(context)
        return [
            SurveyEmail(
                request_id=f"{alert_id}-{n}",
                sender=self._sender,
                reply_to=None,
                recipient=deliverable(address),
                recipient_name="",
                subject=subject,
                text=text,
                html=html,
                locale=self.locale,
                # In UTC, as the ledger keeps it: a repeat after a crash has the same Date.
                date=as_of.astimezone(UTC),
                unsubscribe_url=None,
                unsubscribe_mailto=None,
            )
            for n, address in enumerate(self._to)
        ]
