"""Per-identity rate limiting: a token bucket per caller, 429 with Retry-After when it is empty.

Kept in the API's memory (each replica limits on its own): the point is that one runaway
training loop cannot starve the others or the apiserver behind the API, not exact accounting.
"""

from __future__ import annotations

import math
import threading
import time

from cachetools import TTLCache
from fastapi import HTTPException


class RateLimit:
    """`rate` requests a second on average, `burst` at once, per identity (rate 0: unlimited)."""

    def __init__(self, rate: float, burst: int, identities: int = 10_000) -> None:
        self.rate, self.burst = rate, burst
        # An identity idle long enough to refill its bucket is forgotten (bounded memory).
        idle = burst / rate if rate > 0 else 1.0
        self._buckets: TTLCache = TTLCache(maxsize=identities, ttl=max(idle, 1.0), timer=time.monotonic)
        self._lock = threading.Lock()

    def take(self, who: str) -> None:
        """Spend one token of `who`'s bucket, or raise 429 saying when to come back."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, since = self._buckets.get(who, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - since) * self.rate)
            if tokens < 1.0:
                self._buckets[who] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate)
                raise HTTPException(
                    status_code=429,
                    detail=f"too many requests from {who!r}: at most {self.rate:g}/s (burst {self.burst})",
                    headers={"Retry-After": str(wait)},
                )
            self._buckets[who] = (tokens - 1.0, now)
