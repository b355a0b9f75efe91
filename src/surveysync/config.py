"""Settings: one TOML file plus ``SURVEYSYNC__SECTION__KEY`` environment overrides.

Everything the program reads from its operator lives here, validated before any work starts.
A bad value stops the program with a message naming the key, the value and what is allowed
(``ConfigError``); nothing downstream re-validates. Secrets are ``SecretStr`` and may instead
come from a file (``<key>_file``) so that they stay out of the TOML file and the environment.

This module must never open a database, a socket or a log file.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import zoneinfo
from contextvars import ContextVar
from datetime import datetime, time
from enum import StrEnum
from importlib import resources
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, TypeGuard, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from surveysync.addresses import InvalidAddress, accept
from surveysync.model import SaleKind

ENV_PREFIX = "SURVEYSYNC__"
DEFAULT_CONFIG_PATH = Path("surveysync.toml")
CONFIG_PATH_ENV = "SURVEYSYNC_CONFIG"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


class Section(BaseModel):
    """A TOML table: unknown keys are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# The folder of the config file being loaded: relative paths in the settings are relative to
# it, so that every command means the same files from any current folder. None (no file, or
# settings built in code): relative to the current folder.
_config_folder: ContextVar[Path | None] = ContextVar("surveysync_config_folder", default=None)


def _from_config_folder(value: Path) -> Path:
    base = _config_folder.get()
    value = value.expanduser()
    return value if base is None or value.is_absolute() else base / value


# A path setting: relative to the config file's folder.
ConfigPath = Annotated[Path, AfterValidator(_from_config_folder)]
_SQLITE_URL = re.compile(r"^(?P<scheme>sqlite(\+\w+)?:///)(?P<path>[^?]*)(?P<query>\?.*)?$")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def _sqlite_from_config_folder(value: SecretStr) -> SecretStr:
    """A SQLite URL with a relative file path, made absolute against the config's folder
    (``sqlite:///data/pos.sqlite`` next to the config, wherever the command runs)."""
    url = value.get_secret_value()
    match = _SQLITE_URL.match(url)
    base = _config_folder.get()
    if base is None or match is None:
        return value
    path = match["path"]
    if path in ("", ":memory:") or path.startswith(("/", "file:")) or _WINDOWS_DRIVE.match(path):
        return value
    absolute = (base / Path(path).expanduser()).as_posix()
    return SecretStr(f"{match['scheme']}{absolute}{match['query'] or ''}")


def _load_secret_files(model: BaseModel, *keys: str) -> None:
    """Each ``<key>_file`` that is set replaces ``<key>`` with the file's contents."""
    for key in keys:
        from_file = _read_secret_file(getattr(model, f"{key}_file"))
        if from_file is not None:
            object.__setattr__(model, key, from_file)


def _read_secret_file(path: Path | None) -> SecretStr | None:
    if path is None:
        return None
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"cannot read secret file {str(path)!r}: {exc.strerror}") from exc


class StoreSettings(Section):
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = "store"
    name: Annotated[str, Field(min_length=1)] = "Demo Cycles"
    timezone: str = "Europe/Amsterdam"
    default_locale: Annotated[str, Field(pattern=r"^[a-z]{2}$")] = "en"
    # Known locations (POS id -> display name). Required before any location can be excluded,
    # so that "every location excluded" can be caught here rather than by a silent night.
    locations: dict[str, str] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            near = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(
                f"{value!r} is not an IANA time zone (for example Europe/Amsterdam){hint}"
            ) from None
        return value

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class Timestamps(StrEnum):
    LOCAL = "local"
    UTC = "utc"


class Preset(StrEnum):
    ASCEND = "ascend"
    CUSTOM = "custom"


def _database_url(value: SecretStr, key: str) -> None:
    """A database URL whose parts can be read: a port that is a number. (A URL that is no
    URL at all is left to the source, which reports it; the URL itself is never shown.)"""
    url = value.get_secret_value()
    authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    host_port = authority.rpartition("@")[2]
    if host_port.startswith("["):  # an IPv6 address: [::1]:5432
        host_port = host_port.partition("]")[2]
    port = host_port.rpartition(":")[2] if ":" in host_port else ""
    if port and not port.isdigit():
        raise ValueError(f"the port in {key} is not a number")


class SqlServerEncrypt(StrEnum):
    """``Encrypt=`` of Microsoft's driver (FreeTDS: ``Encryption=require`` or ``off``)."""

    YES = "yes"  # TLS, the server's certificate checked (unless trust_server_certificate)
    NO = "no"
    STRICT = "strict"  # TDS 8: TLS before anything else (SQL Server 2022); Microsoft's only


# What a server name may hold: a host name or address, no instance, port or separator.
_SERVER_NAME = re.compile(r"^[A-Za-z0-9_.:\-]+$")
_CONNECT_VALUE_FORBIDDEN = ("\x00", "\r", "\n")


class SqlServerSettings(Section):
    """``[pos.sqlserver]``: where SQL Server is and how to log in, for an admin who would
    rather not write an ODBC connection string (``surveysync.pos.sql.sqlserver`` writes it).
    ``odbc_connect`` instead takes a whole connection string as it is."""

    server: str | None = None  # host name or address: ascend-db, 10.0.0.5
    instance: str | None = None  # a named instance (found through the SQL Server Browser)
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # default 1433
    database: str | None = None
    user: str | None = None  # a SQL Server login
    password: SecretStr | None = None
    password_file: ConfigPath | None = None
    windows_authentication: bool = False  # Trusted_Connection=yes (Kerberos on Linux)
    encrypt: SqlServerEncrypt = SqlServerEncrypt.YES
    trust_server_certificate: bool = False  # a self-signed certificate, on a trusted network
    read_only_intent: bool = True  # ApplicationIntent=ReadOnly: a readable secondary if any
    # An installed ODBC driver by name ("FreeTDS"), or the path to its library.
    driver: Annotated[str, Field(min_length=1)] = "ODBC Driver 18 for SQL Server"
    odbc_connect: SecretStr | None = None
    odbc_connect_file: ConfigPath | None = None

    @model_validator(mode="after")
    def _resolve(self) -> SqlServerSettings:
        _load_secret_files(self, "password", "odbc_connect")
        if self.odbc_connect is not None:
            given = sorted(self.model_fields_set - {"odbc_connect", "odbc_connect_file"})
            if given:
                raise ValueError(
                    "pos.sqlserver.odbc_connect is taken as it is: leave out "
                    f"{', '.join(given)} (or drop odbc_connect and keep them)"
                )
            return self
        self._check_place()
        self._check_login()
        return self

    def _check_place(self) -> None:
        if not self.server or not self.database:
            raise ValueError(
                "[pos.sqlserver] needs server and database (or odbc_connect, a whole ODBC "
                "connection string)"
            )
        if not _SERVER_NAME.match(self.server):
            raise ValueError(
                "pos.sqlserver.server is a host name or address only: put a named instance "
                "(server\\INSTANCE) in pos.sqlserver.instance and a port (server,1433) in "
                "pos.sqlserver.port"
            )
        if self.instance is not None and self.port is not None:
            raise ValueError(
                "pos.sqlserver: give instance or port, not both (a named instance's port is "
                "found through the SQL Server Browser; with a fixed port, leave out instance)"
            )
        for name in ("instance", "database", "user", "driver"):
            value = getattr(self, name)
            if value is not None and any(c in value for c in _CONNECT_VALUE_FORBIDDEN):
                raise ValueError(f"pos.sqlserver.{name} holds a line break or NUL")

    def _check_login(self) -> None:
        password = self.password is not None and bool(self.password.get_secret_value())
        if self.windows_authentication:
            if self.user is not None or self.password is not None:
                raise ValueError(
                    "pos.sqlserver: windows_authentication = true logs in as the service's "
                    "own Windows account: leave out user and password"
                )
        elif not (self.user and password):
            raise ValueError(
                "pos.sqlserver needs user and password (or password_file) of a SQL Server "
                "login, or windows_authentication = true"
            )


class SqlPosSettings(Section):
    """``kind = "sql"`` (the default): the POS database, read through a mapping query."""

    kind: Literal["sql"] = "sql"
    url: SecretStr = SecretStr("sqlite:///surveysync-demo/pos.sqlite")
    url_file: ConfigPath | None = None
    mapping: Preset = Preset.ASCEND
    # Custom SQL: must yield the columns listed in surveysync.pos.REQUIRED_COLUMNS and filter
    # its event time with the bound parameters :start (exclusive) and :end (inclusive).
    query: str | None = None
    timestamps: Timestamps = Timestamps.LOCAL
    chunk_size: Annotated[int, Field(ge=100, le=100_000)] = 5_000
    # Seconds: to be connected and logged in (SQLite: to get past a writer's lock), and for
    # one read. A POS that does not answer within them fails the read as unavailable.
    connect_timeout: Annotated[float, Field(gt=0, le=3600)] = 15
    query_timeout: Annotated[float, Field(gt=0, le=86_400)] = 300
    # What the POS writes in `kind` besides sale, return and void, and which of the three it
    # means: {refund = "return", layaway = "sale"}. Matched without regard to case.
    kind_values: dict[str, SaleKind] = Field(default_factory=dict)
    # Customer ids that mean "no customer" (a walk-in): Lightspeed writes 0, some POS -1.
    walk_in_customer_ids: list[str] = Field(default_factory=list)
    # SQL Server by its parts instead of pos.url (README: "Connecting to your POS").
    sqlserver: SqlServerSettings | None = None

    @field_validator("kind_values")
    @classmethod
    def _kind_words(cls, value: dict[str, SaleKind]) -> dict[str, SaleKind]:
        words = {word.strip().lower(): kind for word, kind in value.items()}
        if "" in words:
            raise ValueError("a POS value cannot be empty")
        return words

    @field_validator("walk_in_customer_ids", mode="before")
    @classmethod
    def _walk_in_ids(cls, value: Any) -> Any:
        """Ids as text, as the mapping reads them: ``[0]`` and ``["0"]`` are the same."""
        if not isinstance(value, list):
            return value
        ids = [str(one).strip() if isinstance(one, int | str) else one for one in value]
        if "" in ids:
            raise ValueError("an id cannot be empty (a sale without an id is a walk-in already)")
        return ids

    @model_validator(mode="after")
    def _resolve(self) -> SqlPosSettings:
        _load_secret_files(self, "url")
        _database_url(self.url, "pos.url")
        if self.sqlserver is not None and self.model_fields_set & {"url", "url_file"}:
            raise ValueError(
                "pos.url and [pos.sqlserver] both say where the POS is: keep one of them"
            )
        if self.mapping is Preset.CUSTOM and not (self.query and self.query.strip()):
            raise ValueError("mapping = 'custom' needs pos.query (SQL with :start and :end)")
        if self.query and self.mapping is not Preset.CUSTOM:
            raise ValueError("pos.query is only used with mapping = 'custom'")
        if self.query and not (":start" in self.query and ":end" in self.query):
            raise ValueError("pos.query must use both bound parameters :start and :end")
        return self


def _pos_kind(value: Any) -> Any:
    """The kind of a [pos] table; "sql" when it names none, so that every config written
    before there were kinds still loads."""
    if isinstance(value, dict):
        return value.get("kind", "sql")
    return getattr(value, "kind", "sql")


# Where the sales come from, picked by ``pos.kind``. Another source adds its settings class
# here (``| Annotated[HttpPosSettings, Tag("http")]``, the tag being its ``kind``), and its
# module and its line in ``surveysync.pos.create`` there.
PosSettings = Annotated[Annotated[SqlPosSettings, Tag("sql")], Discriminator(_pos_kind)]


class LedgerSettings(Section):
    url: SecretStr = SecretStr("sqlite:///surveysync-data/ledger.sqlite")
    url_file: ConfigPath | None = None
    # Key for the HMAC that names people in the ledger. When unset, a random key is made once
    # and kept in the ledger, so that every store sharing the ledger shares it.
    hash_secret: SecretStr | None = None
    hash_secret_file: ConfigPath | None = None

    @model_validator(mode="after")
    def _resolve(self) -> LedgerSettings:
        _load_secret_files(self, "url", "hash_secret")
        _database_url(self.url, "ledger.url")
        return self


class RuleSettings(Section):
    cooldown_months: Annotated[int, Field(ge=0, le=60)] = 3
    max_sale_age_days: Annotated[int, Field(ge=1, le=3650)] = 30
    excluded_locations: list[str] = Field(default_factory=list)
    excluded_kinds: list[SaleKind] = Field(default_factory=lambda: [SaleKind.RETURN, SaleKind.VOID])
    minimum_total: Annotated[float, Field(ge=0)] | None = None
    excluded_customers: list[str] = Field(default_factory=list)


class InDoubtPolicy(StrEnum):
    SKIP = "skip"
    RESEND = "resend"


class SyncSettings(Section):
    lookback_days: Annotated[int, Field(ge=0, le=31)] = 3
    # Where the very first run starts; default: the start of today in the store's time zone.
    first_run_start: datetime | None = None
    in_doubt: InDoubtPolicy = InDoubtPolicy.SKIP


class ProviderKind(StrEnum):
    OUTBOX = "outbox"
    SMTP = "smtp"
    SENDGRID = "sendgrid"
    POSTMARK = "postmark"
    MAILGUN = "mailgun"
    RESEND = "resend"
    BREVO = "brevo"
    WEBHOOK = "webhook"


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"  # plain connection upgraded with STARTTLS (port 587)
    TLS = "tls"  # TLS from the first byte (port 465)
    NONE = "none"  # only for a relay on this machine


_SMTP_DEFAULT_PORTS = {SmtpSecurity.STARTTLS: 587, SmtpSecurity.TLS: 465, SmtpSecurity.NONE: 25}
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class ProviderSection(Section):
    """The settings of one provider, ``[provider.<kind>]``: a field of ``ProviderSettings``
    named like the kind. Adding a provider is one of these plus its adapter module."""

    def needs(self) -> str | None:
        """What this section lacks for its provider to be chosen (the key(s), in words)."""
        return None


class SmtpSettings(ProviderSection):
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # default: by security
    security: SmtpSecurity = SmtpSecurity.STARTTLS
    username: str | None = None
    password: SecretStr | None = None
    password_file: ConfigPath | None = None
    # A CA bundle to trust instead of the system's (a relay with an internal certificate).
    ca_file: ConfigPath | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    # Never more than this many messages per second through one connection; None: no limit.
    max_per_second: Annotated[float, Field(gt=0)] | None = None
    # A 4xx reply or a dropped connection is retried, bounded in attempts and in total time.
    retry_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    retry_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0

    @model_validator(mode="after")
    def _resolve(self) -> SmtpSettings:
        _load_secret_files(self, "password")
        if (self.username is None) != (self.password is None):
            raise ValueError("provider.smtp.username and password go together")
        if (
            self.username
            and self.security is SmtpSecurity.NONE
            and self.host not in _LOOPBACK_HOSTS
        ):
            raise ValueError(
                "provider.smtp.security = 'none' would send the password in clear text to "
                f"{self.host}; use 'starttls' or 'tls'"
            )
        return self

    @property
    def effective_port(self) -> int:
        return self.port or _SMTP_DEFAULT_PORTS[self.security]


def _api_url(value: str) -> str:
    """https, or plain http to this machine only (a local relay or a test server)."""
    host = value.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if value.startswith("https://") or (value.startswith("http://") and host in _LOOPBACK_HOSTS):
        return value.rstrip("/")
    raise ValueError("must be an https:// URL (plain http only to localhost)")


ApiUrl = Annotated[str, AfterValidator(_api_url)]


def _page_url(value: str) -> str:
    """Where customers reach the survey page: https, or plain http to this machine only (the
    demo, a test). No query or fragment: links are built by appending a path."""
    value = _api_url(value)
    if "?" in value or "#" in value:
        raise ValueError("must not have a query (?) or a fragment (#)")
    return value


PageUrl = Annotated[str, AfterValidator(_page_url)]


class HttpSettings(Section):
    """How every HTTP provider (SendGrid, Postmark, Mailgun, Resend, Brevo, webhook) calls."""

    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    # Never more than this many API calls per second; None: no limit of ours.
    max_per_second: Annotated[float, Field(gt=0)] | None = None
    # 429, 5xx, timeouts and resets are retried, bounded in attempts and in total time.
    retry_attempts: Annotated[int, Field(ge=1, le=20)] = 6
    retry_seconds: Annotated[float, Field(gt=0, le=3600)] = 300.0


class _ApiKeySettings(ProviderSection):
    api_key: SecretStr | None = None
    api_key_file: ConfigPath | None = None

    @model_validator(mode="after")
    def _resolve(self) -> _ApiKeySettings:
        _load_secret_files(self, "api_key")
        return self

    def needs(self) -> str | None:
        return "api_key (or api_key_file)" if self.api_key is None else None


class SendGridSettings(_ApiKeySettings):
    base_url: ApiUrl = "https://api.sendgrid.com"  # EU subusers: https://api.eu.sendgrid.com


class PostmarkSettings(_ApiKeySettings):
    """api_key is the Postmark *server* token."""

    base_url: ApiUrl = "https://api.postmarkapp.com"
    message_stream: Annotated[str, Field(min_length=1)] = "outbound"


class MailgunRegion(StrEnum):
    US = "us"
    EU = "eu"


class MailgunSettings(_ApiKeySettings):
    domain: str | None = None  # the sending domain, e.g. mg.demo-cycles.example
    region: MailgunRegion = MailgunRegion.US
    base_url: ApiUrl | None = None  # default: by region

    def needs(self) -> str | None:
        return super().needs() or (None if self.domain else "domain")

    @property
    def effective_base_url(self) -> str:
        if self.base_url:
            return self.base_url
        return {
            MailgunRegion.US: "https://api.mailgun.net",
            MailgunRegion.EU: "https://api.eu.mailgun.net",
        }[self.region]


class ResendSettings(_ApiKeySettings):
    base_url: ApiUrl = "https://api.resend.com"


class BrevoSettings(_ApiKeySettings):
    base_url: ApiUrl = "https://api.brevo.com"


class WebhookSettings(ProviderSection):
    url: ApiUrl | None = None
    # Signs every POST (HMAC-SHA256 over timestamp and body); the receiver checks it.
    secret: SecretStr | None = None
    secret_file: ConfigPath | None = None

    @model_validator(mode="after")
    def _resolve(self) -> WebhookSettings:
        _load_secret_files(self, "secret")
        return self

    def needs(self) -> str | None:
        return None if self.url and self.secret else "url and secret"


class ProviderSettings(Section):
    kind: ProviderKind = ProviderKind.OUTBOX
    outbox_dir: ConfigPath = Path("outbox")
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    smtp: SmtpSettings = SmtpSettings()
    http: HttpSettings = HttpSettings()
    sendgrid: SendGridSettings = SendGridSettings()
    postmark: PostmarkSettings = PostmarkSettings()
    mailgun: MailgunSettings = MailgunSettings()
    resend: ResendSettings = ResendSettings()
    brevo: BrevoSettings = BrevoSettings()
    webhook: WebhookSettings = WebhookSettings()

    @model_validator(mode="after")
    def _chosen_provider_is_configured(self) -> ProviderSettings:
        kind = self.kind.value
        section = getattr(self, kind, None)  # the outbox has no section of its own
        missing = section.needs() if isinstance(section, ProviderSection) else None
        if missing is not None:
            raise ValueError(f"provider.kind = {kind!r} needs provider.{kind}.{missing}")
        return self


LINK_SECRET_BYTES = 32


class EmailSettings(Section):
    from_address: str = "feedback@demo-cycles.example"
    from_name: str = "Demo Cycles"
    reply_to: str | None = None
    # Default <web.public_url>/s, /u and /r when web.public_url is set.
    survey_base_url: PageUrl = "https://survey.example/s"
    unsubscribe_base_url: PageUrl = "https://survey.example/u"
    # The review link of a review reminder: <review_base_url>/<token> (the page's /r/).
    review_base_url: PageUrl = "https://survey.example/r"
    unsubscribe_mailto: str = "unsubscribe@demo-cycles.example"
    # Signs the score and unsubscribe links (at least 32 bytes); kept out of the TOML file
    # in production.
    link_secret: SecretStr = SecretStr("change-me-demo-link-secret-of-32-bytes-or-more")
    link_secret_file: ConfigPath | None = None
    link_valid_days: Annotated[int, Field(ge=1, le=365)] = 60
    # A folder whose <locale>/subject.txt, body.txt, body.html (or layout.*) replace the
    # built-in templates; `surveysync check` reports a broken one.
    templates_dir: ConfigPath | None = None
    # Templates stored at the provider, by locale ("*" for every locale): template id.
    provider_templates: dict[str, str] = Field(default_factory=dict)

    @field_validator("provider_templates")
    @classmethod
    def _locale_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key, template_id in value.items():
            if key != "*" and not (len(key) == 2 and key.isascii() and key.islower()):
                raise ValueError(f"{key!r} is not a two-letter locale code or '*'")
            if not template_id.strip():
                raise ValueError(f"the template id for {key!r} is empty")
        return value

    @field_validator("templates_dir")
    @classmethod
    def _a_folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{str(value)!r} is not a folder")
        return value

    @field_validator("from_address", "reply_to", "unsubscribe_mailto")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            accept(value)
        except InvalidAddress as exc:
            raise ValueError(f"not an email address: {exc}") from None
        return value

    @model_validator(mode="after")
    def _resolve(self) -> EmailSettings:
        _load_secret_files(self, "link_secret")
        if len(self.link_secret.get_secret_value().encode("utf-8")) < LINK_SECRET_BYTES:
            raise ValueError(
                f"email.link_secret must be at least {LINK_SECRET_BYTES} bytes (anyone who "
                "guesses it can forge score and unsubscribe links); make one with: python3 "
                '-c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        return self


class AlertMode(StrEnum):
    EACH = "each"  # one small email per detractor, as soon as the answer is final
    DIGEST = "digest"  # one email a day listing the day's detractors
    BOTH = "both"


class DigestSchedule(StrEnum):
    DAILY = "daily"
    OFF = "off"


class AlertSettings(Section):
    """Emails to the store manager about detractors: one per answer, a daily digest, or both."""

    # Who gets them (the store manager); empty: no alerts at all.
    to: list[str] = Field(default_factory=list)
    # An answer of this score or lower is a detractor's (NPS: 0 to 6).
    detractor_max: Annotated[int, Field(ge=0, le=10)] = 6
    mode: AlertMode = AlertMode.EACH
    # "daily" with mode "digest" or "both"; "off" with mode "each".
    digest: DigestSchedule = DigestSchedule.OFF

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                accept(address)
            except InvalidAddress as exc:
                raise ValueError(f"{address!r} is not an email address: {exc}") from None
        return value

    @model_validator(mode="after")
    def _digest_matches_mode(self) -> AlertSettings:
        wants_digest = self.mode is not AlertMode.EACH
        if wants_digest and self.digest is DigestSchedule.OFF:
            raise ValueError(f"alerts.mode = {self.mode.value!r} needs alerts.digest = 'daily'")
        if not wants_digest and self.digest is not DigestSchedule.OFF:
            raise ValueError(
                f"alerts.digest = {self.digest.value!r} needs alerts.mode = 'digest' or 'both' "
                "(mode 'each' sends no digest)"
            )
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.to)

    @property
    def each(self) -> bool:
        return self.enabled and self.mode in (AlertMode.EACH, AlertMode.BOTH)

    @property
    def daily_digest(self) -> bool:
        return self.enabled and self.digest is DigestSchedule.DAILY

def _proxy_address(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or network (for example 127.0.0.1 or 10.0.0.0/8)"
        ) from None
    return value


class WebSettings(Section):
    """`surveysync web`: the survey page customers reach from the email's links."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    # The address customers use (https://survey.example.com, or .../path behind a proxy
    # that strips the path). When set, email links default to <public_url>/s and /u.
    public_url: PageUrl | None = None
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed; no one else's.
    trusted_proxies: list[Annotated[str, AfterValidator(_proxy_address)]] = Field(
        default_factory=list
    )
    # A lone click counts once this long has passed without a click on another score.
    settle_minutes: Annotated[int, Field(ge=1, le=1440)] = 30
    # Clicks on different scores of one email this close together are a link scanner.
    scanner_seconds: Annotated[int, Field(ge=1, le=600)] = 15
    # A click this soon after the email was sent is a scanner at delivery (0: off).
    early_seconds: Annotated[int, Field(ge=0, le=3600)] = 60
    # Per survey email: this many recorded visits at once, then rate_per_hour more.
    rate_burst: Annotated[int, Field(ge=1, le=1000)] = 30
    rate_per_hour: Annotated[int, Field(ge=1, le=10_000)] = 60
    # Larger request bodies are refused (413); 32 KiB holds a 2,000-character comment.
    max_body_kib: Annotated[int, Field(ge=4, le=1024)] = 32

    @model_validator(mode="after")
    def _window_outlasts_a_pass(self) -> WebSettings:
        if self.settle_minutes * 60 <= self.scanner_seconds:
            raise ValueError("web.settle_minutes must be longer than web.scanner_seconds")
        return self


class ReviewInvite(StrEnum):
    EVERYONE = "everyone"
    PROMOTERS = "promoters"
    OFF = "off"


class ReviewSettings(Section):
    """The invitation to leave a public review, on the survey's thank-you page, and the one
    reminder of it ``reminder_days`` after the survey email."""

    url: ApiUrl | None = None
    invite: ReviewInvite = ReviewInvite.EVERYONE
    # Days after the survey email (store days) for the review reminder; 0: no reminder.
    reminder_days: Annotated[int, Field(ge=0, le=60)] = 7

    def invites(self, score: int | None) -> bool:
        """Whether the thank-you page after this score shows the invitation."""
        if self.url is None or score is None or self.invite is ReviewInvite.OFF:
            return False
        return self.invite is ReviewInvite.EVERYONE or score >= 9

    @property
    def reminds(self) -> bool:
        """Whether review reminders are on: a review address, invitations and a delay."""
        invites = self.url is not None and self.invite is not ReviewInvite.OFF
        return invites and self.reminder_days > 0


class ReminderSettings(Section):
    """The optional reminder of the survey itself, to people who did not answer it."""

    # Days after the survey email (store days) for one reminder to someone who neither
    # answered nor unsubscribed; 0 (the default): no such reminder.
    no_answer_days: Annotated[int, Field(ge=0, le=60)] = 0


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LoggingSettings(Section):
    level: LogLevel = LogLevel.INFO
    # Folder for JSON-lines log files, one per day (unset: the console only).
    dir: ConfigPath | None = None
    # Daily log files older than this are deleted.
    keep_days: Annotated[int, Field(ge=1, le=3650)] = 30


class ReportSettings(Section):
    """`surveysync report`."""

    # A group with fewer counted answers is marked "too few" and never ranked.
    min_responses: Annotated[int, Field(ge=1, le=100_000)] = 10


class ScheduleSettings(Section):
    """When `surveysync run` syncs: every night at ``at``, store time."""

    at: time = time(23, 0)
    # A fire missed (server asleep, daemon busy) by less than this still runs when noticed;
    # later, the next fire's catch-up covers the gap anyway.
    misfire_grace_minutes: Annotated[int, Field(ge=1, le=1440)] = 360
    # When the POS or the provider cannot be reached, the night's run is retried, with a
    # growing pause, until this store time; then it is recorded as failed.
    retry_until: time = time(5, 0)
    retry_first_minutes: Annotated[float, Field(gt=0, le=240)] = 2.0
    retry_max_minutes: Annotated[float, Field(gt=0, le=240)] = 30.0
    # Written at every start, fire and run end, for monitoring tools.
    heartbeat_file: ConfigPath = Path("surveysync-data/heartbeat.json")

    @field_validator("at", "retry_until")
    @classmethod
    def _whole_minutes(cls, value: time) -> time:
        if value.second or value.microsecond or value.tzinfo is not None:
            raise ValueError("a store time in whole minutes without a zone, like '23:00'")
        return value


class Settings(BaseSettings):
    """The whole configuration. Build it with ``load_settings``, never directly."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )
    _toml_path: ClassVar[Path | None] = None

    store: StoreSettings = StoreSettings()
    pos: PosSettings = SqlPosSettings()
    ledger: LedgerSettings = LedgerSettings()
    rules: RuleSettings = RuleSettings()
    sync: SyncSettings = SyncSettings()
    provider: ProviderSettings = ProviderSettings()
    email: EmailSettings = EmailSettings()
    alerts: AlertSettings = AlertSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    logging: LoggingSettings = LoggingSettings()
    report: ReportSettings = ReportSettings()
    web: WebSettings = WebSettings()
    review: ReviewSettings = ReviewSettings()
    reminders: ReminderSettings = ReminderSettings()

    @model_validator(mode="after")
    def _defaults_from_config_folder(self) -> Settings:
        """The default paths are relative to the config file's folder too (given values
        already are): the ledger a config means never depends on the current folder."""
        if _config_folder.get() is None:
            return self
        updates: dict[str, BaseModel] = {
            "ledger": self.ledger.model_copy(
                update={"url": _sqlite_from_config_folder(self.ledger.url)}
            ),
            "pos": self.pos.model_copy(update={"url": _sqlite_from_config_folder(self.pos.url)}),
            "provider": self.provider.model_copy(
                update={"outbox_dir": _from_config_folder(self.provider.outbox_dir)}
            ),
            "schedule": self.schedule.model_copy(
                update={"heartbeat_file": _from_config_folder(self.schedule.heartbeat_file)}
            ),
        }
        for name, section in updates.items():
            object.__setattr__(self, name, section)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_path))
        return tuple(sources)

    @model_validator(mode="after")
    def _links_follow_the_page(self) -> Settings:
        """One setting makes links and page agree: with web.public_url, the email's link bases
        default to it (a base set explicitly is kept)."""
        public = self.web.public_url
        if public is None:
            return self
        chosen = self.email.model_fields_set
        defaults = {
            key: f"{public}/{path}"
            for key, path in (
                ("survey_base_url", "s"),
                ("unsubscribe_base_url", "u"),
                ("review_base_url", "r"),
            )
            if key not in chosen
        }
        if defaults:
            object.__setattr__(self, "email", self.email.model_copy(update=defaults))
        return self

    @model_validator(mode="after")
    def _locations_stay_active(self) -> Settings:
        excluded = set(self.rules.excluded_locations)
        if not excluded:
            return self
        known = set(self.store.locations)
        if not known:
            raise ValueError(
                "rules.excluded_locations needs store.locations listing every location, "
                "so that at least one can be checked to stay active"
            )
        if unknown := sorted(excluded - known):
            raise ValueError(
                f"rules.excluded_locations names {unknown}, which store.locations does not list "
                f"(known: {sorted(known)})"
            )
        if excluded >= known:
            raise ValueError(
                f"rules.excluded_locations = {sorted(excluded)} excludes every location; "
                "at least one must stay active"
            )
        return self


def load_settings(path: Path | None = None, *, require_file: bool = False) -> Settings:
    """Read ``path`` (or $SURVEYSYNC_CONFIG, or ./surveysync.toml if present) and the environment.

    Raises ConfigError with one line per problem.
    """
    given = path
    path = _config_path(path)
    if path is not None and not path.is_file():
        if path != DEFAULT_CONFIG_PATH or given is not None:
            raise ConfigError(f"config file {str(path)!r} does not exist (run `surveysync init`)")
        if require_file:
            raise ConfigError(_no_config())
        path = None
    bound = type("BoundSettings", (Settings,), {"_toml_path": path})
    folder = _config_folder.set(path.resolve().parent if path is not None else None)
    try:
        return bound()  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except ValueError as exc:  # malformed TOML surfaces as tomllib.TOMLDecodeError
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    finally:
        _config_folder.reset(folder)


def _no_config() -> str:
    return (
        f"no configuration file: looked for --config PATH, then ${CONFIG_PATH_ENV}, then "
        f"./{DEFAULT_CONFIG_PATH} (not found in {Path.cwd()}); make one with "
        "`surveysync init`, edit it, then run `surveysync check`"
    )


def _config_path(path: Path | None) -> Path | None:
    if path is not None:
        return path
    if env := os.environ.get(CONFIG_PATH_ENV):
        return Path(env)
    return DEFAULT_CONFIG_PATH


def _describe(exc: ValidationError, path: Path | None) -> str:
    origin = str(path) if path else "settings"
    lines = [f"invalid configuration ({origin}):"]
    for error in exc.errors():
        lines.append("  " + _describe_one(error))
    return "\n".join(lines)


def _describe_one(error: Any) -> str:
    loc, section = _locate([str(part) for part in error["loc"]])
    key = ".".join(loc) or "(top level)"
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown setting{_allowed_keys_hint(loc[-1], section)}"
    if error["type"] == "union_tag_invalid":
        tag, allowed = error["ctx"]["tag"], error["ctx"]["expected_tags"]
        return f"{key}.kind = {tag!r}: unknown kind (allowed: {allowed})"
    shown = "" if isinstance(value, dict) else f" = {_redacted(key, value)!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{key}{shown}: {message}"


def _locate(loc: list[str]) -> tuple[list[str], type[BaseModel] | None]:
    """pydantic's error path as the key an operator writes (the tag pydantic puts after a
    kind-keyed table such as [pos] left out), and the section that holds its last part."""
    key: list[str] = []
    holder: type[BaseModel] | None = None
    section: type[BaseModel] | None = Settings
    tags: dict[str, type[BaseModel]] = {}
    for part in loc:
        if part in tags:
            section, tags = tags[part], {}
            continue
        key.append(part)
        holder = section
        field = section.model_fields.get(part) if section else None
        annotation = field.annotation if field else None
        section = annotation if _is_section(annotation) else None
        tags = _sections_by_kind(field)
    return key, holder


def _is_section(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _sections_by_kind(field: FieldInfo | None) -> dict[str, type[BaseModel]]:
    """The sections a kind-keyed table (one with a ``Discriminator``) may be, by their
    ``kind``, which is the tag pydantic names them by; {} for any other field."""
    if field is None or not any(isinstance(m, Discriminator) for m in field.metadata):
        return {}
    annotation = field.annotation
    members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    members = tuple(get_args(m)[0] if get_origin(m) is Annotated else m for m in members)
    return {
        str(m.model_fields["kind"].default): m
        for m in members or (annotation,)
        if _is_section(m) and "kind" in m.model_fields
    }


def _allowed_keys_hint(name: str, section: type[BaseModel] | None) -> str:
    if section is None:
        return ""
    allowed = sorted(section.model_fields)
    near = difflib.get_close_matches(name, allowed, n=1)
    suggestion = f"; did you mean {near[0]!r}?" if near else ""
    return f"{suggestion} (allowed: {', '.join(allowed)})"


def _redacted(key: str, value: Any) -> Any:
    secretish = ("secret", "password", "url", "key", "token", "odbc_connect")
    if any(word in key.lower() for word in secretish):
        return "<hidden>"
    return value


# The example's data paths, relative to the config's folder, and their names under a
# ``--data-dir``.
_DATA_PATHS = {
    'url = "sqlite:///surveysync-data/ledger.sqlite"': 'url = "sqlite:///{}/ledger.sqlite"',
    'outbox_dir = "outbox"': 'outbox_dir = "{}/outbox"',
    'heartbeat_file = "surveysync-data/heartbeat.json"': 'heartbeat_file = "{}/heartbeat.json"',
}


def example_config_text(data_dir: Path | None = None) -> str:
    """The commented configuration file ``surveysync init`` writes (every setting); with
    ``data_dir``, the ledger, outbox and heartbeat are written as absolute paths under it."""
    text = (resources.files("surveysync") / "data" / "surveysync.example.toml").read_text("utf-8")
    if data_dir is None:
        return text
    folder = data_dir.expanduser().absolute().as_posix().rstrip("/")
    for line, under in _DATA_PATHS.items():
        text = text.replace(line, under.format(folder))
    return text
