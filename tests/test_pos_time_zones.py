"""Business days are the same whatever time zone the POS server's sessions default to.

The POS's times are read into the store's days (``timestamps`` says what a naive time
means); the server's own ``TimeZone`` (PostgreSQL) or ``time_zone`` (MariaDB) must change
nothing, on either side of a daylight-saving change. Each test writes sales every 30 minutes
around both changes of 2026 and reads them back one business day at a time, with the server
set to three zones in turn: each day's sales are exactly the sales of that local day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from surveysync import pos
from surveysync.config import SqlPosSettings, Timestamps
from surveysync.demo import PosWriter, create_pos_schema
from surveysync.model import Sale

SERVER_ZONES = ("Europe/Amsterdam", "America/New_York", "Pacific/Auckland")
# A store's zone and the days of its two daylight-saving changes in 2026.
STORES = {
    "Europe/Amsterdam": (date(2026, 3, 29), date(2026, 10, 25)),
    "America/New_York": (date(2026, 3, 8), date(2026, 11, 1)),
}


def _instants(store: ZoneInfo, changes: tuple[date, ...]) -> list[datetime]:
    """Every 30 minutes (at :15 and :45, so never on a midnight) from the day before each
    change to the day after it, as aware UTC instants."""
    moments: list[datetime] = []
    for change in changes:
        start = datetime.combine(change - timedelta(days=1), datetime.min.time(), store)
        end = datetime.combine(change + timedelta(days=2), datetime.min.time(), store)
        moment = start.astimezone(UTC) + timedelta(minutes=15)
        while moment < end.astimezone(UTC):
            moments.append(moment)
            moment += timedelta(minutes=30)
    return moments


def _stored(moment: datetime, store: ZoneInfo, frame: Timestamps, aware: bool) -> datetime:
    """The value the POS holds: an instant (a zone-aware column), or a naive wall time in
    the frame ``timestamps`` names."""
    if aware:
        return moment
    zone = UTC if frame is Timestamps.UTC else store
    return moment.astimezone(zone).replace(tzinfo=None)


def _fill(engine: Engine, moments: list[datetime], store: ZoneInfo, frame: Timestamps,
          aware: bool) -> dict[date, set[str]]:  # fmt: skip
    """Write a sale at each moment; the transaction ids of each local day."""
    writer = PosWriter(engine)
    writer.location(1, "Centrum")
    writer.employee(1, "Anouk")
    writer.customer("C1", "Kim", "Jansen", "kim@example.com")
    by_day: dict[date, set[str]] = {}
    for moment in moments:
        sale_id = writer.sale("C1", _stored(moment, store, frame, aware))
        by_day.setdefault(moment.astimezone(store).date(), set()).add(str(sale_id))
    writer.flush()
    return by_day


def _read_by_day(
    settings: SqlPosSettings, store: ZoneInfo, days: list[date]
) -> dict[date, set[str]]:
    """The transaction ids each business day's window reads."""
    source = pos.create(settings, store)
    try:
        read: dict[date, set[str]] = {}
        for day in days:
            start = datetime.combine(day, datetime.min.time(), store)
            end = datetime.combine(day + timedelta(days=1), datetime.min.time(), store)
            chunks = source.sales(start, end)
            sales = [s for chunk in chunks for s in chunk if isinstance(s, Sale)]
            assert all(s.sale_at.astimezone(store).date() == day for s in sales)
            read[day] = {s.transaction_id for s in sales}
    finally:
        source.close()
    return read


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.parametrize("store_zone", sorted(STORES))
@pytest.mark.parametrize(
    ("frame", "column_type"),
    [
        (Timestamps.UTC, "timestamptz"),
        (Timestamps.UTC, "timestamp"),
        (Timestamps.LOCAL, "timestamp"),
        (Timestamps.LOCAL, "timestamptz"),
    ],
)
def test_postgresql_business_days_do_not_depend_on_the_server_zone(
    postgres_url: str, store_zone: str, frame: Timestamps, column_type: str
) -> None:
    """Whatever the database's default TimeZone, each day reads exactly its own sales,
    across both daylight-saving changes of the store's zone."""
    store = ZoneInfo(store_zone)
    moments = _instants(store, STORES[store_zone])
    admin = create_engine(postgres_url)
    create_pos_schema(admin)
    with admin.begin() as conn:
        for name in ("created_at", "finalized_at"):
            conn.exec_driver_sql(f"ALTER TABLE transactions ALTER COLUMN {name} TYPE {column_type}")
    expected = _fill(admin, moments, store, frame, aware=column_type == "timestamptz")
    admin.dispose()
    settings = SqlPosSettings(url=postgres_url, timestamps=frame)
    database = make_url(postgres_url).database
    for server_zone in SERVER_ZONES:
        _postgres_default_zone(postgres_url, str(database), server_zone)
        read = _read_by_day(settings, store, sorted(expected))
        assert read == expected, f"server TimeZone {server_zone}"


def _postgres_default_zone(url: str, database: str, zone: str) -> None:
    """The database's default TimeZone, as an administrator sets it (new sessions get it)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET timezone = '{zone}'")
            fresh = conn.exec_driver_sql("SELECT 1").scalar()
        assert fresh == 1
    finally:
        engine.dispose()


# --- MariaDB ---------------------------------------------------------------------------------

# MariaDB here has no time zone tables (only offsets are known) and its default zone is
# global to the server, shared with other tests: each connection of the test's URL starts
# in another zone instead (pymysql's init_command), as a server set to it would.
MARIADB_SERVER_ZONES = ("+01:00", "-05:00", "+13:00")


@pytest.mark.parametrize("store_zone", sorted(STORES))
@pytest.mark.parametrize(
    ("frame", "column_type"),
    [(Timestamps.UTC, "TIMESTAMP"), (Timestamps.UTC, "DATETIME"), (Timestamps.LOCAL, "DATETIME")],
)
def test_mariadb_business_days_do_not_depend_on_the_server_zone(
    mariadb_url: str, store_zone: str, frame: Timestamps, column_type: str
) -> None:
    """A TIMESTAMP column (an instant, shown in the session's zone) with timestamps = utc,
    and DATETIME columns (wall times) in either frame: each day reads exactly its sales."""
    store = ZoneInfo(store_zone)
    moments = _instants(store, STORES[store_zone])
    admin = create_engine(mariadb_url, connect_args={"init_command": "SET time_zone = '+00:00'"})
    create_pos_schema(admin)
    with admin.begin() as conn:
        for name in ("created_at", "finalized_at"):
            conn.exec_driver_sql(f"ALTER TABLE transactions MODIFY {name} {column_type} NULL")
    # A TIMESTAMP is written as its UTC wall time, the admin session being in UTC.
    naive_utc = column_type == "TIMESTAMP"
    expected = _fill(admin, moments, store, Timestamps.UTC if naive_utc else frame, aware=False)
    admin.dispose()
    for server_zone in MARIADB_SERVER_ZONES:
        url = make_url(mariadb_url).update_query_dict(
            {"init_command": f"SET time_zone = '{server_zone}'"}
        )
        settings = SqlPosSettings(url=url.render_as_string(hide_password=False), timestamps=frame)
        read = _read_by_day(settings, store, sorted(expected))
        assert read == expected, f"session time_zone {server_zone}"
