"""ODBC drivers as they really behave: a URL rewritten so that the driver it names reads it
right (``for_driver``), and a driver that is not there told apart from a server that does not
answer, in words an admin can act on (which driver, how to list them, where to get it).

SQLAlchemy writes a pyodbc URL as ``Server=host,port``. Not every driver reads that:

    MariaDB/MySQL   Connector/ODBC ignores ``,port`` and silently connects to 3306: the
                    port goes into ``Port=`` instead
    FreeTDS         negotiates the protocol version unless told one, and its second try
                    against a server that never answers waits forever, past the login
                    timeout: ``TDS_Version=7.4`` (SQL Server 2012 and later) unless given
    Microsoft 18    "ODBC Driver 18 for SQL Server" need not be registered with unixODBC:
                    when it is not and the ``mssql`` extra installed Microsoft's wheel
                    (``mssql-python-odbc``), the driver library in that wheel is named by path

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

import importlib.util
import platform
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote_plus

from sqlalchemy.engine import URL, make_url

from surveysync.pos.base import DriverMissing

_NOT_LOADED = frozenset({"IM002", "IM003"})
_GENERAL_WARNING = "01000"
_CANNOT_OPEN_LIB = re.compile(r"Can't open lib '([^']+)'")
_DRIVER_IN_CONNECT_STRING = re.compile(r"DRIVER=\{?([^};]+)\}?", re.IGNORECASE)

MICROSOFT_DRIVER = "ODBC Driver 18 for SQL Server"
FREETDS_VERSION = "7.4"  # SQL Server 2012 and later; 7.3 for 2008
_SERVER_WITH_PORT = re.compile(r"((?:^|;)\s*SERVER\s*=\s*)([^;,]+),\s*(\d+)", re.IGNORECASE)
_PORT = re.compile(r"(^|;)\s*PORT\s*=", re.IGNORECASE)
_TDS_VERSION = re.compile(r"(^|;)\s*TDS_Version\s*=", re.IGNORECASE)
# The folder of Microsoft's wheel that holds the driver built for this Linux, by os-release.
_LINUX_FAMILIES = (("debian", "debian_ubuntu"), ("ubuntu", "debian_ubuntu"), ("rhel", "rhel"),
                   ("fedora", "rhel"), ("suse", "suse"), ("alpine", "alpine"))  # fmt: skip

# Where each family of drivers comes from, by a word of its registered name.
_SOURCES = (
    ("sql server", "Microsoft's \"ODBC Driver 18 for SQL Server\" (pip install "
     "'surveysync[mssql]' brings it on Linux; or learn.microsoft.com/sql/connect/odbc: "
     "msodbcsql18 on Linux, the installer on Windows)"),
    ("freetds", "FreeTDS (Debian/Ubuntu: apt install tdsodbc)"),
    ("mariadb", "MariaDB Connector/ODBC (Debian/Ubuntu: apt install odbc-mariadb)"),
    ("mysql", "MariaDB Connector/ODBC (Debian/Ubuntu: apt install odbc-mariadb)"),
    ("postgres", "psqlODBC (Debian/Ubuntu: apt install odbc-postgresql)"),
)  # fmt: skip


def for_driver(url: URL) -> URL:
    """``url`` as the ODBC driver it names reads it (see above); any other URL as it is."""
    if url.get_driver_name() != "pyodbc":
        return url
    if "odbc_connect" in url.query:
        connect = _one(url.query["odbc_connect"]) or ""  # make_url has unquoted it
        connect = _connect_string_for_driver(connect, mysql=_is_mysql(url))
        return url.update_query_dict({"odbc_connect": connect})
    query = dict(url.query)
    keys = {key.lower() for key in query}
    driver = _one(query.get("driver")) or ""
    if _is_mysql(url) and url.port is not None and "port" not in keys:
        url, query = url._replace(port=None), query | {"port": str(url.port)}
    if _is_freetds(driver) and "tds_version" not in keys:
        query["TDS_Version"] = FREETDS_VERSION
    library = _unregistered_microsoft_driver(driver)
    if library is not None:
        query["driver"] = library
    return url.set(query=query)


def _connect_string_for_driver(connect: str, *, mysql: bool) -> str:
    """An ``odbc_connect`` string, taken as is but for what its driver needs (a MariaDB
    ``Server=host,port`` written as ``Server=host;Port=port``)."""
    server = _SERVER_WITH_PORT.search(connect)
    if mysql and server is not None and not _PORT.search(connect):
        start, host, port = server.group(1), server.group(2), server.group(3)
        rest = connect[server.end() :]
        connect = f"{connect[: server.start()]}{start}{host};Port={port}{rest}"
    found = _DRIVER_IN_CONNECT_STRING.search(connect)
    driver = found.group(1).strip() if found else ""
    if _is_freetds(driver) and not _TDS_VERSION.search(connect):
        connect = f"{connect.rstrip(';')};TDS_Version={FREETDS_VERSION}"
    library = _unregistered_microsoft_driver(driver)
    if found is not None and library is not None:
        connect = connect[: found.start()] + f"DRIVER={{{library}}}" + connect[found.end() :]
    return connect


def _is_mysql(url: URL) -> bool:
    return url.get_backend_name() in ("mysql", "mariadb")


def _is_freetds(driver: str) -> bool:
    return "tds" in driver.lower()  # "FreeTDS", or its library libtdsodbc.so


def _unregistered_microsoft_driver(driver: str) -> str | None:
    """The library in Microsoft's wheel, when ``driver`` is its name and unixODBC has no
    driver registered by it; else None (the name is used as it is)."""
    if driver.lower() != MICROSOFT_DRIVER.lower() or sys.platform == "win32":
        return None
    import pyodbc  # only for pyodbc URLs: it needs the unixODBC driver manager

    if driver in pyodbc.drivers():
        return None
    library = microsoft_driver_library()
    return str(library) if library is not None else None


def microsoft_driver_library() -> Path | None:
    """Microsoft's ODBC Driver 18 from its PyPI wheel (``mssql-python-odbc``, in the
    ``mssql`` extra) for this Linux, if installed."""
    spec = importlib.util.find_spec("mssql_python_odbc")
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = Path(next(iter(spec.submodule_search_locations))) / "libs" / "linux"
    arch = {"aarch64": "arm64"}.get(platform.machine(), platform.machine())
    found = sorted(libs.glob(f"{_linux_family()}/{arch}/lib/libmsodbcsql-18*.so*"))
    found = found or sorted(libs.glob(f"*/{arch}/lib/libmsodbcsql-18*.so*"))
    return found[0] if found else None


def _linux_family() -> str:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return "*"
    names = f"{release.get('ID', '')} {release.get('ID_LIKE', '')}".lower().split()
    for word, family in _LINUX_FAMILIES:
        if word in names:
            return family
    return "*"


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
