from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, hmac

from hs_common.crypto import DataKey, Keyring, sm3
from hs_common.errors import KeyringError


def test_keyring_file_round_trip_is_private(tmp_path: Path) -> None:
    keyring = Keyring.generate()
    path = tmp_path / "keys" / "keyring.json"
    keyring.to_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Keyring.from_file(path)
    assert loaded.keys == keyring.keys
    assert loaded.active == keyring.active
    assert loaded.pseudonym_secret == keyring.pseudonym_secret


def test_secrets_never_appear_in_repr() -> None:
    keyring = Keyring.generate()
    text = repr(keyring) + "".join(repr(k) for k in keyring.keys.values())
    for key in keyring.keys.values():
        assert key.secret.hex() not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "unreadable or malformed"),
        ('{"keys": {"k1": {"sensitivity": "health", "hex": "abcd"}}}', "an SM4 key is 16 bytes"),
        ('{"keys": {"k1": {"sensitivity": "secret", "hex": "00"}}}', "sensitivity must be one of"),
        ('{"keys": {}, "active": {"health": "missing"}}', "active health key 'missing' is not"),
    ],
)
def test_a_malformed_keyring_file_says_what_is_wrong(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "keyring.json"
    path.write_text(content)
    with pytest.raises(KeyringError, match=message):
        Keyring.from_file(path)


def test_an_active_key_of_the_wrong_class_is_refused() -> None:
    key = DataKey("k1", "health", bytes(16))
    with pytest.raises(
        KeyringError, match=r"active identifying key 'k1' is not an? identifying key"
    ):
        Keyring(keys={"k1": key}, active={"identifying": "k1"})


def test_pseudonyms_are_stable_keyed_and_opaque() -> None:
    first, second = Keyring.generate(), Keyring.generate()
    assert first.pseudonym("H330102", "MRN1") == first.pseudonym("H330102", "MRN1")
    assert first.pseudonym("H330102", "MRN1") != first.pseudonym("H330102", "MRN2")
    assert first.pseudonym("H330102", "MRN1") != second.pseudonym("H330102", "MRN1")
    assert first.pseudonym("H3301", "02MRN1") != first.pseudonym("H330102", "MRN1")
    assert "MRN1" not in first.pseudonym("H330102", "MRN1")


def test_sm3_matches_the_standard_s_example() -> None:
    # GB/T 32905-2016, example 1: SM3("abc")
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_sealing_twice_uses_fresh_nonces() -> None:
    keyring = Keyring.generate()
    first = keyring.seal("health", "t.R.f", b"same")
    second = keyring.seal("health", "t.R.f", b"same")
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext
    assert keyring.open("t.R.f", first) == keyring.open("t.R.f", second) == b"same"


def test_pseudonyms_differ_by_purpose_and_parts_are_joined_unambiguously() -> None:
    keyring = Keyring.generate()
    assert keyring.pseudonym("H1", "A") == keyring.pseudonym("H1", "A")
    assert keyring.pseudonym("H1", "A") != keyring.pseudonym("H1", "A", purpose="person")
    assert keyring.pseudonym("H1\x1fA") != keyring.pseudonym("H1", "A")  # no separator to forge
    assert keyring.pseudonym("H1", "AB") != keyring.pseudonym("H1A", "B")


def test_a_keyring_from_before_keeps_its_pseudonyms(tmp_path: Path) -> None:
    keyring = Keyring.generate()
    legacy = dataclasses.replace(keyring, pseudonym_scheme=1)
    secret = keyring.pseudonym_secret or b""
    expected = hmac.HMAC(secret, hashes.SM3())
    expected.update(b"person\x1fH1:A")
    assert legacy.pseudonym("H1:A", purpose="person") == expected.finalize()[:16].hex()
    path = tmp_path / "keyring.json"
    legacy.to_file(path)
    assert Keyring.from_file(path).pseudonym("H1", "A") == legacy.pseudonym("H1", "A")


def test_rotation_adds_active_keys_and_keeps_the_old_ones_for_reading() -> None:
    old = Keyring.generate()
    sealed = old.seal("identifying", "hs.x.F.f", b"secret", "record-1")
    rotated = old.rotated()
    assert set(rotated.active.values()).isdisjoint(old.active.values())
    assert set(rotated.active_mac.values()).isdisjoint(old.active_mac.values())
    assert set(old.keys) < set(rotated.keys) and set(old.mac_keys) < set(rotated.mac_keys)
    assert rotated.open("hs.x.F.f", sealed, "record-1") == b"secret"
    assert (
        rotated.seal("identifying", "hs.x.F.f", b"s", "r").key_id == rotated.active["identifying"]
    )
