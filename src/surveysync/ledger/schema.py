"""The ledger's tables. Alembic migrations (``migrations/versions``) create exactly these;
a test compares the two so that they cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC so SQLite sorts them."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger stores aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


install = Table(
    "install",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("store", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("window_start", UtcDateTime),
    Column("window_end", UtcDateTime),
    Column("counts", Text),
    Column("error", Text),
    Column("pid", Integer),
    Column("host", String(255)),
    Index(None, "store", "started_at"),
)

coverage = Table(
    "coverage",
    metadata,
    Column("store", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("covered_until", UtcDateTime, nullable=False),  # by any run, backfill included
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("store", String(64), nullable=False),
    Column("transaction_id", String(128), nullable=False),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    Column("sale_at", UtcDateTime, nullable=False),
    Column("customer_id", String(128)),
    Column("person_key", String(80)),
    Column("location_id", String(128)),
    Column("reason", String(32)),  # NULL: a survey request was made (request_id)
    Column("request_id", String(32)),
    # A decision is about one sale and one person: the POS customer id, or '' without one
    # (a unique key cannot hold NULL). Two rows sharing a transaction id for two customers
    # are two decisions.
    Column("customer_ref", String(128), nullable=False, server_default=""),
    Column("detail", String(255)),  # more about the reason: an unreadable row's column
    UniqueConstraint("store", "transaction_id", "customer_ref"),
    Index(None, "person_key"),
    Index(None, "store", "customer_id"),
    Index(None, "run_id"),
)

requests = Table(
    "requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("store", String(64), nullable=False),
    Column("transaction_id", String(128), nullable=False),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("person_key", String(80), nullable=False),
    Column("customer_id", String(128)),
    Column("status", String(16), nullable=False),
    Column("email", Text),  # plaintext only while the request is unsettled
    Column("email_masked", String(255), nullable=False),
    Column("payload", Text),  # render data (names, locale, location); cleared on settle too
    Column("provider", String(32)),
    Column("provider_message_id", String(255)),
    # The provider call it went out in: a crashed batch is resent whole, under one key.
    Column("batch_key", String(64)),
    Column("batch_seq", Integer),  # its place in that call, so a repeat lists it alike
    Column("error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sending_at", UtcDateTime),
    Column("settled_at", UtcDateTime),
    # What reports, alerts and follow-ups need after the request is settled (never the
    # address): the sale it asks about, where and by whom, and the language it was asked in.
    Column("sale_at", UtcDateTime),
    Column("location_id", String(128)),
    Column("location_name", Text),
    Column("employee_name", Text),
    Column("locale", String(16)),
    Column("first_name", Text),  # for the store manager's alert; never the address
    Index(None, "store", "status"),
    Index(None, "person_key"),
    Index(None, "store", "settled_at"),
    # The report (migration 0004): a store's sent surveys per location and employee, and per
    # month or week as ranges of send times, from the index alone; and the survey of each
    # answer looked up by id without reading the row.
    Index(
        "ix_requests_report_groups",
        "store",
        "status",
        "location_id",
        "employee_name",
        "settled_at",
        "location_name",
    ),
    Index(
        "ix_requests_report_lookup",
        "id",
        "store",
        "status",
        "settled_at",
        "location_id",
        "location_name",
        "employee_name",
    ),
)


cooldowns = Table(
    "cooldowns",
    metadata,
    # "e:<hmac of normalized email>" or "c:<store>:<customer id>"
    Column("person_key", String(200), primary_key=True),
    Column("last_request_at", UtcDateTime, nullable=False),
    Column("request_id", String(32), nullable=False),
    # What the row held before the current claim, so a claim can be given back exactly.
    Column("prev_request_at", UtcDateTime),
    Column("prev_request_id", String(32)),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # email | customer | transaction
    Column("key", String(200), nullable=False),
    Column("display", String(255), nullable=False),  # masked, for `suppress list`
    Column("source", String(16), nullable=False),  # admin | provider
    Column("reason", Text),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("kind", "key"),
)


# --- the answer side: what the survey page hears -------------------------------------------

responses = Table(
    "responses",
    metadata,
    # One answer per survey request; a changed score or comment updates it.
    Column("request_id", String(32), ForeignKey("requests.id"), primary_key=True),
    Column("store", String(64), nullable=False),
    Column("score", Integer),
    Column("comment", Text),
    # ResponseStatus (surveysync.model): provisional, clicked, confirmed or scanner
    Column("status", String(16), nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("settle_due_at", UtcDateTime),  # while provisional
    Column("answered_at", UtcDateTime),  # when it became counted (clicked or confirmed)
    Index(None, "store", "answered_at"),
    Index(None, "status", "settle_due_at"),
    # The report (migration 0004): a store's answers read from the index alone, in request
    # id order so that looking up their surveys walks the requests' id index in order.
    Index(
        "ix_responses_report",
        "store",
        "request_id",
        "first_seen_at",
        "status",
        "score",
        "settle_due_at",
    ),
)

clicks = Table(
    "clicks",
    metadata,
    # Every visit a link produced, kept with its time, so a report can show what was
    # counted and why (a scanner's pass included).
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(32), ForeignKey("requests.id"), nullable=False),
    Column("store", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # score | form | review | unsubscribe
    Column("score", Integer),
    Column("comment", Text),  # what a sent form said (kind form), kept as sent
    Column("at", UtcDateTime, nullable=False),
    Column("client", String(64)),  # keyed hash of address and user agent; never the IP
    # Made by a program (HEAD, a tool's user agent): a fact of the visit, so that the
    # answer can be derived again from the visits alone (surveysync.answer_rules).
    Column("automated", Boolean, nullable=False, default=False),
    # What the visit did, as the rules judge it with every visit known so far (the first
    # click of a scanner's pass reads "scanner" once the second has arrived).
    Column("outcome", String(16)),
    Index(None, "request_id", "at"),
)

alerts = Table(
    "alerts",
    metadata,
    # An email to the store manager: one per detractor answer, or one digest per day.
    Column("id", String(32), primary_key=True),
    Column("store", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # detractor | digest
    Column("request_id", String(32), ForeignKey("requests.id")),  # detractor
    Column("day", Date),  # digest
    Column("status", String(16), nullable=False),  # RequestStatus words
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sending_at", UtcDateTime),
    Column("settled_at", UtcDateTime),
    Column("provider_message_id", String(255)),
    Column("error", Text),
    UniqueConstraint("kind", "request_id"),
    UniqueConstraint("store", "kind", "day"),
    Index(None, "store", "status"),
)

reminders = Table(
    "reminders",
    metadata,
    # One follow-up email to a customer about a sent survey: the review reminder, or the
    # survey once more to someone who did not answer (surveysync.reminder_rules).
    Column("id", String(32), primary_key=True),
    Column("store", String(64), nullable=False),
    Column("request_id", String(32), ForeignKey("requests.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # review | no_answer
    Column("status", String(16), nullable=False),  # RequestStatus words, cancelled included
    # The address, copied from the request as it settled sent: only while the reminder may
    # still go out (pending or sending); cleared when it is settled or cancelled.
    Column("email", Text),
    Column("due_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("provider", String(32)),
    Column("batch_key", String(64)),  # the provider call it went out in, as for requests
    Column("batch_seq", Integer),
    Column("sending_at", UtcDateTime),
    Column("settled_at", UtcDateTime),
    Column("provider_message_id", String(255)),
    Column("error", Text),  # why it failed, or why it was cancelled (CancelReason)
    UniqueConstraint("request_id", "kind"),
    Index(None, "store", "status", "due_at"),
)
