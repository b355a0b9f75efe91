"""The POS stays untouched, on the real servers a POS lives on (PostgreSQL and MariaDB):
every attempt to write through surveysync's POS engine, its custom query or a function
fails, and the POS's fingerprint (every row, every sequence, a bystander session) is the
same before and after. ``surveysync check`` says when the login itself could write."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from surveysync import pos
from surveysync.config import Preset, SqlPosSettings
from surveysync.demo import PosWriter, create_pos_schema
from surveysync.pos import (
    CheckName,
    ColumnUnreadable,
    LoginCanWrite,
    PosError,
    PosMappingError,
    ReadOnlyViolation,
    create_pos_engine,
)
from tests.conftest import TZ, local

TABLES = ("customers", "transactions", "locations", "employees", "audit")


@dataclass
class Pos:
    """A POS database filled like a store's, an admin engine on it, and its kind."""

    url: str  # the login surveysync is given (the admin one unless a test makes another)
    admin: Engine
    kind: str
    bystander: Any = None  # another session, which nothing we send may end

    def fingerprint(self) -> tuple[Any, ...]:
        with self.admin.connect() as conn:
            rows = tuple(
                tuple(map(tuple, conn.execute(text(f"SELECT * FROM {t} ORDER BY 1")).all()))
                for t in TABLES
            )
            sequence = conn.execute(text(_SEQUENCE[self.kind])).scalar()
        return (rows, sequence, self.bystander_alive())

    def bystander_alive(self) -> bool:
        try:
            with self.bystander.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except Exception:  # the session was ended under it
            return False

    def admin_sql(self, *statements: str) -> None:
        with self.admin.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)


_SEQUENCE = {
    "postgresql": "SELECT last_value FROM audit_seq",
    "mariadb": "SELECT next_not_cached_value FROM audit_seq",
}


def _fill(engine: Engine) -> None:
    create_pos_schema(engine)
    writer = PosWriter(engine)
    writer.location(1, "Centrum")
    writer.employee(1, "Anouk")
    writer.customer("C1", "Kim", "Jansen", "kim@example.com")
    writer.sale("C1", datetime(2026, 11, 20, 10, 0))
    writer.flush()
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE audit (id INT PRIMARY KEY, note VARCHAR(50))")
        conn.exec_driver_sql("INSERT INTO audit VALUES (1, 'untouched')")
        conn.exec_driver_sql("CREATE SEQUENCE audit_seq")


@pytest.fixture
def postgresql_pos(postgres_url: str) -> Iterator[Pos]:
    admin = create_engine(postgres_url)
    _fill(admin)
    with admin.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS dblink")
        conn.exec_driver_sql(
            "CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS "
            "$$ INSERT INTO audit VALUES (2, 'written') RETURNING 1 $$"
        )
        conn.exec_driver_sql(
            "CREATE FUNCTION switch_rw() RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM "
            "(SELECT set_config('default_transaction_read_only', 'off', false)) x $$"
        )
    bystander = admin.raw_connection()
    found = Pos(postgres_url, admin, "postgresql", bystander)
    yield found
    bystander.close()
    admin.dispose()


@pytest.fixture
def mariadb_pos(mariadb_url: str) -> Iterator[Pos]:
    url = mariadb_url
    admin = create_engine(url)
    _fill(admin)
    with admin.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION sneaky() RETURNS INT NOT DETERMINISTIC MODIFIES SQL DATA "
            "BEGIN INSERT INTO audit VALUES (2, 'written'); RETURN 1; END"
        )
        conn.exec_driver_sql(
            "CREATE FUNCTION switch_rw() RETURNS INT NOT DETERMINISTIC MODIFIES SQL DATA "
            "BEGIN SET SESSION tx_read_only = 0; RETURN 1; END"
        )
    bystander = admin.raw_connection()
    yield Pos(url, admin, "mariadb", bystander)
    bystander.close()
    admin.dispose()


@pytest.fixture(params=["postgresql", "mariadb"])
def pos_db(request: pytest.FixtureRequest) -> Pos:
    """Each server a POS lives on, filled, with functions a hostile admin could have left."""
    return request.getfixturevalue(f"{request.param}_pos")  # type: ignore[no-any-return]


def _attempts(p: Pos) -> list[str]:
    """Statements that would change the POS or its server, as a mapping or a query could
    carry them."""
    kill = {
        "postgresql": "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid()",
        "mariadb": "SELECT release_all_locks()",
    }[p.kind]
    elsewhere = {
        "postgresql": f"SELECT dblink_exec('dbname={make_url(p.url).database} user=postgres "
        "host=127.0.0.1', 'DELETE FROM audit')",
        "mariadb": "SELECT load_file('/etc/hostname')",
    }[p.kind]
    return [
        kill,
        elsewhere,
        "SELECT nextval('audit_seq')" if p.kind == "postgresql" else "SELECT NEXTVAL(audit_seq)",
        "DELETE FROM audit",
        "UPDATE customers SET email = 'eve@evil.example'",
        "WITH gone AS (DELETE FROM audit RETURNING *) SELECT * FROM gone",
        "SELECT * FROM audit FOR UPDATE",
        "SELECT 1; DELETE FROM audit",
        "SELECT sneaky()",
        "SELECT * FROM customers; -- and then\nDROP TABLE audit",
    ]


def test_nothing_sent_through_the_pos_engine_changes_the_pos(pos_db: Pos) -> None:
    """Each attempt is refused (by the guard or by the read-only session); afterwards every
    row, the sequence and a bystander session are as they were."""
    before = pos_db.fingerprint()
    engine = create_pos_engine(pos_db.url)
    try:
        for statement in _attempts(pos_db):
            with pytest.raises((ReadOnlyViolation, SQLAlchemyError)), engine.connect() as conn:
                conn.execute(text(statement))
            assert pos_db.fingerprint() == before, statement
    finally:
        engine.dispose()


def test_a_function_that_switches_read_only_off_cannot_carry_over(pos_db: Pos) -> None:
    """A stored function that turns the session read-write (MariaDB SET SESSION
    tx_read_only=0) passes the guard; the next read is read-only again, so a writing
    function after it fails."""
    before = pos_db.fingerprint()
    engine = create_pos_engine(pos_db.url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT switch_rw()"))
        with pytest.raises(SQLAlchemyError, match=r"(?i)read.only"), engine.connect() as conn:
            conn.execute(text("SELECT sneaky()"))
    finally:
        engine.dispose()
    assert pos_db.fingerprint() == before


def _custom(p: Pos, select_list: str) -> SqlPosSettings:
    query = (
        f"SELECT t.id AS transaction_id, t.created_at AS sale_at, t.finalized_at AS "
        f"finalized_at, t.customer_id AS customer_id, c.email AS email, c.first_name AS "
        f"first_name, c.last_name AS last_name, c.language AS language, "
        f"c.include_in_communications AS include_in_communications, c.unsubscribed AS "
        f"unsubscribed, t.location_id AS location_id, {select_list} AS location_name, "
        f"NULL AS employee_name, t.total AS total, t.kind AS kind FROM transactions t "
        f"JOIN customers c ON c.id = t.customer_id "
        f"WHERE t.created_at > :start AND t.created_at <= :end"
    )
    return SqlPosSettings(url=p.url, mapping=Preset.CUSTOM, query=query)


@pytest.mark.parametrize("call", ["sneaky()", "switch_rw() + sneaky()"])
def test_a_custom_mapping_calling_a_writing_function_changes_nothing(
    pos_db: Pos, call: str
) -> None:
    """A mapping whose query calls a function that writes fails the read (PosError, the
    night stops as failed, not retried forever); the POS is unchanged."""
    before = pos_db.fingerprint()
    source = pos.create(_custom(pos_db, call), TZ)
    try:
        with pytest.raises(PosError):
            list(source.sales(local(2026, 11, 20, 0), local(2026, 11, 21, 0)))
    finally:
        source.close()
    assert pos_db.fingerprint() == before


def test_check_says_when_the_pos_login_can_write(pos_db: Pos) -> None:
    """With the tests' administrator login, check fails its login line and says why and what
    to do; POS and mapping still pass."""
    results = pos.check(SqlPosSettings(url=pos_db.url), TZ)
    assert [(r.name, r.ok) for r in results] == [
        (CheckName.POS, True),
        (CheckName.MAPPING, True),
        (CheckName.LOGIN, False),
    ]
    assert isinstance(results[2].error, LoginCanWrite)
    assert "the POS login can write" in results[2].detail and "read-only login" in results[2].detail


@pytest.fixture
def read_only_login(pos_db: Pos) -> Iterator[str]:
    """A login made as the README says, for this POS: it may only read."""
    user, password = f"ro_{uuid.uuid4().hex[:10]}", "ro-Pa55word"
    url = make_url(pos_db.url).set(username=user, password=password)
    database = url.database
    if pos_db.kind == "postgresql":
        pos_db.admin_sql(*_postgres_read_only(user, password, str(database)))
    else:
        pos_db.admin_sql(
            f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'",
            f"GRANT SELECT ON {database}.* TO '{user}'@'%%'",
        )
    yield url.render_as_string(hide_password=False)
    if pos_db.kind == "postgresql":
        pos_db.admin_sql(f"DROP OWNED BY {user}", f"DROP ROLE {user}")
    else:
        pos_db.admin_sql(f"DROP USER '{user}'@'%%'")


def _postgres_read_only(user: str, password: str, database: str) -> list[str]:
    return [
        f"CREATE ROLE {user} LOGIN PASSWORD '{password}'",
        f"GRANT CONNECT ON DATABASE {database} TO {user}",
        f"GRANT USAGE ON SCHEMA public TO {user}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}",
        f"ALTER ROLE {user} SET default_transaction_read_only = on",
    ]


def test_check_passes_with_a_read_only_login(pos_db: Pos, read_only_login: str) -> None:
    """The read-only login of the README passes every POS check."""
    results = pos.check(SqlPosSettings(url=read_only_login), TZ)
    assert [(r.name, r.ok) for r in results] == [
        (CheckName.POS, True),
        (CheckName.MAPPING, True),
        (CheckName.LOGIN, True),
    ], [r.detail for r in results]


def test_a_login_with_one_write_grant_is_named(pos_db: Pos, read_only_login: str) -> None:
    """A login that may write one table is reported, naming the table or the grant."""
    user = make_url(read_only_login).username
    database = make_url(read_only_login).database
    target = "customers" if pos_db.kind == "postgresql" else f"{database}.customers"
    pos_db.admin_sql(f"GRANT INSERT ON {target} TO {user}" if pos_db.kind == "postgresql"
                     else f"GRANT INSERT ON {target} TO '{user}'@'%%'")  # fmt: skip
    [*_, login] = pos.check(SqlPosSettings(url=read_only_login), TZ)
    assert not login.ok
    assert ("public.customers" in login.detail) or ("INSERT" in login.detail), login.detail


def test_a_column_the_server_cannot_hand_over_is_one_error_naming_it(
    postgresql_pos: Pos,
) -> None:
    """A mapping whose total casts text to a number fails on the server for the whole read:
    one mapping error naming the column (fix the config), not an outage retried all night."""
    settings = _custom(postgresql_pos, "c.last_name")
    query = (settings.query or "").replace("t.total AS total", "CAST(c.first_name AS int) AS total")
    source = pos.create(settings.model_copy(update={"query": query}), TZ)
    try:
        with pytest.raises(ColumnUnreadable) as caught:
            list(source.sales(local(2026, 11, 20, 0), local(2026, 11, 21, 0)))
    finally:
        source.close()
    assert caught.value.column == "total"
    assert "column total" in str(caught.value) and isinstance(caught.value, PosMappingError)
