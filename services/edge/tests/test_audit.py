"""The audit trail's hash chains: intact trails verify; every kind of tampering is named."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from hs_common.crypto import Keyring
from hs_edge.audit import GENESIS, Anchor, Chain, Entry, Outcome, Request, verify

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
KEYRING = Keyring.generate()


def request(n: int, outcome: Outcome = Outcome.ALLOWED) -> Request:
    return Request(
        at=T0 + timedelta(seconds=n), client_id="ward-app", subject=f"nurse-{n % 3}",
        role="clinician", operation="GET /persons/{id}/observations", person_id=f"P{n % 5}",
        outcome=outcome, status=200 if outcome is Outcome.ALLOWED else 403,
        reason=None if outcome is Outcome.ALLOWED else "scope.missing",
    )  # fmt: skip


def trail() -> list[tuple[Entry, int]]:
    """Two replicas writing at once; the first restarts and links its new chain to the old."""
    first, second = Chain("edge-a@1", KEYRING), Chain("edge-b@1", KEYRING)
    entries = []
    for n in range(10):
        entries.append(
            (first if n % 2 else second).append(
                request(n, Outcome(("ALLOWED", "DENIED")[n % 3 == 0]))
            )
        )
    restarted = Chain("edge-a@2", KEYRING, previous_head=first.head)
    entries += [restarted.append(request(n)) for n in range(10, 14)]
    return [(entry, offset) for offset, entry in enumerate(entries)]


def test_an_intact_trail_verifies() -> None:
    verdict = verify(trail(), KEYRING)
    assert verdict.intact
    assert (verdict.entries, verdict.chains) == (14, 3)


def test_a_changed_entry_is_named() -> None:
    entries = trail()
    entry, offset = entries[5]
    forged = dataclasses.replace(entry.request, outcome=Outcome.ALLOWED, status=200, person_id="P9")
    entries[5] = (dataclasses.replace(entry, request=forged), offset)
    verdict = verify(entries, KEYRING)
    assert not verdict.intact
    assert verdict.first_bad == (entry.chain, entry.sequence, 5)
    assert verdict.problem is not None and "changed" in verdict.problem


@pytest.mark.parametrize("removed", [3, 4, 10])
def test_a_removed_entry_is_named_at_the_next_of_its_chain(removed: int) -> None:
    entries = trail()
    gone, _ = entries.pop(removed)
    verdict = verify(entries, KEYRING)
    assert not verdict.intact
    assert verdict.first_bad is not None
    chain, sequence, _offset = verdict.first_bad
    assert chain == gone.chain and sequence == gone.sequence + 1


def test_entries_moved_out_of_order_are_named() -> None:
    entries = trail()
    entries[2], entries[4] = entries[4], entries[2]  # the same writer's entries 1 and 2
    verdict = verify(entries, KEYRING)
    assert not verdict.intact
    assert verdict.first_bad is not None and verdict.first_bad[2] == 4


def test_removing_a_whole_earlier_chain_shows_in_the_next_one() -> None:
    entries = [(e, o) for e, o in trail() if e.chain != "edge-a@1"]
    verdict = verify(entries, KEYRING)
    assert not verdict.intact
    assert verdict.first_bad is not None and verdict.first_bad[0] == "edge-a@2"
    assert verdict.problem is not None and "last entries are not in the trail" in verdict.problem


def test_a_rehashed_forgery_still_breaks_the_link_to_the_next_entry() -> None:
    """Whoever changes an entry and recomputes its hash must recompute every later one."""
    entries = trail()
    entry, offset = entries[1]
    forged = dataclasses.replace(entry.request, person_id="P9")
    rehashed = Chain(entry.chain, KEYRING, entry.previous)
    rehashed.sequence = entry.sequence
    entries[1] = (rehashed.append(forged), offset)
    verdict = verify(entries, KEYRING)
    assert not verdict.intact
    assert verdict.first_bad is not None and verdict.first_bad[2] == 3  # its chain's next entry


def test_a_chain_starts_at_genesis_or_a_known_head() -> None:
    assert Chain("x", KEYRING).head == GENESIS


def heads(entries: list[tuple[Entry, int]]) -> list[Anchor]:
    last = {entry.chain: entry for entry, _ in entries}
    return [Anchor(e.chain, e.sequence, e.hash) for e in last.values()]


def test_a_cut_off_tail_shows_only_against_the_anchored_heads() -> None:
    entries = trail()
    anchors = heads(entries)
    assert verify(entries, KEYRING, anchors).intact
    cut = entries[:-2]  # the newest two entries of the newest chain
    assert verify(cut, KEYRING).intact  # a hash chain alone cannot tell
    verdict = verify(cut, KEYRING, anchors)
    assert not verdict.intact
    assert verdict.first_bad == ("edge-a@2", 3, "anchor")
    assert verdict.problem == "the trail ends at entry 1: its newest entries were removed"


def test_an_anchor_the_trail_does_not_hold_as_written_is_named() -> None:
    entries = trail()
    wrong = [dataclasses.replace(anchor, hash="0" * 64) for anchor in heads(entries)[:1]]
    assert (
        verify(entries, KEYRING, wrong).problem
        == "the anchored entry is not in the trail as it was written"
    )
    missing = [Anchor("edge-c@1", 0, "0" * 64)]  # a whole chain removed, its anchor kept
    assert not verify(entries, KEYRING, missing).intact


@pytest.mark.parametrize("forger", ["own key", "no key", "the EMPI's key"])
def test_a_chain_forged_without_the_edge_s_key_is_named(forger: str) -> None:
    """Someone able to write the topic, but without the edge's audit key, writes a chain that
    starts from zeros: each way of keying it fails at its first entry."""
    keys = {"own key": Keyring.generate(), "no key": KEYRING, "the EMPI's key": KEYRING}[forger]
    chain = Chain("edge-z@1", keys)
    entries = [(chain.append(request(n)), n) for n in range(3)]
    if forger == "no key":
        entries = [(dataclasses.replace(e, key_id=None), n) for e, n in entries]
    if forger == "the EMPI's key":
        empi = KEYRING.active_mac["empi"]
        entries = [(dataclasses.replace(e, key_id=empi), n) for e, n in entries]
    verdict = verify(entries, KEYRING)
    assert not verdict.intact and verdict.first_bad == ("edge-z@1", 0, 0)
    assert verdict.problem is not None
    assert ("not keyed" if forger == "no key" else "not one of the edge's") in verdict.problem
