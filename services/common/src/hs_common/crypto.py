"""SM4-GCM sealing of sensitive fields, SM3 pseudonyms, and the keyring that holds the keys.

Keys are referenced by id so they can rotate: a sealed value names the key that sealed it,
new values are sealed with the active key of their sensitivity class, and old keys stay in
the keyring for reading. A service holds only the classes it needs: public health holds
`health` but not `identifying`, so it counts diagnoses without ever seeing a name.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from hmac import compare_digest as hmac_compare
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hs_common.errors import KeyringError, SealedFieldError
from hs_common.schemas import SENSITIVITIES, Sensitivity

KEY_BYTES = 16  # SM4 is a 128-bit block cipher with a 128-bit key
NONCE_BYTES = 12
TAG_BYTES = 16


@dataclass(frozen=True)
class Sealed:
    """A value this process may not read: what a consumer without the key gets."""

    key_id: str
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"Sealed(key_id={self.key_id!r}, {len(self.ciphertext)} bytes)"


@dataclass(frozen=True)
class DataKey:
    key_id: str
    sensitivity: Sensitivity
    secret: bytes
    # A value sealed under a binding key is bound to its record (the associated data names the
    # record), so it cannot be moved to another record; keys made before this are not.
    binds_record: bool = False

    def __repr__(self) -> str:
        return f"DataKey({self.key_id!r}, {self.sensitivity!r}, <secret>)"

    @cached_property
    def cipher(self) -> algorithms.SM4:
        return algorithms.SM4(self.secret)


# The writers whose control and identity events carry a MAC (hs_common.control).
MAC_WRITERS = ("edge", "empi")


@dataclass(frozen=True)
class MacKey:
    """An HMAC-SM3 key a writer authenticates its events with; consumers hold it to check."""

    key_id: str
    writer: str
    secret: bytes

    def __repr__(self) -> str:
        return f"MacKey({self.key_id!r}, {self.writer!r}, <secret>)"


@dataclass(frozen=True)
class Keyring:
    """The keys one process holds. Build it with `Keyring.from_file` or `Keyring.generate`."""

    keys: Mapping[str, DataKey]
    active: Mapping[Sensitivity, str]
    pseudonym_secret: bytes | None = None
    # 2: a secret derived per purpose, parts length-prefixed; 1: keyrings made before (one
    # secret, parts joined with U+001F), kept so that their keys stay what they were
    pseudonym_scheme: int = 1
    mac_keys: Mapping[str, MacKey] = field(default_factory=dict)
    active_mac: Mapping[str, str] = field(default_factory=dict)  # writer -> key id

    def __post_init__(self) -> None:
        for sensitivity, key_id in self.active.items():
            key = self.keys.get(key_id)
            if key is None or key.sensitivity != sensitivity:
                raise KeyringError(
                    f"active {sensitivity} key {key_id!r} is not a {sensitivity} key in the keyring"
                )
        for writer, key_id in self.active_mac.items():
            mac_key = self.mac_keys.get(key_id)
            if mac_key is None or mac_key.writer != writer:
                raise KeyringError(f"active MAC key {key_id!r} of {writer!r} is not in the keyring")

    def __repr__(self) -> str:
        return f"Keyring(keys={sorted(self.keys)}, active={dict(self.active)})"

    @classmethod
    def empty(cls) -> Keyring:
        return cls(keys={}, active={})

    @classmethod
    def generate(cls, sensitivities: tuple[Sensitivity, ...] = SENSITIVITIES) -> Keyring:
        keys = {}
        for sensitivity in sensitivities:
            key_id = f"{sensitivity}-{secrets.token_hex(4)}"
            keys[key_id] = DataKey(key_id, sensitivity, os.urandom(KEY_BYTES), binds_record=True)
        active = {k.sensitivity: k.key_id for k in keys.values()}
        mac_keys = {
            f"mac-{writer}-{secrets.token_hex(4)}": os.urandom(32) for writer in MAC_WRITERS
        }
        macs = {i: MacKey(i, i.split("-")[1], secret) for i, secret in mac_keys.items()}
        return cls(
            keys=keys,
            active=active,
            pseudonym_secret=os.urandom(32),
            pseudonym_scheme=2,
            mac_keys=macs,
            active_mac={k.writer: k.key_id for k in macs.values()},
        )

    def rotated(self) -> Keyring:
        """New active data and MAC keys for every class and writer this keyring has (binding
        their records); the old keys stay, to read what they sealed until it is re-sealed."""
        fresh = Keyring.generate(tuple(self.active))
        return replace(
            self,
            keys={**self.keys, **fresh.keys},
            active=fresh.active,
            mac_keys={**self.mac_keys, **fresh.mac_keys},
            active_mac={w: fresh.active_mac[w] for w in self.active_mac},
        )

    def restricted_to(self, *sensitivities: Sensitivity) -> Keyring:
        """The same keyring holding only these classes (what a less trusted consumer gets)."""
        keys = {i: k for i, k in self.keys.items() if k.sensitivity in sensitivities}
        active = {s: i for s, i in self.active.items() if s in sensitivities}
        return replace(self, keys=keys, active=active)

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        """Read a keyring JSON file: {"keys": {id: {"sensitivity", "hex"}}, "active": {...},
        "pseudonym_hex": "..."}."""
        try:
            document = json.loads(path.read_text())
            keys = {
                key_id: DataKey(
                    key_id,
                    _sensitivity(entry["sensitivity"], key_id),
                    _secret(entry["hex"], key_id),
                    binds_record=entry.get("binds") == "record",
                )
                for key_id, entry in document["keys"].items()
            }
            active = {
                _sensitivity(s, "active"): str(i) for s, i in document.get("active", {}).items()
            }
            pseudonym = document.get("pseudonym_hex")
            scheme = int(document.get("pseudonym_scheme", 1))
            mac_keys = {
                key_id: MacKey(key_id, str(entry["writer"]), bytes.fromhex(entry["hex"]))
                for key_id, entry in document.get("mac_keys", {}).items()
            }
            active_mac = {str(w): str(i) for w, i in document.get("active_mac", {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyringError(
                f"keyring file {path} is unreadable or malformed ({type(exc).__name__}: {exc})"
            ) from None
        return cls(
            keys=keys,
            active=active,
            pseudonym_secret=bytes.fromhex(pseudonym) if pseudonym else None,
            pseudonym_scheme=scheme,
            mac_keys=mac_keys,
            active_mac=active_mac,
        )

    def to_file(self, path: Path) -> None:
        document = {
            "keys": {
                i: {"sensitivity": k.sensitivity, "hex": k.secret.hex()}
                | ({"binds": "record"} if k.binds_record else {})
                for i, k in self.keys.items()
            },
            "active": dict(self.active),
            "pseudonym_hex": self.pseudonym_secret.hex() if self.pseudonym_secret else None,
            "pseudonym_scheme": self.pseudonym_scheme,
            "mac_keys": {
                i: {"writer": k.writer, "hex": k.secret.hex()} for i, k in self.mac_keys.items()
            },
            "active_mac": dict(self.active_mac),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(document, out, indent=2)

    def can_seal(self, sensitivity: Sensitivity) -> bool:
        return sensitivity in self.active

    def seal(
        self, sensitivity: Sensitivity, aad_name: str, plaintext: bytes, record: str = ""
    ) -> Sealed:
        """`plaintext` sealed for field `aad_name` of `record` (its id: see Codec)."""
        key_id = self.active.get(sensitivity)
        if key_id is None:
            raise KeyringError(
                f"no active {sensitivity} key: this process may not write {aad_name}"
            )
        nonce = os.urandom(NONCE_BYTES)
        encryptor = Cipher(self.keys[key_id].cipher, modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(_aad(self.keys[key_id], aad_name, record))
        body = encryptor.update(plaintext) + encryptor.finalize()
        return Sealed(key_id, nonce, body + encryptor.tag)

    def open(self, aad_name: str, sealed: Sealed, record: str = "") -> bytes | None:
        """The plaintext, or None when this keyring lacks the key. Raises SealedFieldError when
        the value was changed, or sealed for another field or another record."""
        key = self.keys.get(sealed.key_id)
        if key is None:
            return None
        if len(sealed.nonce) != NONCE_BYTES or len(sealed.ciphertext) < TAG_BYTES:
            raise SealedFieldError(f"{aad_name}: sealed value has a malformed nonce or tag")
        body, tag = sealed.ciphertext[:-TAG_BYTES], sealed.ciphertext[-TAG_BYTES:]
        decryptor = Cipher(key.cipher, modes.GCM(sealed.nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(_aad(key, aad_name, record))
        try:
            return decryptor.update(body) + decryptor.finalize()
        except InvalidTag:
            raise SealedFieldError(
                f"{aad_name}: sealed value failed authentication under key {sealed.key_id!r} "
                "(changed, or moved from another field or record)"
            ) from None

    def mac(self, writer: str, data: bytes) -> tuple[str, bytes]:
        """(key id, HMAC-SM3 of `data`) under `writer`'s active MAC key."""
        key_id = self.active_mac.get(writer)
        if key_id is None:
            raise KeyringError(f"no active MAC key of {writer!r}: this process may not write as it")
        return key_id, _hmac_sm3(self.mac_keys[key_id].secret, data)

    def mac_verifies(self, writer: str, key_id: str, data: bytes, mac: bytes) -> bool:
        """Whether `mac` is `writer`'s MAC of `data` under key `key_id` (one of the writer's)."""
        key = self.mac_keys.get(key_id)
        if key is None or key.writer != writer:
            return False
        return hmac_compare(_hmac_sm3(key.secret, data), mac)

    def pseudonym(self, *parts: str, purpose: str = "record") -> str:
        """A stable keyed pseudonym (HMAC-SM3) of identifying parts, for Kafka keys and joins.

        Equal inputs give equal pseudonyms, so per-patient order is kept by partitioning on it,
        while the key on the wire reveals nothing without the pseudonym secret. Each purpose
        (record keys, person ids, code keys, the EMPI's frequency tables) has its own secret
        derived from the keyring's, so a pseudonym of one kind says nothing about another.
        """
        if self.pseudonym_secret is None:
            raise KeyringError("no pseudonym secret in the keyring")
        if self.pseudonym_scheme == 1:  # the first keyrings' keys, unchanged
            legacy = parts if purpose == "record" else (purpose, *parts)
            return _hmac_sm3(self.pseudonym_secret, "\x1f".join(legacy).encode())[:16].hex()
        secret = _hmac_sm3(self.pseudonym_secret, b"hs-pseudonym-purpose\x1f" + purpose.encode())
        return _hmac_sm3(secret, length_prefixed(*parts))[:16].hex()


def length_prefixed(*parts: str) -> bytes:
    """Parts joined so that no two lists of parts give the same bytes."""
    encoded = [part.encode() for part in parts]
    return b"".join(len(part).to_bytes(4, "big") + part for part in encoded)


def _hmac_sm3(secret: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(secret, hashes.SM3())
    mac.update(data)
    return mac.finalize()


def sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def _aad(key: DataKey, aad_name: str, record: str) -> bytes:
    """What a sealed value is bound to: its field and key, and, under a binding key, its
    record; the parts length-prefixed so that no two bindings read alike."""
    if not key.binds_record:
        return f"{aad_name}|{key.key_id}".encode()
    return length_prefixed("hs-aad-2", aad_name, key.key_id, record)


def _sensitivity(value: object, where: str) -> Sensitivity:
    for s in SENSITIVITIES:
        if value == s:
            return s
    raise KeyringError(f"{where}: sensitivity must be one of {SENSITIVITIES}")


def _secret(hex_value: object, key_id: str) -> bytes:
    secret = bytes.fromhex(str(hex_value))
    if len(secret) != KEY_BYTES:
        raise KeyringError(
            f"key {key_id!r}: an SM4 key is {KEY_BYTES} bytes ({KEY_BYTES * 2} hex digits)"
        )
    return secret
