"""The open platform's clients: registration checks, rotation with a grace period, revocation,
the tokens they earn (a sandbox client's for the sandbox audience only), and the read model of
clients and usage projected from the client topic and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from joserfc.jwk import ECKey, KeySet

from hs_common import topics
from hs_common.codec import Codec, Record
from hs_common.crypto import Keyring
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.testing import writer_headers
from hs_edge import audit, clients
from hs_edge.auth import Refused, Role, TokenIssuer, TokenValidator
from hs_edge.projector import Consumed, Projector
from hs_edge.store import Store

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
CODEC = Codec(SchemaCatalogue.load(default_schema_root()), Keyring.generate())
CLINIC = clients.Registration("城东社区 clinic app", Role.CLINICIAN, "user/Patient.read")


def refused(call: object, *args: object) -> str:
    with pytest.raises(Refused) as error:
        call(*args)  # type: ignore[operator]
    return error.value.code


def test_a_registration_is_checked_and_its_secret_never_kept() -> None:
    client, secret = clients.register(CLINIC, "admin-console", T0)
    assert client["client_id"].startswith("c-") and client["version"] == 1
    assert secret not in str(client) and client["secret_sha256"] == clients.secret_hash(secret)
    assert "secret" not in str(clients.view(client)).replace("previous_secret_valid_until", "")
    for wrong, code in [
        (clients.Registration("x", Role.CLINICIAN, "patient/*.read"), "client.scope"),
        (clients.Registration("x", Role.CLINICIAN, "Observation.read"), "client.scope"),
        (clients.Registration("x", Role.PATIENT, "patient/*.read"), "client.person"),
        (clients.Registration("x", Role.CLINICIAN, "user/*.read", "P1"), "client.person"),
        (clients.Registration(" ", Role.CLINICIAN, "user/*.read"), "client.name"),
        (clients.Registration("x", Role.CLINICIAN, "user/*.read", client_id="A B"), "client.id"),
    ]:  # fmt: skip
        assert refused(clients.register, wrong, "admin", T0) == code


def test_a_rotation_keeps_the_old_secret_for_its_grace_only() -> None:
    client, first = clients.register(CLINIC, "admin", T0)
    client, second = clients.rotated(client, timedelta(hours=1), "admin", T0)
    assert client["version"] == 2
    assert clients.accepts(client, second, T0) and clients.accepts(client, first, T0)
    later = T0 + timedelta(hours=1, seconds=1)
    assert clients.accepts(client, second, later) and not clients.accepts(client, first, later)
    assert not clients.accepts(client, "a guess", T0)
    assert refused(clients.rotated, client, timedelta(days=8), "admin", T0) == "client.grace"


def test_a_revoked_client_earns_nothing_and_stays_revoked() -> None:
    client, secret = clients.register(CLINIC, "admin", T0)
    client = clients.revoked(client, "admin", T0)
    assert not clients.accepts(client, secret, T0)
    assert refused(clients.grant, client, secret, None, "hs-edge", T0) == "client.invalid"
    assert refused(clients.rotated, client, timedelta(0), "admin", T0) == "client.revoked"


def test_a_token_holds_the_scopes_asked_for_within_the_client_s() -> None:
    wide = clients.Registration("app", Role.CLINICIAN, "user/Patient.read user/Observation.read")
    client, secret = clients.register(wide, "admin", T0)
    assert clients.grant(client, secret, None, "hs-edge", T0).scope == wide.scope
    narrow = clients.grant(client, secret, "user/Patient.read", "hs-edge", T0)
    assert narrow.scope == "user/Patient.read" and narrow.audience == "hs-edge"
    assert refused(clients.grant, client, secret, "user/*.read", "hs-edge", T0) == "scope.invalid"


def test_only_a_sandbox_edge_accepts_a_sandbox_client_s_token() -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "edge-1"})
    issuer = TokenIssuer(key, "https://edge.test", now=lambda: int(T0.timestamp()))
    sandbox = clients.Registration("try", Role.CLINICIAN, "user/*.read", sandbox=True)
    client, secret = clients.register(sandbox, "admin", T0)
    granted = clients.grant(client, secret, None, "hs-edge", T0)
    token = issuer.token(granted.client_id, granted.role, granted.scope, None, granted.audience)
    bearer = f"Bearer {token['access_token']}"
    now = lambda: int(T0.timestamp())  # noqa: E731
    real = TokenValidator(KeySet([key]), "https://edge.test", "hs-edge", now=now)
    assert refused(real.caller, bearer) == "token.aud"
    demo = TokenValidator(KeySet([key]), "https://edge.test", "hs-edge", now=now,
                          also_audiences=("hs-edge" + clients.SANDBOX_SUFFIX,))  # fmt: skip
    assert demo.caller(bearer).client_id == client["client_id"]


def client_event(client: Record, headers: bool = True) -> Consumed:
    value = CODEC.encode(topics.EDGE_CLIENT.value_schema, client)
    proof = tuple(writer_headers(CODEC, value)) if headers else ()
    return Consumed(topics.EDGE_CLIENT.name, 0, client["version"], client["client_id"], value,
                    proof)  # fmt: skip


def test_clients_are_projected_latest_version_first_and_never_unsigned(tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "edge.db")
    projector = Projector(store, CODEC)
    client, _ = clients.register(CLINIC, "admin", T0)
    revoked = clients.revoked(client, "admin", T0)
    projector.apply([client_event(revoked), client_event(client)])  # out of order
    assert store.revoked_clients() == {client["client_id"]}
    forged, _ = clients.register(
        clients.Registration("evil", Role.ADMINISTRATOR, "system/*.*", client_id="evil"), "x", T0
    )
    projector.apply([client_event(forged, headers=False)])  # no edge MAC: not applied
    assert store.client("evil") is None


def test_usage_is_counted_per_day_from_the_audit_trail(tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "edge.db")
    projector = Projector(store, CODEC)
    chain = audit.Chain("edge-0@1", CODEC.keyring)
    outcomes = [(200, None), (200, "person.found"), (403, "scope.missing"), (429, "rate.limited"),
                (200, None)]  # fmt: skip
    events = []
    for offset, (status, reason) in enumerate(outcomes):
        request = audit.Request(T0, "app-1", None, "clinician", "GET /persons", None,
                                audit.Outcome.ALLOWED if status < 400 else audit.Outcome.DENIED,
                                status, reason)  # fmt: skip
        value = CODEC.encode("hs.edge.AuditEvent", audit.to_record(chain.append(request)))
        events.append(Consumed(topics.EDGE_AUDIT.name, 0, offset, "edge-0@1", value))
    projector.apply(events)
    assert store.usage("app-1") == [("2026-12-02", 4, 2, 1)]  # a person found is no request
