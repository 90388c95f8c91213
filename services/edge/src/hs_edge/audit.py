"""The tamper-evident audit trail: every request, allowed or denied, is an audit entry, and
entries are hash-chained with SM3. Pure.

Each edge process writes its own chain, so replicas need no coordination:
- a chain is named by its writer and start time;
- its entries are numbered from 0;
- each entry's hash is SM3(the previous entry's hash ‖ the entry's canonical bytes);
- the first entry's "previous" is the head of the writer's last chain (when the writer found
  one at start), so removing a whole chain shows too.

Verification walks every chain in log order. The first entry whose hash does not match its
content, whose previous hash is not its predecessor's, or whose number skips, is named.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from hs_common.crypto import sm3

GENESIS = "0" * 64


class Outcome(StrEnum):
    ALLOWED = "ALLOWED"
    DENIED = "DENIED"


@dataclass(frozen=True)
class Request:
    """What one audit entry says: who asked what, about whom, and what came of it."""

    at: datetime
    client_id: str  # the OAuth2 client
    subject: str | None  # the user the token speaks for (a staff or patient account id)
    role: str | None
    operation: str  # e.g. "GET /persons/{id}" or "hs.edge.v1.Edge/GetPerson"
    person_id: str | None  # the person the request is about, when it is about one
    outcome: Outcome
    status: int  # HTTP status, or the HTTP equivalent of the gRPC status
    reason: str | None = None  # why it was denied (a code such as "token.expired")


@dataclass(frozen=True)
class Entry:
    chain: str
    sequence: int
    previous: str  # hex SM3 of the previous entry (GENESIS, or the writer's last chain head)
    request: Request
    hash: str  # hex SM3(previous ‖ canonical(chain, sequence, request))


def canonical(chain: str, sequence: int, request: Request) -> bytes:
    """The bytes an entry's hash covers: its fields as sorted compact JSON."""
    fields: dict[str, Any] = {
        "chain": chain,
        "sequence": sequence,
        "at": request.at.isoformat(),
        "client_id": request.client_id,
        "subject": request.subject,
        "role": request.role,
        "operation": request.operation,
        "person_id": request.person_id,
        "outcome": request.outcome.value,
        "status": request.status,
        "reason": request.reason,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(previous: str, chain: str, sequence: int, request: Request) -> str:
    return sm3(bytes.fromhex(previous) + canonical(chain, sequence, request)).hex()


class Chain:
    """One writer's chain: each request appended becomes the next entry."""

    def __init__(self, name: str, previous_head: str = GENESIS) -> None:
        self.name = name
        self.head = previous_head
        self.sequence = 0

    def append(self, request: Request) -> Entry:
        digest = entry_hash(self.head, self.name, self.sequence, request)
        entry = Entry(self.name, self.sequence, self.head, request, digest)
        self.head, self.sequence = digest, self.sequence + 1
        return entry


@dataclass(frozen=True)
class Verdict:
    intact: bool
    entries: int
    chains: int
    first_bad: tuple[str, int, Any] | None = None  # (chain, sequence, where: e.g. the offset)
    problem: str | None = None


@dataclass(frozen=True)
class Anchor:
    """A chain's head as recorded outside the trail (in the read model's database)."""

    chain: str
    sequence: int
    hash: str


def verify(entries: Iterable[tuple[Entry, Any]], anchors: Iterable[Anchor] = ()) -> Verdict:
    """Check every chain in `entries`: (entry, where it was found, e.g. its offset), each chain
    in its own order (chains may be interleaved, or in different partitions). Any change,
    removal, insertion or reordering shows; removing the newest entries of a writer's newest
    chain shows only against `anchors`, the heads recorded elsewhere: the trail must hold each
    anchored entry."""
    chains: dict[str, list[tuple[Entry, Any]]] = {}
    for entry, where in entries:
        chains.setdefault(entry.chain, []).append((entry, where))
    count = sum(map(len, chains.values()))
    heads = {name: found[-1][0].hash for name, found in chains.items()}
    for name, found in chains.items():
        previous: str | None = None
        for entry, where in found:
            problem = _problem(entry, previous, heads, name)
            if problem is not None:
                return Verdict(False, count, len(chains), (name, entry.sequence, where), problem)
            previous = entry.hash
    for anchor in anchors:
        held = {e.sequence: e.hash for e, _ in chains.get(anchor.chain, ())}
        if held.get(anchor.sequence) != anchor.hash:
            problem = (
                f"the trail ends at entry {max(held)}: its newest entries were removed"
                if held and anchor.sequence > max(held)
                else "the anchored entry is not in the trail as it was written"
            )
            return Verdict(False, count, len(chains), (anchor.chain, anchor.sequence, "anchor"),
                           problem)  # fmt: skip
    return Verdict(True, count, len(chains))


def _problem(
    entry: Entry, previous: str | None, heads: Mapping[str, str], chain: str
) -> str | None:
    if previous is None:  # the chain's first entry
        if entry.sequence != 0:
            return f"the chain starts at entry {entry.sequence}: earlier entries were removed"
        others = {hash_ for name, hash_ in heads.items() if name != chain}
        if entry.previous != GENESIS and entry.previous not in others:
            return "it continues a chain whose last entries are not in the trail"
    elif entry.previous != previous:
        return "its previous hash is not its predecessor's: entries were removed or moved"
    if entry_hash(entry.previous, entry.chain, entry.sequence, entry.request) != entry.hash:
        return "its content does not match its hash: it was changed"
    return None


def to_record(entry: Entry) -> dict[str, Any]:
    """The hs.edge.AuditEvent record of an entry."""
    r = entry.request
    return {
        "chain": entry.chain, "sequence": entry.sequence, "previous": entry.previous,
        "hash": entry.hash, "at": r.at, "client_id": r.client_id, "subject": r.subject,
        "role": r.role, "operation": r.operation, "person_id": r.person_id,
        "outcome": r.outcome.value, "status": r.status, "reason": r.reason,
    }  # fmt: skip


def from_record(record: Mapping[str, Any]) -> Entry:
    request = Request(
        record["at"], record["client_id"], record["subject"], record["role"],
        record["operation"], record["person_id"], Outcome(record["outcome"]), record["status"],
        record["reason"],
    )  # fmt: skip
    return Entry(record["chain"], record["sequence"], record["previous"], request, record["hash"])
