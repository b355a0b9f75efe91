"""structlog, configured once at the entry point.

Events go to stderr (stdout belongs to command output such as ``status --json``): readable
lines on a terminal (times in store time), JSON lines otherwise. With a log folder, every event
is also appended as one JSON line to ``surveysync-YYYY-MM-DD.jsonl`` there, one file per day of
the store's calendar (times in the file stay UTC: never two zones in one line). While a progress
bar is shown, lines go through the bar's console (``route_console``), never into the bar.
Every event carries ``event``, ``level``, an ISO UTC ``timestamp``, the ``store`` and, during
a run, the ``run_id`` (and ``dry_run`` in a dry run). Exceptions are rendered to text first
and every event then passes ``SensitiveMasker`` last before rendering, so no email address or
configured secret reaches any output, tracebacks included, whatever a developer passed to the
logger.

Why not ``logging.handlers.TimedRotatingFileHandler`` or ``RotatingFileHandler`` (or loguru's
or concurrent-log-handler's rotation): they all rotate by *renaming* the live file
(``surveysync.log`` -> ``surveysync.log.1``). On Windows a rename fails with WinError 32 while any
other process holds the file open: a tail program, an antivirus scanner, or a second surveysync
(``sync`` from the CLI while the daemon runs). The rotation then fails on every event and the
file grows forever. ``DailyJsonFile`` never renames or truncates a file: the day is in the name,
the file is opened in append mode and each line is written whole in one unbuffered write, so two
processes appending to the same day interleave whole lines. Old days are deleted at most once a
day; a file that cannot be deleted (held open on Windows) is left for the next day's attempt.

This module must never log about its own file handling (that would recurse), and must never let
a log file that cannot be written stop a run once logging is set up.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging as stdlib_logging
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache
from io import FileIO
from pathlib import Path
from typing import Any, TextIO

import structlog
from pydantic import BaseModel, SecretStr

from surveysync.errors import url_credentials

_LOCAL = r"A-Za-z0-9._%+\-'!#$&*/=?^`{|}~\u00c0-\uffff"  # characters of an address's local part


@cache
def email_pattern() -> re.Pattern[str]:
    """An address in free text, compiled on first use: its wide character classes take
    16 ms, which every command would otherwise pay at start-up."""
    # The look-behind starts a match only where a word starts: without it a long value with
    # no address in it (a 20 kB SQL text) is rescanned from every position, in quadratic time.
    return re.compile(
        rf"(?<![{_LOCAL}])([{_LOCAL}])[{_LOCAL}]*@"
        r"((?:[A-Za-z0-9\u00c0-\uffff-]+\.)+[A-Za-z\u00c0-\uffff]{2,})"
    )


SECRET_MASK = "***"
LOG_FILE_PREFIX = "surveysync-"
LOG_FILE_SUFFIX = ".jsonl"
_LOG_FILE_NAME = re.compile(r"^surveysync-(\d{4}-\d{2}-\d{2})\.jsonl$")


class LogSetupError(Exception):
    """The log folder cannot be created or written; the message names it and says why."""


def secret_values(settings: BaseModel) -> list[str]:
    """Every SecretStr value in a settings tree (what must never be logged)."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            found.extend(secret_values(value))
    return found


class SensitiveMasker:
    """A structlog processor: masks email addresses and known secrets in every value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        found = {s for s in secrets if len(s) >= 4}
        pairs = {(s, SECRET_MASK) for s in found}
        # A URL's password is masked wherever it shows, also in the pieces a driver quotes
        # from a URL it misread (an unencoded "@": "failed to resolve host 'ss@host'").
        pairs |= {pair for s in found if "://" in s for pair in url_credentials(s)}
        # Longest first, so a secret containing another is masked whole.
        self._pairs = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = self.mask(value)
        return event_dict

    def mask(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._mask_text(value)
        if isinstance(value, dict):
            return {k: self.mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask(v) for v in value]
        if isinstance(value, BaseException):
            return self._mask_text(f"{type(value).__name__}: {value}")
        return value

    def _mask_text(self, text: str) -> str:
        for secret, shown in self._pairs:
            text = text.replace(secret, shown)
        return email_pattern().sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


class StoreStamp:
    """A structlog processor: every event names the store, in a run or outside one."""

    def __init__(self, store: str) -> None:
        self.store = store

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("store", self.store)
        return event_dict


def log_file_name(day: date) -> str:
    return f"{LOG_FILE_PREFIX}{day.isoformat()}{LOG_FILE_SUFFIX}"


def _event_day(event_dict: MutableMapping[str, Any], tz: tzinfo = UTC) -> date:
    """The store's day of the event's own timestamp (so a frozen clock moves files too)."""
    stamp = event_dict.get("timestamp")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(tz).date()
        except ValueError:
            pass
    return datetime.now(tz).date()


def _log_file_day(name: str) -> date | None:
    match = _LOG_FILE_NAME.match(name)
    try:
        return date.fromisoformat(match.group(1)) if match else None
    except ValueError:  # surveysync-2026-13-45.jsonl is not ours
        return None


class DailyJsonFile:
    """A structlog processor: appends each event as one JSON line to its day's file (the
    store's calendar day, ``tz``).

    It renders a copy and passes the event on untouched, so the console renderer after it
    sees the same (already masked) event.
    """

    def __init__(self, folder: Path, keep_days: int = 30, tz: tzinfo = UTC) -> None:
        self.folder = folder
        self.keep_days = keep_days
        self.tz = tz
        self._render = structlog.processors.JSONRenderer(ensure_ascii=False)
        self._lock = threading.Lock()
        self._file: FileIO | None = None
        self._day: date | None = None
        self._pruned_on: date | None = None
        self._failing = False
        self._closed = False

    def open(self, day: date) -> None:
        """Create the folder and open ``day``'s file; LogSetupError when that is impossible."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._switch_to(day)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise LogSetupError(
                f"cannot write log files to folder {str(self.folder)!r}: {reason}"
            ) from exc

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        line = self._render(logger, method, event_dict)
        data = line if isinstance(line, bytes) else line.encode("utf-8")
        problem = self.write(_event_day(event_dict, self.tz), data + b"\n")
        if problem is not None:
            event_dict["log_file_error"] = problem
        return event_dict

    def write(self, day: date, data: bytes) -> str | None:
        """Append ``data`` to ``day``'s file; on the first failure in a row, say why."""
        with self._lock:
            if self._closed:
                return None
            try:
                file = self._file if day == self._day and self._file else self._switch_to(day)
                file.write(data)
            except OSError as exc:
                self._drop_file()  # reopened by the next event
                if self._failing:
                    return None
                self._failing = True
                return f"cannot write {self.folder / log_file_name(day)}: {exc.strerror or exc}"
            self._failing = False
            return None

    def close(self) -> None:
        """Close the file; later events go to the console only."""
        with self._lock:
            self._closed = True
            self._drop_file()

    def prune(self, today: date) -> list[Path]:
        """Delete this pattern's files dated more than ``keep_days`` before ``today``."""
        oldest_kept = today - timedelta(days=self.keep_days)
        deleted: list[Path] = []
        for path in self.folder.iterdir():
            day = _log_file_day(path.name)
            if day is None or day >= oldest_kept:
                continue
            try:
                path.unlink()
            except OSError:
                continue  # held open (Windows) or already gone: tomorrow's prune tries again
            deleted.append(path)
        return deleted

    def _switch_to(self, day: date) -> FileIO:
        self._drop_file()
        # Unbuffered append: each line is one write() at the end of the file, never torn.
        self._file = file = open(self.folder / log_file_name(day), "ab", buffering=0)  # noqa: SIM115
        self._day = day
        if self._pruned_on is None or day > self._pruned_on:
            self._pruned_on = day
            self._prune_quietly(day)
        return file

    def _prune_quietly(self, day: date) -> None:
        with contextlib.suppress(OSError):  # an unreadable folder must not stop logging
            self.prune(day)

    def _drop_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self._file = None


_current_file: DailyJsonFile | None = None


def close() -> None:
    """Close the log file opened by ``configure``, if any (tests, reconfiguration, exit)."""
    global _current_file
    if _current_file is not None:
        _current_file.close()
        _current_file = None


def configure(
    level: str = "info",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    *,
    log_dir: Path | None = None,
    keep_days: int = 30,
    store: str | None = None,
    tz: tzinfo = UTC,
) -> None:
    """Set up structlog for this process. Called by the CLI entry point, nowhere else.

    Closes the file of an earlier call first. Raises LogSetupError when ``log_dir`` cannot be
    created or written.
    """
    global _current_file
    close()
    out = stream or sys.stderr
    log_file = _open_log_file(log_dir, keep_days, tz)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *([StoreStamp(store)] if store else []),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            SensitiveMasker(secrets),
            *([log_file] if log_file else []),
            *_console_processors(out, tz),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            stdlib_logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=lambda *args: _RoutedLogger(out),
        cache_logger_on_first_use=False,
    )
    _current_file = log_file


def _open_log_file(log_dir: Path | None, keep_days: int, tz: tzinfo) -> DailyJsonFile | None:
    if log_dir is None:
        return None
    log_file = DailyJsonFile(log_dir, keep_days, tz)
    log_file.open(datetime.now(tz).date())
    return log_file


def _console_processors(out: TextIO, tz: tzinfo) -> list[Any]:
    if not out.isatty():
        return [structlog.processors.JSONRenderer(ensure_ascii=False)]
    return [StoreTime(tz), structlog.dev.ConsoleRenderer(colors=_can_color())]


class StoreTime:
    """A structlog processor for the terminal only: the event's time in store time (the files
    and JSON lines keep UTC)."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        stamp = event_dict.get("timestamp")
        if isinstance(stamp, str):
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(self.tz)
                event_dict["timestamp"] = moment.strftime("%Y-%m-%d %H:%M:%S")
        return event_dict


# Where rendered lines go: the stream given to ``configure``, unless a progress bar has
# taken the console over (``route_console``) so that a line never lands inside the bar.
_route: Callable[[str], None] | None = None


class _RoutedLogger:
    def __init__(self, out: TextIO) -> None:
        self._out = out

    def msg(self, message: str) -> None:
        route = _route
        if route is not None:
            route(message)
            return
        self._out.write(message + "\n")
        self._out.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = failure = msg


@contextlib.contextmanager
def route_console(sink: Callable[[str], None]) -> Iterator[None]:
    """While inside, every rendered log line goes to ``sink`` (a progress bar's console)."""
    global _route
    previous, _route = _route, sink
    try:
        yield
    finally:
        _route = previous


def _can_color() -> bool:
    """structlog needs colorama for colours on Windows and refuses to start without it."""
    return sys.platform != "win32" or importlib.util.find_spec("colorama") is not None
