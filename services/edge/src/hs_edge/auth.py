"""Who is calling, and may they: OAuth2 bearer JWTs, SMART-on-FHIR-style scopes, roles. Pure,
apart from the signature check.

- A token is accepted only when signed by a key of the configured key set with an allowed
  algorithm (ES256, RS256; never "none" or a shared secret), issued by the configured issuer
  for this audience, and neither expired nor not yet valid (30 s leeway for clock skew).
- Scopes read `<context>/<resource>.<access>`: context patient, user or system; resource a
  FHIR type or `*`; access read, write or `*` (SMART App Launch 1.0 form).
- The role (claim `role`) decides what a caller sees beyond the scopes: a patient only their
  own person (claim `person_id`), a researcher de-identified data only.

Every refusal names a code (`token.expired`, `scope.missing`, ...) for the answer and the audit
trail, never the token or its contents.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from hs_common.errors import HealthStreamError

ALGORITHMS = ("ES256", "RS256")
LEEWAY_SECONDS = 30


class Role(StrEnum):
    CLINICIAN = "clinician"
    PATIENT = "patient"
    PUBLIC_HEALTH = "public_health"
    RESEARCHER = "researcher"
    ADMINISTRATOR = "administrator"
    SOURCE_STAFF = "source_staff"  # a sending institution's own IT team: its quality reports


class Refused(HealthStreamError):
    """A request refused: `code` names why (for the answer and the audit trail); `caller`,
    when the token was accepted (a rate limit), so the refusal is the client's."""

    def __init__(
        self, code: str, message: str, status: int, headers: dict[str, str] | None = None,
        caller: Caller | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.code, self.status, self.headers, self.caller = code, status, headers, caller


def unauthorized(code: str, message: str) -> Refused:
    return Refused(code, message, 401)


def forbidden(code: str, message: str) -> Refused:
    return Refused(code, message, 403)


@dataclass(frozen=True)
class Scope:
    context: str  # patient | user | system
    resource: str  # a FHIR resource type, or *
    access: str  # read | write | *

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        context, slash, rest = text.partition("/")
        resource, dot, access = rest.rpartition(".")
        if not (slash and dot) or context not in ("patient", "user", "system"):
            return None
        if access not in ("read", "write", "*") or not resource:
            return None
        return cls(context, resource, access)

    def allows(self, resource: str, access: str) -> bool:
        return self.resource in ("*", resource) and self.access in ("*", access)


@dataclass(frozen=True)
class Caller:
    client_id: str
    subject: str | None
    role: Role
    scopes: tuple[Scope, ...]
    person_id: str | None = None  # the patient's own person, for the patient role
    institution: str | None = None  # the source's own institution, for source staff
    expires_at: int | None = None  # the token's exp (Unix seconds): a live stream ends there

    def may(self, resource: str, access: str = "read") -> bool:
        return any(scope.allows(resource, access) for scope in self.scopes)

    def require(self, resource: str, access: str = "read") -> None:
        if not self.may(resource, access):
            raise forbidden("scope.missing", f"the token has no scope for {resource}.{access}")

    def require_role(self, *roles: Role) -> None:
        if self.role not in roles:
            raise forbidden("role.forbidden", f"the {self.role.value} role may not do this")

    def require_institution(self, institution: str) -> None:
        """Source staff may see only their own institution's reports."""
        if self.role is Role.SOURCE_STAFF and institution != self.institution:
            raise forbidden("source.other_institution",
                            "source staff may see only their own institution")  # fmt: skip

    def require_person(self, person_id: str) -> None:
        """A patient may see only their own person."""
        if self.role is Role.PATIENT and person_id != self.person_id:
            raise forbidden("patient.other_person", "a patient may see only their own record")


QUALITY_RESOURCE = "MeasureReport"  # all a source's own staff may read: their data quality
MAX_TOKEN_SECONDS = 3600  # longer-lived tokens are refused: a stolen one stays useful too long


class TokenValidator:
    """Tokens checked once: a valid token's caller is remembered (up to `remembered` tokens)
    until the token expires, so a client's next requests skip the signature check."""

    def __init__(
        self, keys: KeySet, issuer: str, audience: str, now: Callable[[], int] | None = None,
        remembered: int = 10_000, also_audiences: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.keys, self.issuer, self.audience = keys, issuer, audience
        self.audiences = [audience, *also_audiences]  # a sandbox edge also takes the sandbox's
        self.now = now or (lambda: int(time.time()))
        self.remembered = remembered
        self._valid: OrderedDict[str, tuple[Caller, int, str]] = OrderedDict()  # ..., kid

    def caller(self, authorization: str | None) -> Caller:
        """The caller an `Authorization` header speaks for, or Refused (401)."""
        if not authorization:
            raise unauthorized("token.missing", "a bearer token is required")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized(
                "token.malformed", "the Authorization header is not 'Bearer <token>'"
            )
        known = self._valid.get(token)
        if known is not None and self.now() <= known[1] + LEEWAY_SECONDS:
            return known[0]
        caller, expires, kid = self._verify(token)
        self._valid[token] = (caller, expires, kid)
        if len(self._valid) > self.remembered:
            self._valid.popitem(last=False)
        return caller

    def replace_keys(self, keys: KeySet) -> None:
        """The identity provider's current signing keys (a rotation): tokens signed with a key
        no longer in the set are no longer accepted, remembered or not."""
        kept = {key.kid for key in keys.keys}
        self.keys = keys
        for token in [t for t, (_, _, kid) in self._valid.items() if kid not in kept]:
            del self._valid[token]

    def _verify(self, token: str) -> tuple[Caller, int, str]:
        try:
            decoded = jwt.decode(token, self.keys, algorithms=list(ALGORITHMS))
            registry = jwt.JWTClaimsRegistry(
                now=self.now, leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "values": self.audiences},
                exp={"essential": True}, iat={"essential": True}, sub={"essential": False},
            )  # fmt: skip
            registry.validate(decoded.claims)
            lifetime = int(decoded.claims["exp"]) - int(decoded.claims["iat"])
        except ExpiredTokenError:
            raise unauthorized("token.expired", "the token has expired") from None
        except BadSignatureError:
            raise unauthorized("token.signature", "the token's signature does not verify") from None
        except (InvalidClaimError, MissingClaimError) as error:
            claim = getattr(error, "claim", "a claim")
            raise unauthorized(f"token.{claim}", f"the token's {claim} is not accepted") from None
        except (InvalidTokenError, JoseError, ValueError, TypeError):
            raise unauthorized("token.malformed", "the token cannot be read") from None
        if lifetime > MAX_TOKEN_SECONDS:
            raise unauthorized(
                "token.lifetime", f"tokens may live at most {MAX_TOKEN_SECONDS} s (exp - iat)"
            )
        expires = int(decoded.claims["exp"])
        kid = str(decoded.header.get("kid", ""))
        return replace(caller_of(decoded.claims), expires_at=expires), expires, kid


def caller_of(claims: dict[str, object]) -> Caller:
    try:
        role = Role(str(claims.get("role")))
    except ValueError:
        raise forbidden("role.unknown", "the token names no known role") from None
    # SMART contexts: patient/ scopes for a patient's own compartment only, user/ and system/
    # for staff and back-end clients; a scope out of its role's context grants nothing
    contexts = ("patient",) if role is Role.PATIENT else ("user", "system")
    parsed = map(Scope.parse, str(claims.get("scope", "")).split())
    scopes = tuple(s for s in parsed if s is not None and s.context in contexts)
    if role is Role.SOURCE_STAFF:
        scopes = tuple(s for s in scopes if s.resource == QUALITY_RESOURCE)
    client = str(claims.get("client_id") or claims.get("azp") or claims.get("sub") or "")
    if not client:
        raise unauthorized("token.client_id", "the token names no client")
    person = claims.get("person_id")
    if role is Role.PATIENT and not isinstance(person, str):
        raise forbidden("patient.no_person", "a patient token must name the patient's person")
    institution = claims.get("institution")
    if role is Role.SOURCE_STAFF and not isinstance(institution, str):
        raise forbidden("source.no_institution", "a source staff token must name its institution")
    subject = claims.get("sub")
    return Caller(
        client, str(subject) if subject else None, role, scopes,
        person if isinstance(person, str) else None,
        institution if isinstance(institution, str) else None,
    )  # fmt: skip


def scope_text(scopes: Iterable[Scope]) -> str:
    return " ".join(f"{s.context}/{s.resource}.{s.access}" for s in scopes)


class TokenIssuer:
    """OAuth2 client credentials: signs short-lived tokens for the clients of the registry
    (`hs_edge.clients`) with the edge's signing key, whose public key is in the key set the
    edge accepts."""

    def __init__(
        self, key: Any, issuer: str, ttl_seconds: int = 300, now: Callable[[], int] | None = None
    ) -> None:
        self.key, self.issuer, self.ttl = key, issuer, ttl_seconds
        self.now = now or (lambda: int(time.time()))

    def token(
        self, client_id: str, role: Role, scope: str, person_id: str | None, audience: str,
        institution: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        now = self.now()
        claims: dict[str, object] = {
            "iss": self.issuer, "aud": audience, "iat": now, "exp": now + self.ttl,
            "sub": client_id, "client_id": client_id, "role": role.value, "scope": scope,
            "jti": secrets.token_hex(8),
        }  # fmt: skip
        if person_id:
            claims["person_id"] = person_id
        if institution:
            claims["institution"] = institution
        token = jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl,
                "scope": scope}  # fmt: skip
