"""The report's figures: what the ledger's aggregates (cells) add up to per group, with the
NPS, its interval, the response rate, and which groups are too small to rank.

Pure: builds values from counts the ledger already summed; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from surveysync.report.nps import Interval, Tally, ranks
from surveysync.report.period import Bucket, Dim, Period

Key = tuple[str | int | None, ...]  # per dimension: location id, employee name, bucket index
NO_LOCATION = "(no location)"
NO_EMPLOYEE = "(no employee)"


@dataclass(frozen=True, slots=True)
class Answers:
    """What the survey page recorded for a group's surveys, by how it counts.

    ``confirmed`` (a sent form), ``clicked`` (a score link, its settle window passed and
    swept) and ``settled`` (provisional, window passed, not swept yet: counted as clicked)
    are the answers the NPS uses; ``provisional`` (window still open) and ``scanner`` (a
    link scanner's pass) are not counted.
    """

    confirmed: int = 0
    clicked: int = 0
    settled: int = 0
    provisional: int = 0
    scanner: int = 0

    @property
    def counted(self) -> int:
        return self.confirmed + self.clicked + self.settled

    def __add__(self, other: Answers) -> Answers:
        return Answers(
            self.confirmed + other.confirmed,
            self.clicked + other.clicked,
            self.settled + other.settled,
            self.provisional + other.provisional,
            self.scanner + other.scanner,
        )


@dataclass(frozen=True, slots=True)
class Cell:
    """One group's sums as the ledger returns them."""

    key: Key
    sent: int = 0
    tally: Tally = field(default_factory=Tally)
    answers: Answers = field(default_factory=Answers)
    scores: tuple[int, ...] = (0,) * 11  # counted answers per score 0..10

    def __add__(self, other: Cell) -> Cell:
        return Cell(
            self.key,
            self.sent + other.sent,
            self.tally + other.tally,
            self.answers + other.answers,
            tuple(a + b for a, b in zip(self.scores, other.scores, strict=True)),
        )


def rollup(cells: Iterable[Cell], keep: Sequence[int]) -> dict[Key, Cell]:
    """Cells summed over the dimensions not kept (``keep``: positions in the key)."""
    summed: dict[Key, Cell] = {}
    for cell in cells:
        key = tuple(cell.key[i] for i in keep)
        moved = replace(cell, key=key)
        summed[key] = summed[key] + moved if key in summed else moved
    return summed


@dataclass(frozen=True, slots=True)
class Group:
    """One row of the report: its labels by dimension, counts, NPS, interval and rank."""

    labels: Mapping[Dim, str]
    key: Key
    sent: int
    tally: Tally
    answers: Answers
    scores: tuple[int, ...]
    too_few: bool
    rank: int | None = None

    @property
    def nps(self) -> float | None:
        return self.tally.nps

    @property
    def interval(self) -> Interval | None:
        return self.tally.interval()

    @property
    def response_rate(self) -> float | None:
        return self.tally.responses / self.sent if self.sent else None


@dataclass(frozen=True, slots=True)
class Labels:
    """How keys read: location names by id, and the period's buckets by index."""

    locations: Mapping[str, str] = field(default_factory=dict)
    buckets: Sequence[Bucket] = ()

    def of(self, dim: Dim, value: str | int | None) -> str:
        if dim is Dim.LOCATION:
            return NO_LOCATION if value is None else self.locations.get(str(value), str(value))
        if dim is Dim.EMPLOYEE:
            return str(value) if value else NO_EMPLOYEE
        assert isinstance(value, int)
        return self.buckets[value].label


@dataclass(frozen=True, slots=True)
class Report:
    """The figures of one report: the total and one group per combination asked for."""

    store: str
    period: Period
    by: tuple[Dim, ...]
    min_responses: int
    generated_at: datetime
    total: Group
    groups: list[Group]


def group_rows(
    cells: Iterable[Cell], by: Sequence[Dim], labels: Labels, min_responses: int
) -> list[Group]:
    """One group per cell, ranked within each month or week, in the order a reader wants:
    time first, then best NPS first, then the groups too small to rank, by name."""
    groups = [_group(cell, by, labels, min_responses) for cell in cells]
    ranked = _ranked(groups, by)
    return sorted(ranked, key=lambda g: _order(g, by))


def total_of(cells: Iterable[Cell], min_responses: int) -> Group:
    total = Cell(())
    for cell in cells:
        total = total + replace(cell, key=())
    return _group(total, (), Labels(), min_responses)


def _group(cell: Cell, by: Sequence[Dim], labels: Labels, min_responses: int) -> Group:
    return Group(
        labels={dim: labels.of(dim, value) for dim, value in zip(by, cell.key, strict=True)},
        key=cell.key,
        sent=cell.sent,
        tally=cell.tally,
        answers=cell.answers,
        scores=cell.scores,
        too_few=cell.tally.responses < min_responses,
    )


def _ranked(groups: list[Group], by: Sequence[Dim]) -> list[Group]:
    """Groups ranked by NPS among those sharing their month or week; a time series alone
    (``--by month``) is not ranked, and neither is a group with too few answers."""
    if all(dim.is_time for dim in by):
        return groups
    time_at = [i for i, dim in enumerate(by) if dim.is_time]
    result: list[Group] = []
    for moment in dict.fromkeys(tuple(g.key[i] for i in time_at) for g in groups):
        peers = [g for g in groups if tuple(g.key[i] for i in time_at) == moment]
        values = [None if g.too_few else g.nps for g in peers]
        result += [replace(g, rank=r) for g, r in zip(peers, ranks(values), strict=True)]
    return result


def _order(group: Group, by: Sequence[Dim]) -> tuple[object, ...]:
    times = tuple(group.key[i] or 0 for i, dim in enumerate(by) if dim.is_time)
    names = tuple(group.labels[dim].casefold() for dim in by if not dim.is_time)
    return (*times, group.rank is None, group.rank or 0, names)
