"""Reading the daily JSON-lines log files back, for ``surveysync logs``: which events, in what
order, shown how.

Support questions this answers in one command (README, "Reading the logs"):

    did last night's run work?            surveysync logs --run last --level warning
    what happened to customer C0042?      surveysync logs --customer C0042 --since 2026-11-24
    what happened to this address?        surveysync logs --email kim@example.com

The files never hold an address: ``--email`` is matched through the same keyed hash the events
carry (``person``), computed by the caller from the ledger's key. Times in the files are UTC;
they are shown in store time. A line that is not JSON (a file cut by a full disk) is skipped
and counted, never fatal. Reads only; never writes or deletes a log file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from surveysync.logging import LOG_FILE_PREFIX, LOG_FILE_SUFFIX

LEVELS = ("debug", "info", "warning", "error", "critical")
_NOT_SHOWN = {"timestamp", "level", "event", "store"}

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which events to show; every field that is set must match."""

    run_id: str | None = None
    since: datetime | None = None
    level: str | None = None  # the least severe level shown
    event: str | None = None  # a name, or a pattern such as "request.*"
    customer_id: str | None = None
    person: str | None = None  # the keyed-hash tag of an address (``logs --email``)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], tz: tzinfo) -> LogFilter:
        """The filter ``surveysync logs`` was asked for: ``since`` is store time."""
        since = options.get("since")
        return cls(
            run_id=options.get("run_id"),
            since=since.replace(tzinfo=tz) if since else None,
            level=options.get("level"),
            event=options.get("event_name"),
            customer_id=options.get("customer_id"),
            person=options.get("person"),
        )

    def matches(self, event: Event) -> bool:
        return all(check(event) for check in self._checks())

    def _checks(self) -> Iterator[Callable[[Event], bool]]:
        if self.run_id is not None:
            yield lambda e: e.get("run_id") == self.run_id
        if self.since is not None:
            since = self.since
            yield lambda e: (moment(e) or since) >= since
        if self.level is not None:
            least = LEVELS.index(self.level)
            yield lambda e: _rank(e) >= least
        if self.event is not None:
            pattern = self.event
            yield lambda e: fnmatchcase(str(e.get("event", "")), pattern)
        if self.customer_id is not None:
            yield lambda e: str(e.get("customer_id")) == self.customer_id
        if self.person is not None:
            yield lambda e: e.get("person") == self.person


@dataclass
class LogReader:
    """The events of a log folder, oldest first."""

    folder: Path
    unreadable: int = 0  # lines that were not JSON objects
    _offsets: dict[Path, int] = field(default_factory=dict)

    def files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        names = self.folder.glob(f"{LOG_FILE_PREFIX}*{LOG_FILE_SUFFIX}")
        return sorted(names, key=lambda p: p.name)  # the date is in the name

    def events(self) -> Iterator[Event]:
        """Every event of every file, from the start."""
        for path in self.files():
            yield from self._read(path, 0)

    def select(self, log_filter: LogFilter) -> Iterator[Event]:
        """The events that match, oldest first."""
        return (e for e in self.events() if log_filter.matches(e))

    def new_events(self) -> Iterator[Event]:
        """What was appended since the last call (``--follow``)."""
        for path in self.files():
            yield from self._read(path, self._offsets.get(path, 0))

    def last_run_id(self) -> str | None:
        """The run of the latest ``run.started`` event."""
        found = None
        for event in self.events():
            if event.get("event") == "run.started" and event.get("run_id"):
                found = str(event["run_id"])
        return found

    def _read(self, path: Path, offset: int) -> Iterator[Event]:
        with path.open("rb") as handle:
            handle.seek(offset)
            for raw in handle:
                if not raw.endswith(b"\n"):  # being written: read it next time
                    break
                offset += len(raw)
                event = self._parse(raw)
                if event is not None:
                    yield event
        self._offsets[path] = offset

    def _parse(self, raw: bytes) -> Event | None:
        try:
            event = json.loads(raw.decode("utf-8", errors="replace"))
        except ValueError:
            self.unreadable += 1
            return None
        if not isinstance(event, dict):
            self.unreadable += 1
            return None
        return event


def follow(
    reader: LogReader,
    log_filter: LogFilter,
    wait: Callable[[], bool],
) -> Iterator[Event]:
    """Events as they are appended, until ``wait`` (which pauses) returns True."""
    for _ in reader.events():  # start at the end of what is there
        pass
    while not wait():
        yield from (e for e in reader.new_events() if log_filter.matches(e))


def select(events: Iterable[Event], log_filter: LogFilter) -> Iterator[Event]:
    return (e for e in events if log_filter.matches(e))


def moment(event: Event) -> datetime | None:
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def render(event: Event, tz: tzinfo) -> str:
    """One readable line: store time, level, event, then the other fields as key=value."""
    at = moment(event)
    when = at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if at else "-"
    level = str(event.get("level", "-"))
    fields = " ".join(
        f"{key}={_value(value)}" for key, value in event.items() if key not in _NOT_SHOWN
    )
    return f"{when} {level:<7} {event.get('event', '-')}  {fields}".rstrip()


def level_of(event: Event) -> str:
    return str(event.get("level", "info"))


def _rank(event: Event) -> int:
    level = level_of(event)
    return LEVELS.index(level) if level in LEVELS else 0


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f'"{text}"' if " " in text else text
