"""What the POS login could change, asked of the database itself: the third layer of a
read-only POS (after the statement guard and the read-only session, see ``engine``).

A SELECT can call a function that writes, signals another session or reaches another
database (``pg_terminate_backend``, ``dblink_exec``, a stored procedure); only a login
without those rights makes that impossible. ``write_rights`` answers in words for
``surveysync check``: an empty list means a read-only login.

Every statement here is a read, sent through the guarded engine. Never grants or revokes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import Connection, text

_PG_SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
_PG_SIGNAL = "SELECT pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')"
_PG_WRITABLE = """
SELECT n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
ORDER BY 1
"""
_MYSQL_READING = frozenset({"SELECT", "SHOW VIEW", "USAGE", "SHOW DATABASES"})
_MSSQL_SYSADMIN = "SELECT IS_SRVROLEMEMBER('sysadmin')"
_MSSQL_ROLES = """
SELECT r.name FROM sys.database_role_members m
JOIN sys.database_principals r ON r.principal_id = m.role_principal_id
WHERE m.member_principal_id = DATABASE_PRINCIPAL_ID()
"""
_MSSQL_READING_ROLES = frozenset({"db_datareader", "public"})
_SHOWN = 5


def write_rights(conn: Connection, dialect: str) -> list[str] | None:
    """What this login may do beyond reading, in words; [] for a read-only login, None
    when surveysync cannot tell for this kind of database."""
    ask: dict[str, Callable[[Connection], list[str]]] = {
        "sqlite": lambda conn: [],  # opened with mode=ro: the file cannot be written through it
        "postgresql": _postgresql,
        "mysql": _mysql,
        "mariadb": _mysql,
        "mssql": _mssql,
    }
    found = ask.get(dialect)
    return found(conn) if found else None


def _postgresql(conn: Connection) -> list[str]:
    if conn.execute(text(_PG_SUPERUSER)).scalar():
        return ["it is a superuser"]
    rights = []
    if conn.execute(text(_PG_SIGNAL)).scalar():
        rights.append("it may end other sessions (pg_signal_backend)")
    tables = list(conn.execute(text(_PG_WRITABLE)).scalars())
    if tables:
        rights.append(f"it may write to {len(tables)} tables ({_first(tables)})")
    return rights


def _mysql(conn: Connection) -> list[str]:
    privileges: set[str] = set()
    for (grant,) in conn.execute(text("SHOW GRANTS")):
        privileges |= _granted(str(grant))
    beyond = sorted(privileges - _MYSQL_READING)
    return [f"it has the grants {_first(beyond)}"] if beyond else []


def _granted(grant: str) -> set[str]:
    """The privileges of one SHOW GRANTS line (column lists dropped)."""
    match = re.match(r"GRANT (.+?) ON ", grant)
    found = set()
    if match:
        listed = re.sub(r"\([^)]*\)", "", match.group(1))
        found = {p.strip().upper() for p in listed.split(",") if p.strip()}
    if "WITH GRANT OPTION" in grant.upper():
        found.add("GRANT OPTION")
    return found


def _mssql(conn: Connection) -> list[str]:
    if conn.execute(text(_MSSQL_SYSADMIN)).scalar() == 1:
        return ["it is a member of sysadmin"]
    roles = sorted(set(conn.execute(text(_MSSQL_ROLES)).scalars()) - _MSSQL_READING_ROLES)
    return [f"it is a member of {_first(roles)} (beyond db_datareader)"] if roles else []


def _first(names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more
