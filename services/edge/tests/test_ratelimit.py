"""Per-client token buckets: bursts, refill, Retry-After, and clients kept apart."""

from __future__ import annotations

import pytest

from hs_edge.ratelimit import RateLimiter


def test_a_burst_then_the_steady_rate() -> None:
    limiter = RateLimiter(rate=2.0, capacity=5)
    decisions = [limiter.take("app", now=0.0) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    refused = decisions[-1]
    assert refused.retry_after == 1  # half a second to the next token, rounded up
    assert refused.headers()["Retry-After"] == "1"
    assert refused.headers()["RateLimit-Limit"] == "5"
    assert refused.reset == 3  # 5 tokens at 2 a second
    assert limiter.take("app", now=0.49).allowed is False
    assert limiter.take("app", now=0.5).allowed is True
    assert "Retry-After" not in limiter.take("app", now=10.0).headers()


def test_clients_do_not_share_a_bucket() -> None:
    limiter = RateLimiter(rate=1.0, capacity=1)
    assert limiter.take("a", now=0.0).allowed
    assert not limiter.take("a", now=0.1).allowed
    assert limiter.take("b", now=0.1).allowed


def test_the_client_table_is_bounded_by_forgetting_refilled_buckets() -> None:
    limiter = RateLimiter(rate=10.0, capacity=2, max_clients=3)
    for n in range(3):
        limiter.take(f"c{n}", now=0.0)
    limiter.take("late", now=5.0)  # everyone else has refilled by now
    assert set(limiter.buckets) == {"late"}


def test_a_limit_must_allow_something() -> None:
    with pytest.raises(ValueError, match="positive rate"):
        RateLimiter(rate=0, capacity=1)
