"""The survey templates: built in per locale, optionally overridden from the operator's folder.

Every template is checked once, when the set is built, by rendering it with sample data: it
must render without error or undefined variable, and a body must show all eleven score links
and the unsubscribe link. A custom template that fails is reported (``problems``, which
``surveysync check`` prints) and the built-in one is used instead, so a typo in an override
never stops a nightly run.

Other customer emails (the reminders) are template families of their own (``TemplateFamily``:
a folder such as ``reminder_review/<locale>/``, sample data, the links a body must show),
loaded and checked the same way by a ``TemplateSet`` of that family.

Never reads customer data itself; never sends anything.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

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
    TemplateSyntaxError,
    select_autoescape,
)

from surveysync.render.korean import particle

SUBJECT, TEXT, HTML = "subject.txt", "body.txt", "body.html"
LAYOUT_NAMES = ("layout.html", "layout.txt")
TEMPLATE_NAMES = (SUBJECT, TEXT, HTML)
SAMPLE_BASE = "https://survey.invalid"

log = structlog.get_logger("surveysync.render")


@dataclass(frozen=True, slots=True)
class ScoreLink:
    score: int
    url: str


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    template: str  # "nl/body.html"
    where: str  # the file and line that failed, when known
    message: str

    def __str__(self) -> str:
        return f"{self.template} ({self.where}): {self.message}"


def sample_context(
    first_name: str | None = "Sam", location_name: str | None = "Main St"
) -> dict[str, Any]:
    """Template data with recognisable links, for checks and previews."""
    return {
        "first_name": first_name or "",
        "store_name": "Sample Store",
        "location_name": location_name or "",
        "score_links": [ScoreLink(n, f"{SAMPLE_BASE}/s/sample-{n}") for n in range(11)],
        "unsubscribe_url": f"{SAMPLE_BASE}/u/sample",
    }


class MissingLinks(ValueError):
    """A body that does not show every link its email must have."""


def _require_survey_links(output: str, context: Mapping[str, Any]) -> None:
    missing = [str(link.score) for link in context["score_links"] if link.url not in output]
    if missing:
        raise MissingLinks(f"the score links for {', '.join(missing)} are missing")
    if context["unsubscribe_url"] not in output:
        raise MissingLinks("the unsubscribe link is missing")


@dataclass(frozen=True, slots=True, eq=False)  # one object per family: hashed by identity
class TemplateFamily:
    """One kind of customer email's templates: the folder its locales live in (``""``: the
    survey's own ``<locale>/``), the sample data each is checked with, and the check that a
    rendered body shows every link it must (raising ``MissingLinks``)."""

    folder: str
    samples: tuple[Mapping[str, Any], ...]
    require_links: Callable[[str, Mapping[str, Any]], None]


SURVEY_TEMPLATES = TemplateFamily(
    "",
    (sample_context(), sample_context(first_name=None), sample_context(location_name=None)),
    _require_survey_links,
)


class TemplateSet:
    """The template each locale renders with, every one checked before the first email."""

    def __init__(
        self, custom_dir: Path | None = None, family: TemplateFamily = SURVEY_TEMPLATES
    ) -> None:
        self.custom_dir = custom_dir
        self.family = family
        self._builtin = _builtin_environment()
        self._custom = (
            _custom_environment(custom_dir, _fingerprint(custom_dir))
            if custom_dir is not None
            else None
        )
        self.problems: list[TemplateProblem] = []
        self._chosen: dict[str, Template] = {}
        self._builtin_locales = _locales(self._builtin, family.folder)
        self._load()

    @property
    def locales(self) -> frozenset[str]:
        folder = self.family.folder
        return frozenset(
            name.removeprefix(folder).split("/")[0]
            for name in self._chosen
            if name.endswith(SUBJECT)
        )

    def render(self, locale: str, name: str, context: Mapping[str, Any]) -> str:
        path = f"{self.family.folder}{locale}/{name}"
        template = self._chosen[path]
        try:
            return template.render(context)
        except Exception as exc:  # a custom template failing on one customer's data
            if template.environment is self._builtin:
                raise
            return self._fall_back(path, exc).render(context)

    def _fall_back(self, path: str, exc: Exception) -> Template:
        log.error("render.template_failed", template=path, error=_describe(exc))
        builtin = self._builtin.get_template(path)
        self._chosen[path] = builtin
        return builtin

    def _load(self) -> None:
        self._broken_layouts = self._check_layouts()
        folder = self.family.folder
        custom_locales = _locales(self._custom, folder) if self._custom else frozenset()
        for locale in sorted(self._builtin_locales | custom_locales):
            paths = [f"{folder}{locale}/{name}" for name in TEMPLATE_NAMES]
            chosen = {path: self._choose(locale, path) for path in paths}
            if all(chosen.values()):
                self._chosen.update({p: t for p, t in chosen.items() if t is not None})
        for problem in self.problems:
            log.error("render.template_broken", template=problem.template, error=str(problem))

    def _choose(self, locale: str, path: str) -> Template | None:
        if self._custom is not None:
            template = self._checked(self._custom, path)
            if template is not None:
                return template
        if locale in self._builtin_locales:
            return self._checked(self._builtin, path)
        return None

    def _check_layouts(self) -> set[str]:
        """The operator's own layouts (this family's, and the shared ``layout.*`` its bodies
        may extend), checked on their own first, so that a broken one is named as the broken
        file, not as every body that extends it."""
        broken: set[str] = set()
        if self._custom is None or self.custom_dir is None:
            return broken
        for name in map(self._layout_of_family, LAYOUT_NAMES):
            if not (self.custom_dir / name).is_file():
                continue
            try:
                layout = self._custom.get_template(name)
                for context in self.family.samples:
                    _require(self.family, name, layout.render(context), context)
            except Exception as exc:
                self.problems.append(TemplateProblem(name, _where(exc, name), _describe(exc)))
                broken.add(name)
        return broken

    def _layout_of_family(self, name: str) -> str:
        """This family's own layout when it has one (``reminder_review/layout.html``), else
        the shared one its bodies extend."""
        own = f"{self.family.folder}{name}"
        return own if own in self._builtin.list_templates() else name

    def _checked(self, env: Environment, path: str) -> Template | None:
        template, problem = _check(env, self.family, path)
        if problem is not None and not self._blames_a_broken_layout(env, path):
            self.problems.append(problem)
        return template

    def _blames_a_broken_layout(self, env: Environment, path: str) -> bool:
        """A body of ours fails only because it extends the operator's broken layout: that
        layout is already the reported problem."""
        own_body = self.custom_dir is not None and (self.custom_dir / path).is_file()
        kind = ".html" if path.endswith(".html") else ".txt"
        broken = any(name.endswith(kind) for name in self._broken_layouts)
        return env is self._custom and not own_body and broken


Checked = tuple[Template | None, TemplateProblem | None]
# What checking each template found, per environment (so per content of an operator's folder:
# see below) and family: the same template with the same samples always gives the same
# answer, and each nightly run would otherwise render every template three times again.
_CHECKS: WeakKeyDictionary[Environment, dict[tuple[TemplateFamily, str], Checked]] = (
    WeakKeyDictionary()
)


def _check(env: Environment, family: TemplateFamily, path: str) -> Checked:
    """The template at ``path``, rendered with each of the family's samples, or the problem
    that stops it."""
    found = _CHECKS.setdefault(env, {})
    if (family, path) not in found:
        try:
            template = env.get_template(path)
            for context in family.samples:
                _require(family, path, template.render(context), context)
            found[family, path] = (template, None)
        except Exception as exc:
            found[family, path] = (None, TemplateProblem(path, _where(exc, path), _describe(exc)))
    return found[family, path]


def _require(family: TemplateFamily, path: str, output: str, context: Mapping[str, Any]) -> None:
    if not path.endswith(SUBJECT):
        family.require_links(output, context)
    elif not output.strip():
        raise MissingLinks("the subject is empty")


# Environments are shared by every TemplateSet of the process, so that a template is compiled
# once, not once per nightly run (compiling was most of a demo night). The built-in templates
# never change under a process; an operator's folder is keyed by its content, so that an edit
# between two nights is compiled afresh (a file's mtime can stay the same across a quick edit).


@cache
def _builtin_environment() -> Environment:
    return _environment(PackageLoader("surveysync", "templates"))


@lru_cache(maxsize=8)
def _custom_environment(custom_dir: Path, fingerprint: str) -> Environment:
    builtin = _builtin_environment().loader
    assert builtin is not None
    return _environment(ChoiceLoader([FileSystemLoader(custom_dir), builtin]))


def _fingerprint(folder: Path) -> str:
    """A digest of every file under ``folder``, by name and content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError as exc:  # unreadable: the loader reports it as the template's problem
            digest.update(str(exc).encode("utf-8", "replace"))
    return digest.hexdigest()


def _environment(loader: BaseLoader) -> Environment:
    env = Environment(
        loader=loader,
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        auto_reload=False,  # templates do not change under a run; no stat() per email
    )
    env.filters["particle"] = particle
    return env


def _locales(env: Environment | None, folder: str = "") -> frozenset[str]:
    """The locales with a template of this family: ``<folder><locale>/<name>``."""
    if env is None:
        return frozenset()

    def accept(name: str) -> bool:
        rest = name.removeprefix(folder)
        return name.startswith(folder) and rest.count("/") == 1 and rest.endswith(TEMPLATE_NAMES)

    names = env.list_templates(filter_func=accept)
    return frozenset(name.removeprefix(folder).split("/")[0] for name in names)


def _where(exc: BaseException, path: str) -> str:
    if isinstance(exc, TemplateSyntaxError):
        return f"{exc.filename or path}:{exc.lineno}"
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith((".html", ".txt"))
    ]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else path


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TemplateError | MissingLinks):
        return exc.message if isinstance(exc, TemplateError) and exc.message else str(exc)
    return f"{type(exc).__name__}: {exc}"


def copy_builtin_templates(folder: Path) -> tuple[int, int]:
    """Write the built-in templates into ``folder`` as a starting point for the operator's
    own; files already there are left alone. Returns (written, kept)."""
    written = kept = 0
    for relative, text in _builtin_files(resources.files("surveysync") / "templates"):
        target = folder.joinpath(*relative)
        if target.exists():
            kept += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written += 1
    return written, kept


def _builtin_files(root: Any, parts: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _builtin_files(entry, (*parts, entry.name))
        elif entry.name.endswith((".txt", ".html")):
            yield (*parts, entry.name), entry.read_text("utf-8")
