"""One admission path for REST and gRPC: a peer sending tokens that are not accepted is slowed
before its tokens are even checked; a good token is then limited per client."""

from __future__ import annotations

from typing import Any

import pytest
from test_auth import VALIDATOR, token

from hs_edge import operations as op
from hs_edge.auth import Refused
from hs_edge.ratelimit import RateLimiter
from hs_edge.store import Store


def edge(now: list[float]) -> op.Edge:
    unused: Any = None  # admission touches neither the codec nor the trail
    return op.Edge(Store.sqlite(":memory:"), unused, VALIDATOR, RateLimiter(rate=1, capacity=3),
                   unused, clock=lambda: now[0], opened_size=0)  # fmt: skip


def code(admitting: op.Edge, authorization: str | None, peer: str = "10.0.0.9") -> str:
    try:
        op.admit(admitting, authorization, peer)
    except Refused as refused:
        return refused.code
    return "admitted"


def test_a_peer_guessing_tokens_is_refused_before_its_tokens_are_checked() -> None:
    now = [0.0]
    guarded = edge(now)
    answers = [code(guarded, "Bearer guess") for _ in range(25)]
    assert answers[:20] == ["token.malformed"] * 20
    assert answers[20:] == ["rate.limited"] * 5
    assert code(guarded, f"Bearer {token()}", peer="10.0.0.7") == "admitted"  # another peer
    now[0] += 10  # the bad-token bucket refills at one every two seconds
    assert code(guarded, "Bearer guess") == "token.malformed"


@pytest.mark.parametrize("public", [True, False])
def test_good_requests_are_limited_per_client_or_per_peer_on_public_paths(public: bool) -> None:
    guarded = edge([0.0])
    good = f"Bearer {token()}"
    answers = []
    for _ in range(4):
        try:
            admitted = op.admit(guarded, None if public else good, "10.0.0.9", public=public)
            answers.append(admitted.headers["RateLimit-Remaining"])
        except Refused as refused:
            answers.append(refused.code)
    assert answers == ["2", "1", "0", "rate.limited"]


def test_a_revoked_client_s_token_is_refused_on_the_replica_that_revoked_it_at_once() -> None:
    guarded = edge([0.0])
    assert code(guarded, f"Bearer {token()}") == "admitted"
    guarded.revoked.add("ward-app")
    assert code(guarded, f"Bearer {token()}") == "client.revoked"
