"""Bearer tokens: accepted only when signed, issued and addressed right and in date; each
refusal named. Scopes and roles decide what a caller may see."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey

from hs_edge.auth import Caller, Refused, Role, Scope, TokenValidator

ISSUER, AUDIENCE = "https://auth.hs.test", "hs-edge"
NOW = 1_800_000_000
KEY = ECKey.generate_key("P-256", parameters={"kid": "edge-1"})
OTHER = ECKey.generate_key("P-256", parameters={"kid": "edge-1"})


def token(key: Any = KEY, alg: str = "ES256", **overrides: object) -> str:
    claims: dict[str, object] = {
        "iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 300, "iat": NOW, "sub": "nurse-7",
        "client_id": "ward-app", "role": "clinician",
        "scope": "user/Observation.read user/Patient.read",
    } | overrides  # fmt: skip
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": "edge-1"}, claims, key)


VALIDATOR = TokenValidator(KeySet([KEY]), ISSUER, AUDIENCE, now=lambda: NOW)


def refusal(header: str | None) -> tuple[str, int]:
    with pytest.raises(Refused) as refused:
        VALIDATOR.caller(header)
    return refused.value.code, refused.value.status


def test_a_good_token_names_the_caller() -> None:
    caller = VALIDATOR.caller(f"Bearer {token()}")
    assert caller.client_id == "ward-app" and caller.subject == "nurse-7"
    assert caller.role is Role.CLINICIAN
    caller.require("Observation")
    caller.require_person("P-anyone")  # a clinician is not limited to one person


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "token.missing"),
        ("", "token.missing"),
        ("Basic dXNlcjpwYXNz", "token.malformed"),
        ("Bearer ", "token.malformed"),
        ("Bearer not.a.jwt", "token.malformed"),
        (f"Bearer {token(exp=NOW - 31)}", "token.expired"),
        (f"Bearer {token(aud='someone-else')}", "token.aud"),
        (f"Bearer {token(iss='https://evil.test')}", "token.iss"),
        (f"Bearer {token(exp=None)}", "token.exp"),
        (f"Bearer {token(key=OTHER)}", "token.signature"),
        (f"Bearer {token(iat=None)}", "token.iat"),
        (f"Bearer {token(exp=NOW + 86_400)}", "token.lifetime"),  # a day: too long to live
        (f"Bearer {token(key=OctKey.generate_key(256), alg='HS256')}", "token.malformed"),
    ],
)
def test_bad_tokens_are_refused_with_a_named_reason(header: str | None, code: str) -> None:
    assert refusal(header) == (code, 401)


def test_an_unsigned_token_is_refused() -> None:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 300, "role": "administrator",
              "client_id": "x", "scope": "system/*.*"}  # fmt: skip
    assert refusal(f"Bearer {part({'alg': 'none'})}.{part(claims)}.")[1] == 401


def test_the_leeway_covers_small_clock_skew_only() -> None:
    assert VALIDATOR.caller(f"Bearer {token(exp=NOW - 20)}").client_id == "ward-app"
    assert refusal(f"Bearer {token(nbf=NOW + 120)}")[1] == 401


def test_roles_and_person_binding() -> None:
    assert refusal(f"Bearer {token(role='superuser')}") == ("role.unknown", 403)
    assert refusal(f"Bearer {token(role='patient')}") == ("patient.no_person", 403)
    patient = VALIDATOR.caller(
        f"Bearer {token(role='patient', person_id='P-1', scope='patient/*.read')}"
    )
    patient.require_person("P-1")
    with pytest.raises(Refused) as other:
        patient.require_person("P-2")
    assert (other.value.code, other.value.status) == ("patient.other_person", 403)


def test_scopes_in_smart_form() -> None:
    assert Scope.parse("user/Observation.read") == Scope("user", "Observation", "read")
    assert Scope.parse("patient/*.read") == Scope("patient", "*", "read")
    assert Scope.parse("admin/everything") is None
    assert Scope.parse("user/Observation.delete") is None
    caller = Caller("c", None, Role.RESEARCHER, (Scope("user", "Observation", "read"),))
    caller.require("Observation")
    with pytest.raises(Refused) as missing:
        caller.require("Observation", "write")
    assert missing.value.code == "scope.missing"
    with pytest.raises(Refused):
        caller.require("Patient")
    with pytest.raises(Refused) as role:
        caller.require_role(Role.CLINICIAN, Role.ADMINISTRATOR)
    assert role.value.code == "role.forbidden"


def test_refusals_never_echo_the_token() -> None:
    secret = token(aud="someone-else")
    with pytest.raises(Refused) as refused:
        VALIDATOR.caller(f"Bearer {secret}")
    assert secret not in str(refused.value) and "nurse-7" not in str(refused.value)


def test_a_remembered_token_still_expires() -> None:
    clock = [NOW]
    validator = TokenValidator(KeySet([KEY]), ISSUER, AUDIENCE, now=lambda: clock[0])
    bearer = f"Bearer {token(exp=NOW + 60)}"
    first = validator.caller(bearer)
    assert validator.caller(bearer) is first  # remembered: not verified again
    clock[0] = NOW + 60 + 31  # past the expiry and the leeway
    with pytest.raises(Refused) as refused:
        validator.caller(bearer)
    assert refused.value.code == "token.expired"


def test_only_so_many_tokens_are_remembered() -> None:
    validator = TokenValidator(KeySet([KEY]), ISSUER, AUDIENCE, now=lambda: NOW, remembered=2)
    bearers = [f"Bearer {token(sub=f'nurse-{n}')}" for n in range(3)]
    callers = [validator.caller(b) for b in bearers]
    assert validator.caller(bearers[2]) is callers[2]
    assert validator.caller(bearers[0]) is not callers[0]  # forgotten, verified again
    assert validator.caller(bearers[0]) == callers[0]


def test_scopes_count_only_in_their_role_s_smart_context() -> None:
    nurse = VALIDATOR.caller(f"Bearer {token(scope='patient/*.read user/Patient.read')}")
    assert [(s.context, s.resource) for s in nurse.scopes] == [("user", "Patient")]
    patient = VALIDATOR.caller(
        f"Bearer {token(role='patient', person_id='P1', scope='user/*.read patient/*.read')}"
    )
    assert [s.context for s in patient.scopes] == ["patient"]


def test_a_removed_signing_key_stops_its_tokens_even_those_already_remembered() -> None:
    validator = TokenValidator(KeySet([KEY]), ISSUER, AUDIENCE, now=lambda: NOW)
    remembered = f"Bearer {token()}"
    assert validator.caller(remembered).client_id == "ward-app"  # checked once, remembered
    newer = ECKey.generate_key("P-256", parameters={"kid": "edge-2"})
    validator.replace_keys(KeySet([newer]))  # the identity provider rotated edge-1 out
    with pytest.raises(Refused):
        validator.caller(remembered)
    signed_by_newer = jwt.encode({"alg": "ES256", "kid": "edge-2"},
                                 jwt.decode(remembered.split()[1], KEY).claims, newer)  # fmt: skip
    assert validator.caller(f"Bearer {signed_by_newer}").client_id == "ward-app"
