"""SQL Server by its parts: the ``[pos.sqlserver]`` settings written as the ODBC connection
string the named driver reads, and the ``mssql+pyodbc`` URL that carries it.

    Microsoft's driver   Server=tcp:host,port | host\\INSTANCE | host; Encrypt=yes|no|strict;
                         TrustServerCertificate=yes; ApplicationIntent=ReadOnly
    FreeTDS              Server=host\\INSTANCE | host; Port=port; Encryption=require|off
                         (it checks a certificate only against a CA file in freetds.conf);
                         ApplicationIntent=ReadOnly; TDS_Version (added by ``odbc.for_driver``)

Either way: Database, then UID and PWD of a SQL Server login or Trusted_Connection=yes.
Values are quoted as ODBC quotes them (``{…}``, a ``}`` doubled) when they hold a ``;``, a
brace or a space at an end, so that a password cannot add keywords. ``odbc_connect`` is taken
as it is. Nothing here is logged; the password leaves only inside the connection string.
"""

from __future__ import annotations

from urllib.parse import quote_plus

from surveysync.config import SqlPosSettings, SqlServerEncrypt, SqlServerSettings

_NEEDS_BRACES = (";", "{", "}")


def pos_url(settings: SqlPosSettings) -> str:
    """The database URL the source reads: ``pos.url``, or the one ``[pos.sqlserver]``
    makes."""
    if settings.sqlserver is None:
        return settings.url.get_secret_value()
    connect = connection_string(settings.sqlserver)
    return f"mssql+pyodbc:///?odbc_connect={quote_plus(connect)}"


def connection_string(settings: SqlServerSettings) -> str:
    """The ODBC connection string of ``settings``, for the driver it names."""
    if settings.odbc_connect is not None:
        return settings.odbc_connect.get_secret_value()
    freetds = "tds" in settings.driver.lower()
    pairs = [("Driver", settings.driver), *_place(settings, freetds=freetds)]
    pairs.append(("Database", settings.database or ""))
    if settings.windows_authentication:
        pairs.append(("Trusted_Connection", "yes"))
    else:
        password = settings.password.get_secret_value() if settings.password else ""
        pairs += [("UID", settings.user or ""), ("PWD", password)]
    pairs += _security(settings, freetds=freetds)
    if settings.read_only_intent:
        pairs.append(("ApplicationIntent", "ReadOnly"))
    return ";".join(f"{key}={quoted(value)}" for key, value in pairs)


def _place(settings: SqlServerSettings, *, freetds: bool) -> list[tuple[str, str]]:
    server = settings.server or ""
    if settings.instance:
        return [("Server", f"{server}\\{settings.instance}")]
    if settings.port is None:
        return [("Server", server)]
    if freetds:
        return [("Server", server), ("Port", str(settings.port))]
    return [("Server", f"tcp:{server},{settings.port}")]


def _security(settings: SqlServerSettings, *, freetds: bool) -> list[tuple[str, str]]:
    if freetds:
        return [("Encryption", "off" if settings.encrypt is SqlServerEncrypt.NO else "require")]
    pairs = [("Encrypt", settings.encrypt.value)]
    if settings.trust_server_certificate:
        pairs.append(("TrustServerCertificate", "yes"))
    return pairs


def quoted(value: str) -> str:
    """``value`` as an ODBC connection string value: braced when it could end the value
    early, a closing brace doubled inside."""
    if any(c in value for c in _NEEDS_BRACES) or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value
