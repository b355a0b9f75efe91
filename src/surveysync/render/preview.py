"""``surveysync preview``: the survey email a customer of this store would get, with sample
data, and the built-in templates copied out as a starting point for the operator's own.

Writes only the files it is asked to write; never sends, never touches the ledger.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from surveysync.config import Settings
from surveysync.render.message import SurveyEmail
from surveysync.render.renderer import Renderer
from surveysync.render.templates import copy_builtin_templates


def copy_templates(folder: Path) -> list[str]:
    """Copy the built-in templates into ``folder`` (files there are left alone); what to
    tell the operator."""
    written, kept = copy_builtin_templates(folder)
    return [
        f"wrote {written} template(s) to {folder} ({kept} already there, left alone)",
        f"set email.templates_dir = {str(folder.resolve())!r}, then run `surveysync check`",
    ]


def preview_email(
    settings: Settings,
    now: datetime,
    *,
    locale: str | None = None,
    recipient: str = "customer@example.com",
    html_path: Path | None = None,
    eml_path: Path | None = None,
) -> tuple[SurveyEmail, list[str]]:
    """The sample email (RenderError for a locale without templates), written to
    ``html_path`` / ``eml_path`` when given, and notes for the operator: a broken template
    of theirs that the built-in one replaces, and what was written where."""
    renderer = Renderer(settings.store, settings.email)
    notes = [f"warning: the built-in template replaces {p}" for p in renderer.templates.problems]
    email = renderer.preview(locale or settings.store.default_locale, recipient, now)
    if html_path is not None:
        html_path.write_text(email.html, encoding="utf-8")
        notes.append(f"wrote the HTML part to {html_path}")
    if eml_path is not None:
        eml_path.write_bytes(email.to_bytes())
        notes.append(f"wrote the message to {eml_path}")
    return email, notes
