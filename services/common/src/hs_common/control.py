"""Control and identity events carry proof of who wrote them.

The broker's ACLs already let only the edge write review decisions and acknowledgements, and
only the EMPI write person links and golden records. A consumer checks again before it applies
one: the event's exact value bytes carry an HMAC-SM3 under a key of the writer, in the `hs-mac`
header (`<key id>:<hex>`), so a principal that may write the topic but lacks the writer's key (or a
record altered on the way) is refused, not applied.
"""

from __future__ import annotations

from collections.abc import Sequence

from hs_common import topics
from hs_common.crypto import Keyring
from hs_common.errors import RejectedInput

MAC_HEADER = "hs-mac"
_DOMAIN = b"hs-control\x1f"  # MACs of this kind are never valid for anything else

WRITER_OF: dict[str, str] = {
    topics.REVIEW_DECISION.value_schema: "edge",
    topics.VITALS_ACK.value_schema: "edge",
    topics.EDGE_CLIENT.value_schema: "edge",
    topics.PERSON_LINK.value_schema: "empi",
    topics.PERSON.value_schema: "empi",
}

Headers = Sequence[tuple[str, bytes | str | None]]


class ForgedEvent(RejectedInput):
    """A control or identity event without a valid MAC of the writer allowed to write it."""

    reason_code = "control.unauthenticated"


def mac_headers(keyring: Keyring, schema: str, value: bytes) -> list[tuple[str, str | bytes]]:
    """The header a writer adds to an event of `schema` (none for other schemas)."""
    writer = WRITER_OF.get(schema)
    if writer is None:
        return []
    key_id, mac = keyring.mac(writer, _DOMAIN + value)
    return [(MAC_HEADER, f"{key_id}:{mac.hex()}".encode())]


def check(keyring: Keyring, schema: str, value: bytes, headers: Headers | None) -> None:
    """Raise ForgedEvent unless an event of `schema` carries its writer's valid MAC."""
    writer = WRITER_OF.get(schema)
    if writer is None:
        return
    proofs = [v for k, v in headers or () if k == MAC_HEADER and v is not None]
    if len(proofs) != 1:
        raise ForgedEvent(f"{schema} without the {writer}'s MAC (one {MAC_HEADER} header)")
    proof = proofs[0].decode(errors="replace") if isinstance(proofs[0], bytes) else proofs[0]
    key_id, _, mac_hex = proof.partition(":")
    try:
        mac = bytes.fromhex(mac_hex)
    except ValueError:
        raise ForgedEvent(f"{schema}: {MAC_HEADER} is not '<key id>:<hex>'") from None
    if not keyring.mac_verifies(writer, key_id, _DOMAIN + value, mac):
        raise ForgedEvent(f"{schema}: the MAC does not verify under the {writer}'s key {key_id!r}")
