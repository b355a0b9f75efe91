"""The first setup's mistakes are said in words an admin can act on: an ODBC driver that is not
installed, and a config that still holds the example values `surveysync init` wrote."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from surveysync.cli import main
from surveysync.demo import new_pos
from surveysync.pos.sql.odbc import microsoft_driver_library
from tests.conftest import Store, server_missing

SQL_SERVER_18 = "ODBC Driver 18 for SQL Server"


def _uninstalled_sql_server_driver() -> str:
    """Microsoft's driver 18 where it is not installed (Debian without the mssql extra); a
    later one where it is (GitHub's runners ship 18; the extra brings it from PyPI): either
    way a real name the driver manager cannot load."""
    try:
        import pyodbc
    except ImportError as exc:  # libodbc.so.2 missing: CI installs unixodbc (.ci/run)
        server_missing("the ODBC driver manager (unixODBC)", exc)
    installed = set(pyodbc.drivers())
    if microsoft_driver_library() is not None:
        installed.add(SQL_SERVER_18)
    return next(n for n in (SQL_SERVER_18, "ODBC Driver 99 for SQL Server") if n not in installed)


def _listing_command() -> str:
    return "Get-OdbcDriver" if sys.platform == "win32" else "odbcinst -q -d"


def test_check_and_a_run_name_the_odbc_driver_that_is_not_installed(store: Store) -> None:
    """A POS on SQL Server through a driver this machine lacks: `check` and `sync` both say
    which driver, how to list the installed ones and where to get it (no server needed: the
    driver manager fails before any connection), and nothing is retried as if the server
    were down."""
    driver = _uninstalled_sql_server_driver()
    url = f"mssql+pyodbc://reader:s3cret-pw@127.0.0.1:1/pos?driver={driver.replace(' ', '+')}"
    store.extra["pos"] = {"url": f'"{url}"'}

    checked = store.cli("check")
    assert checked.exit_code == 1, checked.output
    [pos_line] = [line for line in checked.output.splitlines() if line.startswith("pos ")]
    assert "failed" in pos_line and f"'{driver}'" in pos_line and "not installed" in pos_line
    assert _listing_command() in pos_line
    assert "ODBC Driver 18 for SQL Server" in pos_line and "learn.microsoft.com" in pos_line
    assert "s3cret-pw" not in checked.output

    synced = store.cli("sync")
    assert synced.exit_code == 1
    assert f"'{driver}'" in synced.output and _listing_command() in synced.output
    status = store.cli("status", "--json")
    assert f"'{driver}'" in status.output and "s3cret-pw" not in status.output


def test_a_driver_named_in_an_odbc_connection_string_is_named_too(store: Store) -> None:
    """The README's `odbc_connect=` form: the DRIVER={...} it names is the one reported."""
    driver = _uninstalled_sql_server_driver()
    connect = f"DRIVER={{{driver}}};SERVER=127.0.0.1,1;DATABASE=pos;UID=u;PWD=s3cret-pw"
    store.extra["pos"] = {"url": f"'mssql+pyodbc:///?odbc_connect={connect}'"}
    checked = store.cli("check")
    assert checked.exit_code == 1
    assert f"the ODBC driver '{driver}'" in checked.output and "s3cret-pw" not in checked.output


def test_a_missing_data_source_without_a_driver_says_to_name_one(store: Store) -> None:
    """A URL naming neither a driver nor a defined data source is told to add ?driver=."""
    _uninstalled_sql_server_driver()
    store.extra["pos"] = {"url": '"mssql+pyodbc://reader:s3cret-pw@no-such-dsn"'}
    checked = store.cli("check")
    assert checked.exit_code == 1
    assert "'no-such-dsn' is not defined" in checked.output and "?driver=" in checked.output


@pytest.mark.parametrize(
    ("driver", "source"),
    [("FreeTDS", "apt install tdsodbc"), ("MariaDB ODBC 3.1 Driver", "apt install odbc-mariadb")],
)
def test_the_missing_drivers_source_follows_its_name(
    store: Store, driver: str, source: str
) -> None:
    """FreeTDS and MariaDB drivers are pointed at their Debian packages."""
    _uninstalled_sql_server_driver()
    name = f"{driver} (not installed here)"
    store.extra["pos"] = {"url": f'"mssql+pyodbc://u:pw@127.0.0.1:1/pos?driver={name}"'}
    checked = store.cli("check")
    assert f"'{name}'" in checked.output and source in checked.output


# --- a config straight from `surveysync init` -------------------------------------------------

EXAMPLE_SETTINGS = (
    "store.name",
    "pos.url",
    "email.from_name",
    "email.link_secret",
    "email.from_address",
    "email.unsubscribe_mailto",
    "email.survey_base_url",
    "email.unsubscribe_base_url",
)


def _config_failures(output: str) -> dict[str, str]:
    """setting -> its failed `config` line of `surveysync check`."""
    failed = [line for line in output.splitlines() if re.match(r"config\s+failed\s", line)]
    return {line.split()[2]: line for line in failed}


def _edit(path: Path, lines: dict[str, str]) -> None:
    """Replace whole lines of the file, as an admin would in an editor."""
    text = path.read_text(encoding="utf-8")
    for old, new in lines.items():
        assert re.search(rf"^{re.escape(old)}$", text, re.MULTILINE), old
        text = re.sub(rf"^{re.escape(old)}$", new, text, flags=re.MULTILINE)
    path.write_text(text, encoding="utf-8")


def test_check_fails_on_an_untouched_init_file_and_names_each_example_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check` on the file `init` wrote exits 1 with one line per setting still holding an
    example value (the secret's value never shown); each line goes once that setting is
    edited, and with all of them edited (and a real POS) `check` passes."""
    monkeypatch.chdir(tmp_path)  # the file's relative paths (ledger, outbox) land here
    config = tmp_path / "surveysync.toml"
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(config)]).exit_code == 0
    example_secret = tomllib.loads(config.read_text("utf-8"))["email"]["link_secret"]

    untouched = runner.invoke(main, ["--config", str(config), "check"])
    assert untouched.exit_code == 1
    failures = _config_failures(untouched.output)
    assert sorted(failures) == sorted(EXAMPLE_SETTINGS), untouched.output
    assert "'feedback@demo-cycles.example'" in failures["email.from_address"]
    assert "'https://survey.example/s'" in failures["email.survey_base_url"]
    assert "token_urlsafe" in failures["email.link_secret"]
    assert example_secret not in untouched.output

    _edit(config, {f'link_secret = "{example_secret}"': f'link_secret = "{"k7" * 20}"'})
    one_edited = _config_failures(runner.invoke(main, ["--config", str(config), "check"]).output)
    assert sorted(one_edited) == sorted(set(EXAMPLE_SETTINGS) - {"email.link_secret"})

    new_pos(tmp_path / "pos" / "pos.sqlite").flush()
    _edit(
        config,
        {
            'name = "Demo Cycles"': 'name = "Velo Oost"',
            'url = "sqlite:///surveysync-demo/pos.sqlite"': 'url = "sqlite:///pos/pos.sqlite"',
            'from_name = "Demo Cycles"': 'from_name = "Velo Oost"',
            'from_address = "feedback@demo-cycles.example"': 'from_address = "nps@velo-oost.nl"',
            'unsubscribe_mailto = "unsubscribe@demo-cycles.example"':
                'unsubscribe_mailto = "afmelden@velo-oost.nl"',
            'survey_base_url = "https://survey.example/s"':
                'survey_base_url = "https://enquete.velo-oost.nl/s"',
            'unsubscribe_base_url = "https://survey.example/u"':
                'unsubscribe_base_url = "https://enquete.velo-oost.nl/u"',
        },
    )  # fmt: skip
    ready = runner.invoke(main, ["--config", str(config), "check"])
    assert ready.exit_code == 0, ready.output
    assert re.search(r"^config\s+ok\s", ready.output, re.MULTILINE)


def test_an_example_domain_typed_by_hand_is_named_too(store: Store) -> None:
    """An alert address on example.com (a domain that reaches no one) fails check by name."""
    store.use_own_values()
    store.extra["alerts"] = {"to": '["manager@example.com", "owner@velo-oost.nl"]'}
    checked = store.cli("check")
    assert checked.exit_code == 1
    failures = _config_failures(checked.output)
    assert list(failures) == ["alerts.to"] and "manager@example.com" in failures["alerts.to"]
