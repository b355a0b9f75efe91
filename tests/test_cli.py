"""The admin's view: commands, their output and their exit codes."""

from __future__ import annotations

import contextlib
import json
import re
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from click.testing import CliRunner
from pydantic import BaseModel

from surveysync.cli import main
from surveysync.config import Settings, load_settings
from surveysync.config import example_config_text as example_config
from surveysync.rules import SkipReason
from tests.conftest import Store, local

ROOT = Path(__file__).resolve().parents[1]


def test_explain_names_the_rule_for_each_sale_and_the_next_date(store: Store) -> None:
    """explain lists each sale with its decision and rule, and when they may be asked again."""
    store.customer("C1")
    store.pos.sale("C1", datetime(2026, 11, 18, 10, 0))
    store.pos.sale("C1", datetime(2026, 11, 20, 10, 0))
    store.pos.sale("C1", datetime(2026, 11, 20, 12, 0), kind="return")
    store.run(local(2026, 11, 18, 23))
    store.run(local(2026, 11, 20, 23))

    with time_machine.travel(local(2026, 11, 21, 9), tick=False):
        result = store.cli("explain", "--email", "C1@example.com")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("\trequest\tall rules passed\tsent" in line for line in lines)
    assert any("\tskip\tcooldown\t" in line for line in lines)
    assert any("\tskip\tkind_excluded\t" in line for line in lines)
    assert "May next be asked: from 2027-02-18 23:00 (cooldown)." in result.output


@pytest.mark.parametrize(
    "args, reason",
    [
        (("--customer", "C2"), "not_in_communications"),
        (("--transaction", "TX"), "walk_in"),
    ],
)
def test_explain_by_customer_or_transaction_names_the_rule(
    store: Store, args: tuple[str, str], reason: str
) -> None:
    """explain --customer and --transaction find the decision and say which rule applied."""
    store.customer("C2", include=False)
    store.pos.sale("C2", datetime(2026, 11, 20, 10, 0))
    walk_in = store.pos.sale(None, datetime(2026, 11, 20, 11, 0))
    store.run(local(2026, 11, 20, 23))
    args = tuple(str(walk_in) if a == "TX" else a for a in args)

    result = store.cli("explain", *args)

    assert result.exit_code == 0, result.output
    assert f"\tskip\t{reason}\t" in result.output
    assert f"{reason}: " in result.output  # the legend says what the rule means


def test_explain_for_an_unsubscribed_person_says_never(store: Store) -> None:
    """A person on the suppression list is told apart from one merely in cooldown."""
    store.customer("C1")
    store.pos.sale("C1", datetime(2026, 11, 20, 10, 0))
    store.cli("suppress", "add", "--customer", "C1", "--reason", "asked in the shop")
    store.run(local(2026, 11, 20, 23))

    result = store.cli("explain", "--customer", "C1")

    assert "\tskip\tunsubscribed\t" in result.output
    assert "May next be asked: never, suppressed (customer C1 (by admin))." in result.output


def test_explain_for_an_unknown_person_says_what_the_ledger_covers(store: Store) -> None:
    """Asking about someone never read gives a plain answer, not an empty table."""
    store.run(local(2026, 11, 20, 23))
    result = store.cli("explain", "--email", "nobody@example.com")
    assert result.exit_code == 0
    assert "No decision recorded for that email address" in result.output
    assert "covers up to 2026-11-20 23:00" in result.output


def test_explain_needs_exactly_one_subject(store: Store) -> None:
    """explain with no subject, or two, is a usage error (exit 2)."""
    assert store.cli("explain").exit_code == 2
    assert store.cli("explain", "--customer", "C1", "--transaction", "5").exit_code == 2


def test_a_misspelled_key_stops_the_program_naming_the_key(store: Store) -> None:
    """A typo in the config file is exit 2 with the key, a suggestion and what is allowed."""
    store.extra["rules"] = {"cooldown_month": "2"}
    result = store.cli("sync")
    assert result.exit_code == 2
    assert "rules.cooldown_month: unknown setting; did you mean 'cooldown_months'?" in result.output
    assert store.messages() == []


def test_a_bad_time_zone_stops_the_program_naming_value_and_hint(store: Store) -> None:
    """A time zone that does not exist is exit 2 before any work, with a close match."""
    store.extra["store"] = {"timezone": '"Europe/Amsterdm"'}
    result = store.cli("sync")
    assert result.exit_code == 2
    assert "store.timezone = 'Europe/Amsterdm'" in result.output
    assert "not an IANA time zone" in result.output
    assert "did you mean Europe/Amsterdam" in result.output
    assert not store.ledger_path.exists()


def test_a_sender_that_is_not_an_address_stops_the_program(store: Store) -> None:
    """A From address with a typo is a config error, not a night of failed requests."""
    store.extra["email"] = {"from_address": '"feedback@@demo-cycles.example"'}
    result = store.cli("sync")
    assert result.exit_code == 2
    assert "email.from_address = 'feedback@@demo-cycles.example': not an email address" in (
        result.output
    )


def test_excluding_every_location_is_refused(store: Store) -> None:
    """At least one location must stay active; excluding all of them is a config error."""
    store.extra["rules"] = {"excluded_locations": '["1", "2", "3"]'}
    result = store.cli("sync")
    assert result.exit_code == 2
    assert "excludes every location; at least one must stay active" in result.output


def test_environment_overrides_the_file_and_secrets_come_from_files(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SURVEYSYNC__SECTION__KEY wins over the file; a *_file secret is read from disk."""
    secret_file = tmp_path / "link-secret"
    secret_file.write_text("from-a-file-at-least-32-bytes-long\n")
    monkeypatch.setenv("SURVEYSYNC__RULES__COOLDOWN_MONTHS", "6")
    monkeypatch.setenv("SURVEYSYNC__EMAIL__LINK_SECRET_FILE", str(secret_file))
    settings = load_settings(store.write_config())
    assert settings.rules.cooldown_months == 6
    assert settings.email.link_secret.get_secret_value() == "from-a-file-at-least-32-bytes-long"
    assert "from-a-file" not in repr(settings)


def test_init_writes_a_config_that_loads_to_the_defaults(tmp_path: Path) -> None:
    """`surveysync init` writes a file that loads cleanly and matches the built-in defaults
    (a relative path meaning the same file beside the config)."""
    target = tmp_path / "surveysync.toml"
    result = CliRunner().invoke(main, ["init", str(target)])
    assert result.exit_code == 0
    with contextlib.chdir(tmp_path):
        loaded = load_settings(target).model_dump()
        defaults = Settings().model_dump()
    defaults["provider"]["outbox_dir"] = tmp_path / "outbox"
    defaults["schedule"]["heartbeat_file"] = tmp_path / "surveysync-data/heartbeat.json"
    for section in ("pos", "ledger"):  # SecretStr compares by value
        relative = defaults[section].pop("url").get_secret_value()
        url = loaded[section].pop("url").get_secret_value()
        assert url == relative.replace("sqlite:///", f"sqlite:///{tmp_path}/")
    assert loaded == defaults
    again = CliRunner().invoke(main, ["init", str(target)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_the_example_config_lists_every_setting_and_matches_the_shipped_copy() -> None:
    """config/surveysync.example.toml documents every setting and is what `init` writes."""
    assert (ROOT / "config" / "surveysync.example.toml").read_text("utf-8") == example_config()
    text = example_config()
    for section, model in _sections(Settings, ""):
        assert f"[{section}]" in text
        for key, field in model.model_fields.items():
            if not _is_section(field.annotation):
                assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), f"{section}.{key} missing"
    tomllib.loads(text)


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _sections(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, type[BaseModel]]]:
    """Every TOML table of the settings, nested ones (provider.smtp) included."""
    for name, field in model.model_fields.items():
        if _is_section(field.annotation):
            table = f"{prefix}{name}"
            yield table, field.annotation  # type: ignore[misc]
            yield from _sections(field.annotation, f"{table}.")  # type: ignore[arg-type]


def test_check_reports_each_part_on_its_own_line(store: Store) -> None:
    """check says ok for config, POS, mapping, ledger and provider on a working setup."""
    store.use_own_values()
    result = store.cli("check")
    assert result.exit_code == 0, result.output
    for part in ("config", "pos", "mapping", "ledger", "provider"):
        assert re.search(rf"^{part}\s+ok\s", result.output, re.MULTILINE), part


def test_check_names_a_mapping_that_lacks_columns(store: Store) -> None:
    """A custom query missing columns fails check with the missing names, exit 1."""
    store.extra["pos"] = {
        "mapping": '"custom"',
        "query": '"SELECT id AS transaction_id, created_at AS sale_at '
        "FROM transactions WHERE created_at > :start "
        'AND created_at <= :end"',
    }
    result = store.cli("check")
    assert result.exit_code == 1
    assert re.search(
        r"^mapping\s+failed\s+the mapped query lacks columns: finalized_at, "
        r"customer_id",
        result.output,
        re.MULTILINE,
    )


def test_check_reports_an_unreachable_pos(store: Store) -> None:
    """A POS file that is not there is reported as pos failed, not as a crash."""
    store.extra["pos"] = {"url": f'"sqlite:///{(store.root / "gone.sqlite").as_posix()}"'}
    result = store.cli("check")
    assert result.exit_code == 1
    assert re.search(
        r"^pos\s+failed\s+the POS database is unavailable", result.output, re.MULTILINE
    )


def test_status_json_shows_runs_coverage_missed_days_and_reasons(store: Store) -> None:
    """status --json gives monitoring the last runs, covered and missed days and counts."""
    store.customer("C1")
    store.pos.sale("C1", datetime(2026, 11, 15, 10, 0))
    store.first_run_start = "2026-11-14T00:00:00"
    store.run(local(2026, 11, 15, 23))
    with time_machine.travel(local(2026, 11, 18, 9), tick=False):
        result = store.cli("status", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["last_success"]["counts"]["sent"] == 1
    assert data["covered_days"] == ["2026-11-14", "2026-11-15"]
    assert data["missed_days"] == ["2026-11-16", "2026-11-17"]
    assert data["decisions_by_reason"] == {"requested": 1}
    assert data["requests_by_status"] == {"sent": 1}


def test_status_exits_1_after_a_failed_run(store: Store) -> None:
    """Monitoring can rely on the exit code: the latest run failed, status exits 1."""
    store.settings()
    (store.root / "pos.sqlite").unlink()
    assert store.cli("sync").exit_code == 1
    result = store.cli("status")
    assert result.exit_code == 1
    assert "failed" in result.output


def test_suppress_add_list_remove_round_trip_masks_emails(store: Store) -> None:
    """Suppressions can be listed (emails masked) and removed again."""
    assert store.cli("suppress", "add", "--email", "Kim.Jansen@example.com").exit_code == 0
    assert store.cli("suppress", "add", "--customer", "C9").exit_code == 0
    listing = store.cli("suppress", "list").output
    assert "k***@example.com" in listing and "Kim.Jansen" not in listing.replace("k***", "")
    assert "customer C9" in listing
    assert store.cli("suppress", "remove", "--email", "kim.jansen@EXAMPLE.com").exit_code == 0
    assert store.cli("suppress", "remove", "--email", "kim.jansen@example.com").exit_code == 1
    assert "k***@example.com" not in store.cli("suppress", "list").output


def test_suppress_refuses_an_invalid_email(store: Store) -> None:
    """A mistyped address is a usage error, not a silent no-op."""
    result = store.cli("suppress", "add", "--email", "kim@@example.com")
    assert result.exit_code == 2
    assert "--email" in result.output


@pytest.mark.parametrize("hour", [0, 8, 23], ids=["just-after-midnight", "morning", "late"])
def test_demo_runs_and_every_skip_reason_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hour: int
) -> None:
    """`surveysync demo` builds a store, sends surveys and shows every skip reason, whatever
    the time of day it is run (it never makes sales in the future)."""
    monkeypatch.chdir(tmp_path)
    with time_machine.travel(local(2026, 11, 22, hour, 5), tick=False):
        result = CliRunner().invoke(main, ["demo", "--sales", "3000"])
    assert result.exit_code == 0, result.output
    sent = int(re.search(r"^sent\t(\d+)\t", result.output, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert sent > 100
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == sent
    # The demo reads through the preset, whose joins are on primary keys: no sale comes in two
    # rows, so repeated_row (a custom query's mistake) cannot appear.
    for reason in set(SkipReason) - {SkipReason.REPEATED_ROW}:
        assert re.search(rf"^{reason.value}\t\d+\t", result.output, re.MULTILINE), reason
    assert "explain --customer C" in result.output


def test_every_command_has_help_and_is_in_the_readme() -> None:
    """Each CLI command explains itself and is documented in README.md."""
    readme = (ROOT / "README.md").read_text("utf-8")
    runner = CliRunner()
    names = [n for n in main.commands if n != "suppress"] + [
        "suppress add",
        "suppress remove",
        "suppress list",
    ]
    for name in names:
        result = runner.invoke(main, [*name.split(), "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, name
        assert f"surveysync {name}" in readme, f"`surveysync {name}` missing from README"


def test_every_reason_code_is_documented_in_the_readme() -> None:
    """The README's reason table lists every stable code."""
    readme = (ROOT / "README.md").read_text("utf-8")
    for reason in SkipReason:
        assert f"`{reason.value}`" in readme, reason.value


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("pos", "url"),
        ("ledger", "url"),
        ("ledger", "hash_secret"),
        ("provider.smtp", "password"),
        ("provider.resend", "api_key"),
        ("provider.webhook", "secret"),
        ("email", "link_secret"),
    ],
)
def test_every_secret_can_come_from_a_file(tmp_path: Path, section: str, key: str) -> None:
    """Each secret setting has a <key>_file twin, read from disk and trimmed of its newline."""
    secret = tmp_path / "secret"
    secret.write_text("sqlite:///from-a-file-with-a-longer-name.sqlite\n", encoding="utf-8")
    extra = 'username = "u"\n' if section == "provider.smtp" else ""
    config = tmp_path / "surveysync.toml"
    config.write_text(f'[{section}]\n{extra}{key}_file = "{secret.as_posix()}"\n', encoding="utf-8")
    settings: Any = load_settings(config)
    for part in section.split("."):
        settings = getattr(settings, part)
    # A SQLite URL's relative file is beside the config, like every relative path in it.
    value = getattr(settings, key).get_secret_value()
    relative = "sqlite:///from-a-file-with-a-longer-name.sqlite"
    assert value == relative if key != "url" else value == f"sqlite:///{tmp_path}/{relative[10:]}"
