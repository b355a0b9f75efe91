"""An ODBC driver that is not there: told apart from a server that does not answer, and said
in words an admin can act on (which driver, how to list the installed ones, where to get it).

pyodbc raises ``pyodbc.Error(sqlstate, message)``; the driver manager reports a driver it
cannot load before any server is contacted, so the run and ``surveysync check`` fail at once:

    IM002   "Data source name not found and no default driver specified": the named driver is
            not registered (the Windows driver manager) or the DSN does not exist
    IM003   "Specified driver could not be loaded" (registered, but its library is gone)
    01000   unixODBC's "Can't open lib '<driver>' : file not found"; 01000 is the general
            warning state, so only there does the message's wording decide

Reads the error's SQLSTATE and the URL; never the server, never the credentials.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from urllib.parse import unquote_plus

from sqlalchemy.engine import make_url

from surveysync.pos.base import DriverMissing

_NOT_LOADED = frozenset({"IM002", "IM003"})
_GENERAL_WARNING = "01000"
_CANNOT_OPEN_LIB = re.compile(r"Can't open lib '([^']+)'")
_DRIVER_IN_CONNECT_STRING = re.compile(r"DRIVER=\{?([^};]+)\}?", re.IGNORECASE)

# Where each family of drivers comes from, by a word of its registered name.
_SOURCES = (
    ("sql server", "Microsoft's \"ODBC Driver 18 for SQL Server\" (learn.microsoft.com/sql/"
     "connect/odbc: msodbcsql18 on Linux, the installer on Windows)"),
    ("freetds", "FreeTDS (Debian/Ubuntu: apt install tdsodbc)"),
    ("mariadb", "MariaDB Connector/ODBC (Debian/Ubuntu: apt install odbc-mariadb)"),
    ("mysql", "MariaDB Connector/ODBC (Debian/Ubuntu: apt install odbc-mariadb)"),
    ("postgres", "psqlODBC (Debian/Ubuntu: apt install odbc-postgresql)"),
)  # fmt: skip


def missing_driver(exc: BaseException, url: str) -> DriverMissing | None:
    """A ``DriverMissing`` saying what to do when ``exc`` (SQLAlchemy's wrapper or pyodbc's
    own error) is the driver manager failing to load the ODBC driver of ``url``; else None."""
    parsed = make_url(url)
    if parsed.get_driver_name() != "pyodbc":
        return None
    sqlstate, message = _sqlstate(getattr(exc, "orig", None) or exc)
    opened = _CANNOT_OPEN_LIB.search(message)
    if sqlstate not in _NOT_LOADED and not (sqlstate == _GENERAL_WARNING and opened):
        return None
    driver = _driver_of(parsed.query) or (opened.group(1) if opened else None)
    if driver is None:
        return DriverMissing(
            f"the ODBC data source {parsed.host or '(none)'!r} is not defined and pos.url names "
            "no driver: add ?driver=... (for example ?driver=ODBC+Driver+18+for+SQL+Server); "
            f"{_how_to_list()}"
        )
    return DriverMissing(
        f"the ODBC driver {driver!r} that pos.url names is not installed on this machine; "
        f"{_how_to_list()}; get it from {_source_of(driver)}, or name an installed one in "
        "pos.url's driver="
    )


def _sqlstate(error: BaseException) -> tuple[str, str]:
    """pyodbc's (SQLSTATE, message) from its error's args; ("", "") for any other error."""
    args = error.args
    if len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        return args[0], args[1]
    return "", ""


def _driver_of(query: Mapping[str, str | tuple[str, ...]]) -> str | None:
    """The driver a SQLAlchemy pyodbc URL names: ``?driver=`` or the DRIVER of
    ``?odbc_connect=``."""
    driver = _one(query.get("driver"))
    if driver:
        return driver
    connect = _one(query.get("odbc_connect"))
    found = _DRIVER_IN_CONNECT_STRING.search(unquote_plus(connect or ""))
    return found.group(1).strip() if found else None


def _one(value: object) -> str | None:
    if isinstance(value, tuple):  # a parameter given twice: the driver manager takes the last
        value = value[-1] if value else None
    return value if isinstance(value, str) else None


def _how_to_list() -> str:
    if sys.platform == "win32":
        return "list the installed drivers with Get-OdbcDriver (PowerShell)"
    return "list the installed drivers with: odbcinst -q -d"


def _source_of(driver: str) -> str:
    name = driver.lower()
    for word, source in _SOURCES:
        if word in name:
            return source
    return "its vendor; for example " + "; ".join(
        dict.fromkeys(source for _, source in _SOURCES[:3])
    )
