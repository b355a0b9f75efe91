"""Is this installation ready? The checks behind ``surveysync check`` (and the survey page's
``/healthz``), as results, never as printed text: each says what was checked, whether it
passed, and in plain words what was found.

The config check fails while a setting still holds an example value of ``surveysync init``'s
file (``surveysync.example_values``). Checks only read: the POS through its read-only source,
the ledger (opening it migrates it, as every command does), the templates, and one harmless
provider call. Nothing is sent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from surveysync import pos, providers
from surveysync.config import Settings
from surveysync.example_values import example_values
from surveysync.ledger import LedgerError, migrate, open_ledger
from surveysync.reminders import ReminderComposer
from surveysync.render import Renderer
from surveysync.sync.sample import DaySample, latest_day


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # config | pos | mapping | pos-login | ledger | templates | provider
    ok: bool
    detail: str


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in order; a failed one does not stop the others."""
    found: list[Check] = []
    for one in (check_config, check_pos, check_ledger, check_templates, check_provider):
        found.extend(one(settings))
    return found


def check_config(settings: Settings) -> list[Check]:
    """The file is valid (it was loaded) and holds no example value from ``surveysync init``:
    one failed line per such setting."""
    examples = example_values(settings)
    if examples:
        return [Check("config", False, str(example)) for example in examples]
    return [Check("config", True, f"store {settings.store.id!r}, {settings.store.timezone}")]


def check_pos(settings: Settings) -> list[Check]:
    """The POS answers, read-only, through a mapping that fits; then its values make sense."""
    found = [Check(str(r.name), r.ok, r.detail) for r in pos.check(settings.pos, settings.store.tz)]
    if all(c.ok for c in found):
        found.extend(check_values(settings))
    return found


def check_values(settings: Settings, now: datetime | None = None) -> list[Check]:
    """The latest day with sales, read as a night reads it: one failed line per kind of row
    it cannot read and one for sales it yields more than once; else one line that passes."""
    tz = settings.store.tz
    try:
        sample = read_latest_day(settings, now or datetime.now(tz))
    except pos.PosError as exc:
        return [Check("values", False, str(exc))]
    if sample.day is None:
        return [Check("values", True, "no sale in the last year to look at")]
    problems = [*_unreadable(sample), *_repeated(sample)]
    if problems:
        return [Check("values", False, f"{sample.day}: {p}") for p in problems]
    return [
        Check("values", True, f"{sample.day}: {len(sample.sales)} sales, every value understood")
    ]


def read_latest_day(settings: Settings, now: datetime) -> DaySample:
    """The latest day with sales through the configured source. Raises PosError."""
    source = pos.create(settings.pos, settings.store.tz)
    try:
        return latest_day(source, settings.store.tz, now)
    finally:
        source.close()


def _unreadable(sample: DaySample) -> list[str]:
    """One line per column and problem: how many rows, a few of their ids."""
    by_kind: Counter[str] = Counter()
    ids: dict[str, list[str]] = {}
    for problem in sample.problems:
        what = problem.problem.rsplit(": ", 1)[0]  # without the masked value
        by_kind[what] += 1
        ids.setdefault(what, []).append(problem.transaction_id or "(no id)")
    return [
        f"{count} of {sample.rows} rows cannot be read: {what} (e.g. {', '.join(ids[what][:5])})"
        for what, count in by_kind.most_common()
    ]


def _repeated(sample: DaySample) -> list[str]:
    if not sample.repeated:
        return []
    refs = sorted(sample.repeated)
    differing = len(sample.conflicting)
    return [
        f"{len(refs)} sales come in more than one row ({differing} with different values, "
        "which are not asked): the mapping must yield one row per sale and customer "
        f"(e.g. {', '.join(ref[0] for ref in refs[:5])})"
    ]


def check_ledger(settings: Settings) -> list[Check]:
    try:
        ledger = open_ledger(settings)
        try:
            with ledger.reading() as conn:
                revision = migrate.current_revision(conn)
        finally:
            ledger.close()
    except LedgerError as exc:
        return [Check("ledger", False, str(exc))]
    return [Check("ledger", True, f"migrated to revision {revision} (newest)")]


def check_templates(settings: Settings) -> list[Check]:
    renderer = Renderer(settings.store, settings.email)
    reminders = ReminderComposer(settings.store, settings.email)
    problems = [*renderer.templates.problems, *reminders.problems]
    found = [Check("templates", False, str(p)) for p in problems]
    default = settings.store.default_locale
    available = ", ".join(sorted(renderer.locales))
    if default not in renderer.locales:
        found.append(
            Check("templates", False, f"store.default_locale {default!r} has none ({available})")
        )
    if found:
        return found
    custom = settings.email.templates_dir
    return [Check("templates", True, f"{available}{f', custom folder {custom}' if custom else ''}")]


def check_provider(settings: Settings) -> list[Check]:
    try:
        provider = providers.create(settings.provider)
        try:
            detail = provider.check()
        finally:
            provider.close()
    except providers.ProviderError as exc:
        return [Check("provider", False, str(exc))]
    return [Check("provider", True, f"{settings.provider.kind.value}: {detail}")]
