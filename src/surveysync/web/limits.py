"""A per-email rate limit, so that one link cannot write thousands of ledger rows.

A token bucket per request id (every link of one email shares it): ``burst`` visits at once
(a scanner's pass over all eleven score links, a HEAD and a GET each, fits), then
``per_hour`` more per hour. Memory is bounded: past ``max_keys`` emails the least recently
seen one is forgotten (it starts again with a full bucket, which only ever allows more).

In memory, per process: the ledger's own cap (``ledger.answers.MAX_VISITS``) holds across
restarts. Thread-safe; the clock is passed in.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class RateLimiter:
    def __init__(self, burst: int, per_hour: int, max_keys: int = 50_000) -> None:
        self._burst = float(burst)
        self._per_second = per_hour / 3600.0
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float) -> bool:
        """Take one visit from ``key``'s bucket; False when it is empty."""
        with self._lock:
            tokens, since = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + max(0.0, now - since) * self._per_second)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return allowed
