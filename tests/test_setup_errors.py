"""The first setup's mistakes are said in words an admin can act on: an ODBC driver that is not
installed, and a config that still holds the example values `surveysync init` wrote."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import Store, server_missing

SQL_SERVER_18 = "ODBC Driver 18 for SQL Server"


def _uninstalled_sql_server_driver() -> str:
    """Microsoft's driver 18 where it is not installed (Debian); a later one where it is
    (GitHub's runners ship 18): either way a real name the driver manager cannot load."""
    try:
        import pyodbc
    except ImportError as exc:  # libodbc.so.2 missing: CI installs unixodbc (.ci/run)
        server_missing("the ODBC driver manager (unixODBC)", exc)
    installed = set(pyodbc.drivers())
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
def test_the_missing_drivers_source_follows_its_name(store: Store, driver: str, source: str) -> None:
    """FreeTDS and MariaDB drivers are pointed at their Debian packages."""
    _uninstalled_sql_server_driver()
    name = f"{driver} (not installed here)"
    store.extra["pos"] = {"url": f'"mssql+pyodbc://u:pw@127.0.0.1:1/pos?driver={name}"'}
    checked = store.cli("check")
    assert f"'{name}'" in checked.output and source in checked.output
