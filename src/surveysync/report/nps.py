"""NPS arithmetic: categories, the score, its 90 % interval, and ranks. Pure functions on
counts; this module must never read a clock, a file or the ledger.

NPS = % promoters (9–10) − % detractors (0–6), in points from −100 to 100.

The interval is the adjusted Wald interval for a difference of two proportions of one
multinomial sample, which Rocks (2016, *The American Statistician* 70:4) found the best of six
for NPS: add ¾ of an answer to the promoters and to the detractors and 1½ to the passives
(n + 3 in all), then

    p = (P + ¾) / (n + 3),  d = (D + ¾) / (n + 3)
    Var(p − d) = (p + d − (p − d)²) / (n + 3)
    interval = (p − d) ± z · √Var,  z = 1.645 for 90 %, clipped to [−100, 100]

The plain Wald interval (no added answers) has width 0 when every answer is a promoter
(or a detractor), claiming certainty from a handful of answers; the added answers keep it
honest at small n and at the edges, and vanish as n grows. The NPS itself is always the
observed one (what anyone counting by hand gets); the interval is centred on the adjusted
estimate, so at the edges it is not symmetric around the NPS, and at n <= 4 it is widened
to reach the observed NPS, which it could otherwise miss. The margin (the "±") is z·√Var.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

CONFIDENCE = 0.90
Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)  # 1.6449 for 90 %, two-sided
# Answers added before the interval is computed (Rocks 2016): promoter, passive, detractor.
ADDED = (0.75, 1.5, 0.75)
INTERVAL_METHOD = "adjusted Wald (Rocks 2016): +3/4 promoter, +3/4 detractor, +1 1/2 passive"


class Category(StrEnum):
    PROMOTER = "promoter"
    PASSIVE = "passive"
    DETRACTOR = "detractor"


def category(score: int) -> Category:
    """The NPS category of a 0–10 score."""
    if not 0 <= score <= 10:
        raise ValueError(f"an NPS score is 0 to 10, not {score}")
    if score >= 9:
        return Category.PROMOTER
    if score >= 7:
        return Category.PASSIVE
    return Category.DETRACTOR


@dataclass(frozen=True, slots=True)
class Interval:
    """A 90 % interval in NPS points: ``low``..``high``; ``margin`` is its half-width."""

    low: float
    high: float
    margin: float


@dataclass(frozen=True, slots=True)
class Tally:
    """Counted answers of one group, by category."""

    promoters: int = 0
    passives: int = 0
    detractors: int = 0

    @property
    def responses(self) -> int:
        return self.promoters + self.passives + self.detractors

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.promoters + other.promoters,
            self.passives + other.passives,
            self.detractors + other.detractors,
        )

    @property
    def nps(self) -> float | None:
        """The observed NPS in points, or None without answers."""
        if not self.responses:
            return None
        return 100.0 * (self.promoters - self.detractors) / self.responses

    def interval(self, z: float = Z) -> Interval | None:
        """The adjusted Wald interval (see the module docstring), or None without answers."""
        if not self.responses:
            return None
        promoters, passives, detractors = ADDED
        n = self.responses + promoters + passives + detractors
        p = (self.promoters + promoters) / n
        d = (self.detractors + detractors) / n
        centre = p - d
        half = z * math.sqrt((p + d - centre**2) / n)
        observed = (self.promoters - self.detractors) / self.responses
        # At n <= 4 with every answer at one end, the adjusted interval can miss the observed
        # NPS (one promoter: -37 .. 87); it is widened to reach it.
        return Interval(
            low=100.0 * max(-1.0, min(centre - half, observed)),
            high=100.0 * min(1.0, max(centre + half, observed)),
            margin=100.0 * half,
        )


def tally_of(scores: Sequence[int]) -> Tally:
    """Counts per category of the number of answers per score, ``scores[k]`` for score k."""
    if len(scores) != 11:
        raise ValueError("one count per score 0..10")
    return Tally(promoters=sum(scores[9:]), passives=sum(scores[7:9]), detractors=sum(scores[:7]))


def ranks(values: Sequence[float | None]) -> list[int | None]:
    """Competition ranks (1 = highest, ties share a rank, "1 2 2 4"); None stays unranked."""
    ranked = [v for v in values if v is not None]
    return [None if v is None else 1 + sum(other > v for other in ranked) for v in values]
