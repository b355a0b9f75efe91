"""The survey page's HTML, per locale, like the survey emails: ``page_layout.html`` holds
the structure (the form, the score buttons) and ``<locale>/page.html`` the words, as Jinja
blocks. An operator's ``email.templates_dir`` may replace either, or add a locale.

Every locale's page is rendered with sample data for every view once, when the set is
built: a custom template that fails, or whose survey form lacks the eleven score buttons,
the comment box or the send button, is reported in ``problems`` and the built-in one is used.
Autoescaped: a comment or a store name is text, never markup.

Renders only; never reads the ledger or a request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateError,
    select_autoescape,
)

from surveysync.answer_rules import COMMENT_LIMIT
from surveysync.render.korean import particle
from surveysync.render.templates import TemplateProblem

PAGE = "page.html"
log = structlog.get_logger("surveysync.web")


class View(StrEnum):
    SURVEY = "survey"  # the score buttons, the comment box, Send
    THANKS = "thanks"  # after Send, with the review invitation when configured
    UNSUBSCRIBE = "unsubscribe"  # "Unsubscribe from survey emails?" and a button
    UNSUBSCRIBED = "unsubscribed"
    PROBLEM = "problem"


class Problem(StrEnum):
    """Why a page cannot do what was asked; each has its HTTP status."""

    INVALID = "invalid"  # tampered or unknown link, or no such page
    EXPIRED = "expired"
    LIMITED = "limited"  # too many visits to one email's links
    REFUSED = "refused"  # a form sent from another site
    UNREADABLE = "unreadable"  # a body too large or malformed
    UNAVAILABLE = "unavailable"  # the ledger cannot be reached, or anything unexpected

    @property
    def status(self) -> int:
        return _PROBLEM_STATUS[self]


_PROBLEM_STATUS = {
    Problem.INVALID: 404,
    Problem.EXPIRED: 410,
    Problem.LIMITED: 429,
    Problem.REFUSED: 403,
    Problem.UNREADABLE: 400,
    Problem.UNAVAILABLE: 503,
}


@dataclass(frozen=True, slots=True)
class PageFrame:
    """What every page shows and links: the store, the location, and the way back to the
    site's root (pages use relative links, so a proxy may serve them under any path)."""

    store_name: str
    location_name: str | None
    root: str
    css_version: str


class PageTemplates:
    def __init__(self, custom_dir: Path | None = None) -> None:
        self._builtin = _environment(PackageLoader("surveysync", "templates"))
        self._custom = (
            _environment(ChoiceLoader([FileSystemLoader(custom_dir), self._builtin.loader]))  # type: ignore[list-item]
            if custom_dir is not None
            else None
        )
        self.problems: list[TemplateProblem] = []
        self._chosen: dict[str, Template] = {}
        self._load()

    @property
    def locales(self) -> frozenset[str]:
        return frozenset(self._chosen)

    def locale_for(self, *candidates: str | None) -> str:
        """The first candidate with a page, else English."""
        return next((c for c in candidates if c and c in self._chosen), "en")

    def render(self, locale: str, frame: PageFrame, view: View, **context: Any) -> str:
        template = self._chosen[locale]
        values = _context(locale, frame, view, context)
        try:
            return template.render(values)
        except Exception as exc:  # a custom page failing on one request's data
            if template.environment is self._builtin:
                raise
            log.error("web.template_failed", locale=locale, error=f"{type(exc).__name__}")
            self._chosen[locale] = self._builtin.get_template(f"{locale}/{PAGE}")
            return self._chosen[locale].render(values)

    def _load(self) -> None:
        for locale in sorted(_locales(self._builtin) | _locales(self._custom)):
            template = self._checked(self._custom, locale) or self._checked(self._builtin, locale)
            if template is not None:
                self._chosen[locale] = template
        for problem in self.problems:
            log.error("web.template_broken", template=problem.template, error=problem.message)

    def _checked(self, env: Environment | None, locale: str) -> Template | None:
        if env is None or locale not in _locales(env):
            return None
        path = f"{locale}/{PAGE}"
        try:
            template = env.get_template(path)
            for view, context in _SAMPLES:
                _require_parts(
                    view, template.render(_context(locale, _SAMPLE_FRAME, view, context))
                )
        except Exception as exc:
            message = exc.message if isinstance(exc, TemplateError) and exc.message else str(exc)
            self.problems.append(TemplateProblem(path, path, message or type(exc).__name__))
            return None
        return template


def _context(
    locale: str, frame: PageFrame, view: View, context: Mapping[str, Any]
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "locale": locale,
        "store_name": frame.store_name,
        "location_name": frame.location_name or "",
        "root": frame.root,
        "css_version": frame.css_version,
        "view": view.value,
        "problem": "",
        "token": "",
        "score": None,
        "comment": "",
        "comment_limit": COMMENT_LIMIT,
        "error": "",
        "review_url": "",
    }
    values.update(context)
    return values


_SAMPLE_FRAME = PageFrame("Sample Store", "Main St", "../", "sample")
_SAMPLES: list[tuple[View, dict[str, Any]]] = [
    (View.SURVEY, {"token": "sample", "score": 7, "comment": "<b>sample</b>"}),
    (View.SURVEY, {"token": "sample", "score": 3, "error": "score"}),
    (View.SURVEY, {"token": "sample", "score": 3, "error": "comment"}),
    (View.THANKS, {"review_url": "../r/sample"}),
    (View.THANKS, {}),
    (View.UNSUBSCRIBE, {"token": "sample"}),
    (View.UNSUBSCRIBED, {}),
    *[(View.PROBLEM, {"problem": problem.value}) for problem in Problem],
]
_SCORE_INPUT = re.compile(r'<input type="radio" name="score" value="(\d+)"')


class MissingParts(ValueError):
    """A page that lacks what a customer needs to answer or to unsubscribe."""


def _require_parts(view: View, html: str) -> None:
    if view is View.SURVEY:
        if sorted(int(n) for n in _SCORE_INPUT.findall(html)) != list(range(11)):
            raise MissingParts("the survey form must offer each score 0 to 10 once")
        if 'name="comment"' not in html or 'type="submit"' not in html:
            raise MissingParts("the survey form needs the comment box and the send button")
    if view in (View.SURVEY, View.UNSUBSCRIBE) and '<form method="post"' not in html:
        raise MissingParts(f"the {view.value} page needs its form")
    if "<h1>" not in html:
        raise MissingParts(f"the {view.value} page says nothing (no <h1> heading)")


def _environment(loader: BaseLoader) -> Environment:
    env = Environment(
        loader=loader,
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        auto_reload=False,
    )
    env.filters["particle"] = particle
    return env


def _locales(env: Environment | None) -> frozenset[str]:
    if env is None:
        return frozenset()
    names = env.list_templates(filter_func=lambda n: n.count("/") == 1 and n.endswith(PAGE))
    return frozenset(name.split("/")[0] for name in names)
