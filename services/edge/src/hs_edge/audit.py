"""The tamper-evident audit trail: every request, allowed or denied, is an audit entry, and
entries are chained with a keyed hash. Pure.

Each edge process writes its own chain, so replicas need no coordination:
- a chain is named by its writer and start time;
- its entries are numbered from 0;
- each entry's hash is HMAC-SM3 under one of the edge's audit keys (the registry of writers:
  the keyring's MAC keys of writer `edge`, named in the entry by `key_id`) over the previous
  entry's hash ‖ the entry's canonical bytes. Without the key no one can write an entry that
  verifies, so a chain forged from scratch, or rewritten after a change, shows;
- the first entry's "previous" is the head of the writer's last chain (when the writer found
  one at start), so removing a whole chain shows too.

Verification walks every chain in log order. The first entry whose hash does not match its
content under its writer's key, whose previous hash is not its predecessor's, or whose number
skips, is named.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from hs_common.crypto import Keyring

GENESIS = "0" * 64
WRITER = "edge"  # the MAC keys of this writer key the trail


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
    hash: str  # hex HMAC-SM3(key, previous ‖ canonical(chain, sequence, request))
    key_id: str | None  # the edge's MAC key that keyed it (None: written before keys; refused)


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


def covered(previous: str, chain: str, sequence: int, request: Request) -> bytes:
    return bytes.fromhex(previous) + canonical(chain, sequence, request)


class Chain:
    """One writer's chain: each request appended becomes the next entry, keyed with the
    writer's active MAC key."""

    def __init__(self, name: str, keyring: Keyring, previous_head: str = GENESIS) -> None:
        self.name, self.keyring = name, keyring
        self.head = previous_head
        self.sequence = 0

    def append(self, request: Request) -> Entry:
        data = covered(self.head, self.name, self.sequence, request)
        key_id, mac = self.keyring.mac(WRITER, data)
        entry = Entry(self.name, self.sequence, self.head, request, mac.hex(), key_id)
        self.head, self.sequence = entry.hash, self.sequence + 1
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


def verify(
    entries: Iterable[tuple[Entry, Any]], keyring: Keyring, anchors: Iterable[Anchor] = ()
) -> Verdict:
    """Check every chain in `entries`: (entry, where it was found, e.g. its offset), each chain
    in its own order (chains may be interleaved, or in different partitions), against the
    edge's MAC keys in `keyring`. Any change, removal, insertion or reordering shows, and so
    does an entry not keyed by the edge; removing the newest entries of a writer's newest
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
            problem = _problem(entry, previous, heads, name, keyring)
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
    entry: Entry, previous: str | None, heads: Mapping[str, str], chain: str, keyring: Keyring
) -> str | None:
    if previous is None:  # the chain's first entry
        if entry.sequence != 0:
            return f"the chain starts at entry {entry.sequence}: earlier entries were removed"
        others = {hash_ for name, hash_ in heads.items() if name != chain}
        if entry.previous != GENESIS and entry.previous not in others:
            return "it continues a chain whose last entries are not in the trail"
    elif entry.previous != previous:
        return "its previous hash is not its predecessor's: entries were removed or moved"
    if entry.key_id is None:
        return "it is not keyed: anyone could have written it"
    if entry.key_id not in keyring.mac_keys or keyring.mac_keys[entry.key_id].writer != WRITER:
        return f"its key {entry.key_id!r} is not one of the edge's: it was written by another"
    data = covered(entry.previous, entry.chain, entry.sequence, entry.request)
    try:
        mac = bytes.fromhex(entry.hash)
    except ValueError:
        return "its hash is not hexadecimal"
    if not keyring.mac_verifies(WRITER, entry.key_id, data, mac):
        return "its content does not match its keyed hash: it was changed or forged"
    return None


def to_record(entry: Entry) -> dict[str, Any]:
    """The hs.edge.AuditEvent record of an entry."""
    r = entry.request
    return {
        "chain": entry.chain, "sequence": entry.sequence, "previous": entry.previous,
        "hash": entry.hash, "key_id": entry.key_id, "at": r.at, "client_id": r.client_id,
        "subject": r.subject,
        "role": r.role, "operation": r.operation, "person_id": r.person_id,
        "outcome": r.outcome.value, "status": r.status, "reason": r.reason,
    }  # fmt: skip


def from_record(record: Mapping[str, Any]) -> Entry:
    request = Request(
        record["at"], record["client_id"], record["subject"], record["role"],
        record["operation"], record["person_id"], Outcome(record["outcome"]), record["status"],
        record["reason"],
    )  # fmt: skip
    return Entry(
        record["chain"], record["sequence"], record["previous"], request, record["hash"],
        record["key_id"],
    )  # fmt: skip
