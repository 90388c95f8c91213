"""Rate limits per client: a token bucket each. Pure (the clock is passed in).

A client may burst up to `capacity` requests and then make `rate` a second. A refused request
learns how long to wait (`Retry-After`), and every answer carries what is left
(`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`, IETF httpapi-ratelimit-headers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds until one request is allowed again (0 when allowed)
    reset: int  # whole seconds until the bucket is full again

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, capacity: int, max_clients: int = 100_000) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("a rate limit needs a positive rate and a capacity of at least 1")
        self.rate, self.capacity, self.max_clients = rate, capacity, max_clients
        self.buckets: dict[str, _Bucket] = {}

    def take(self, client: str, now: float) -> Decision:
        bucket = self.buckets.get(client)
        if bucket is None:
            if len(self.buckets) >= self.max_clients:
                self._forget_full(now)
            bucket = self.buckets[client] = _Bucket(float(self.capacity), now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        allowed = bucket.tokens >= 1
        if allowed:
            bucket.tokens -= 1
        retry = 0 if allowed else math.ceil((1 - bucket.tokens) / self.rate)
        reset = math.ceil((self.capacity - bucket.tokens) / self.rate)
        return Decision(allowed, self.capacity, int(bucket.tokens), retry, reset)

    def exhausted(self, client: str, now: float) -> bool:
        """Whether the client's next request would be refused (nothing is taken)."""
        bucket = self.buckets.get(client)
        return bucket is not None and bucket.tokens + (now - bucket.at) * self.rate < 1

    def _forget_full(self, now: float) -> None:
        """Drop clients whose buckets have refilled: they are as if never seen."""
        full = [
            client
            for client, b in self.buckets.items()
            if b.tokens + (now - b.at) * self.rate >= self.capacity
        ]
        for client in full:
            del self.buckets[client]
