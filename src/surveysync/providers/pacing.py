"""Spacing sends out so that a provider's rate limit is never exceeded.

A ``Pacer`` lets one event through, then makes the next wait until ``1 / per_second`` has
passed on a monotonic clock. The clock and the sleep are passed in, so tests drive time
themselves and never sleep. This module must never read the wall clock (a clock change
would stall or burst sends) and never sleep when no limit is set.

Why not a library: rate-limit packages (pyrate-limiter, limits) bring token buckets, storage
backends and their own clocks for many processes sharing one budget. A provider needs one
rule, for one connection in one thread: a minimum gap between two sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """At most ``per_second`` calls of ``wait`` return per second; ``None`` means no limit."""

    def __init__(
        self,
        per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._gap = 1.0 / per_second if per_second else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None  # the earliest time the next send may start

    def wait(self) -> None:
        """Return when the next send may start, sleeping as long as needed."""
        if not self._gap:
            return
        now = self._clock()
        # A loop, not one sleep: a sleep may end early (signals), and a short one is harmless.
        while self._next is not None and now < self._next:
            self._sleep(self._next - now)
            now = self._clock()
        self._next = now + self._gap
