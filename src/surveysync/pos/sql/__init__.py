"""The SQL sales source: a POS database read through SQLAlchemy and a mapping query.

    engine    the engine that can only read (the SELECT-only guard, read-only sessions)
    session   what each session is set to: read-only, its isolation (SQL Server: SNAPSHOT
              where allowed), the time zone of the POS's times, the connect and query
              timeouts; every read ends in ROLLBACK
    driver_errors  which PosError a driver's error is, by its code (SQLSTATE, error number)
    mapping   the column contract, the Ascend preset, rows to ``Sale``, time conversion
    odbc      a pyodbc URL as its driver reads it (MariaDB's Port=, FreeTDS's TDS_Version,
              Microsoft's driver from its wheel); a driver that is not installed, said in
              words an admin can act on
    sqlserver ``[pos.sqlserver]`` written as an ODBC connection string
    source    ``SqlSource``: keyed chunks, self-checks, driver errors into ``PosError``

It must never write to the POS database, whatever the mapping or the login allows.
"""

from surveysync.pos.sql.engine import assert_read_only, create_pos_engine
from surveysync.pos.sql.mapping import ASCEND_QUERY, REQUIRED_COLUMNS
from surveysync.pos.sql.source import SqlSource

__all__ = ["ASCEND_QUERY", "REQUIRED_COLUMNS", "SqlSource", "assert_read_only", "create_pos_engine"]
