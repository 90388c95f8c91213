"""Control and identity events carry their writer's MAC; anything else is refused."""

from __future__ import annotations

import pytest

from hs_common import control
from hs_common.crypto import Keyring

ACK = "hs.vitals.Acknowledgement"
KEYRING = Keyring.generate()


def test_a_writer_s_mac_verifies_and_a_changed_byte_does_not() -> None:
    value = b"\xc3\x01" + bytes(8) + b"acknowledged alert A1"
    headers = control.mac_headers(KEYRING, ACK, value)
    control.check(KEYRING, ACK, value, headers)
    with pytest.raises(control.ForgedEvent, match="does not verify"):
        control.check(KEYRING, ACK, value[:-1] + b"2", headers)


@pytest.mark.parametrize(
    "headers",
    [None, [], [("hs-mac", b"no-colon")], [("hs-mac", b"k:zz")], [("other", b"x")]],
)
def test_an_event_without_a_valid_mac_header_is_refused(
    headers: list[tuple[str, bytes]] | None,
) -> None:
    with pytest.raises(control.ForgedEvent):
        control.check(KEYRING, ACK, b"value", headers)


def test_the_mac_of_another_writer_or_another_keyring_is_refused() -> None:
    value = b"golden record"
    empi_mac = control.mac_headers(KEYRING, "hs.identity.Person", value)
    with pytest.raises(control.ForgedEvent):  # the EMPI's key does not vouch for an ack
        control.check(KEYRING, ACK, value, empi_mac)
    with pytest.raises(control.ForgedEvent):  # a keyring of the attacker's own
        control.check(KEYRING, ACK, value, control.mac_headers(Keyring.generate(), ACK, value))


def test_other_events_need_no_mac() -> None:
    assert control.mac_headers(KEYRING, "hs.clinical.Observation", b"x") == []
    control.check(KEYRING, "hs.clinical.Observation", b"x", None)
