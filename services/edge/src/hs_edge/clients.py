"""The open platform's clients (开放平台): an administrator registers a client with its role and
scopes, rotates its secret (the old one still accepted for a grace period) or revokes it; the
token endpoint issues tokens to active clients only. Each client is a versioned record on
`hs.edge.client.v1`; the latest version is its state. Pure: the edge stores and sends them."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hs_common.codec import Record
from hs_edge.auth import QUALITY_RESOURCE, Refused, Role, Scope

CLIENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{2,62}")
SANDBOX_SUFFIX = "-sandbox"  # a sandbox client's tokens are for `<audience>-sandbox`
MAX_GRACE = timedelta(days=7)
# Audit entries that are not requests: what one request served (counted with the request).
SERVED_ITEMS = frozenset(("person.found", "person.matched", "alert.served"))


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Registration:
    """What an administrator asks for."""

    name: str
    role: Role
    scope: str
    person_id: str | None = None
    sandbox: bool = False
    client_id: str | None = None  # None: one is made
    institution: str | None = None  # for source staff: their institution


def checked_scope(role: Role, scope: str) -> str:
    """The scopes, refused unless each is a SMART scope the role can use."""
    contexts = ("patient",) if role is Role.PATIENT else ("user", "system")
    words = scope.split()
    for word in words:
        parsed = Scope.parse(word)
        outside = (
            role is Role.SOURCE_STAFF
            and parsed is not None
            and (parsed.resource != QUALITY_RESOURCE)
        )
        if parsed is None or parsed.context not in contexts or outside:
            raise Refused(
                "client.scope", f"not a scope a {role.value} client can use: {word!r}", 400
            )
    if not words:
        raise Refused("client.scope", "a client needs at least one scope", 400)
    return " ".join(words)


def register(wanted: Registration, by: str, now: datetime) -> tuple[Record, str]:
    """The first version of a new client, and its secret (shown once, never stored)."""
    client_id = wanted.client_id or f"c-{secrets.token_hex(6)}"
    if not CLIENT_ID.fullmatch(client_id):
        raise Refused("client.id", "a client id is 3 to 63 of a-z, 0-9 and '-'", 400)
    if not wanted.name.strip() or len(wanted.name) > 200:
        raise Refused("client.name", "a client's name is 1 to 200 characters", 400)
    if (wanted.role is Role.PATIENT) != (wanted.person_id is not None):
        raise Refused("client.person", "a patient's client names its person; others none", 400)
    if (wanted.role is Role.SOURCE_STAFF) != (wanted.institution is not None):
        raise Refused("client.institution",
                      "a source staff client names its institution; others none", 400)  # fmt: skip
    secret = new_secret()
    record: Record = {
        "client_id": client_id, "version": 1, "name": wanted.name.strip(),
        "role": wanted.role.value, "scope": checked_scope(wanted.role, wanted.scope),
        "person_id": wanted.person_id, "institution": wanted.institution,
        "sandbox": wanted.sandbox, "status": "ACTIVE",
        "secret_sha256": secret_hash(secret), "previous_secret_sha256": None,
        "previous_valid_until": None, "changed_at": now, "changed_by": by,
    }  # fmt: skip
    return record, secret


def rotated(client: Record, grace: timedelta, by: str, now: datetime) -> tuple[Record, str]:
    """The next version with a new secret; the current one is accepted until `now + grace`."""
    _active(client)
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise Refused("client.grace", f"the grace period is 0 to {MAX_GRACE.days} days", 400)
    secret = new_secret()
    return _next(client, by, now, secret_sha256=secret_hash(secret),
                 previous_secret_sha256=client["secret_sha256"],
                 previous_valid_until=now + grace), secret  # fmt: skip


def revoked(client: Record, by: str, now: datetime) -> Record:
    """The next version, revoked: no token for it any more, and its tokens refused."""
    _active(client)
    return _next(client, by, now, status="REVOKED", previous_secret_sha256=None,
                 previous_valid_until=None)  # fmt: skip


def _active(client: Record) -> None:
    if client["status"] != "ACTIVE":
        raise Refused("client.revoked", "the client is revoked", 409)


def _next(client: Record, by: str, now: datetime, **changes: Any) -> Record:
    return client | changes | {"version": client["version"] + 1, "changed_at": now,
                               "changed_by": by}  # fmt: skip


def accepts(client: Record, secret: str, now: datetime) -> bool:
    """Whether `secret` is the active client's secret, or its previous one within the grace."""
    if client["status"] != "ACTIVE":
        return False
    offered = secret_hash(secret)
    if hmac.compare_digest(offered, client["secret_sha256"]):
        return True
    previous, until = client["previous_secret_sha256"], client["previous_valid_until"]
    return (
        previous is not None
        and until is not None
        and now < until
        and hmac.compare_digest(offered, previous)
    )


@dataclass(frozen=True)
class Grant:
    """What a token for a client says."""

    client_id: str
    role: Role
    scope: str
    person_id: str | None
    audience: str
    institution: str | None = None


def grant(client: Record, secret: str, asked: str | None, audience: str, now: datetime) -> Grant:
    """The token a client's credentials earn, or Refused (an unknown client and a wrong secret
    are refused alike)."""
    if not accepts(client, secret, now):
        raise Refused("client.invalid", "unknown client or wrong secret", 401)
    allowed = client["scope"].split()
    scope = asked.split() if asked else allowed
    if not set(scope) <= set(allowed):
        raise Refused("scope.invalid", "the client may not ask for these scopes", 400)
    sandboxed = audience + SANDBOX_SUFFIX if client["sandbox"] else audience
    return Grant(
        client["client_id"], Role(client["role"]), " ".join(scope), client["person_id"], sandboxed,
        client.get("institution"),
    )  # fmt: skip


def view(client: Record, usage: list[tuple[str, int, int, int]] | None = None) -> dict[str, Any]:
    """A client as administrators see it: never a secret or its hash."""
    shown: dict[str, Any] = {
        "client_id": client["client_id"], "name": client["name"], "role": client["role"],
        "scope": client["scope"], "person_id": client["person_id"],
        "institution": client.get("institution"),
        "sandbox": client["sandbox"], "status": client["status"].lower(),
        "version": client["version"], "changed_at": client["changed_at"].isoformat(),
        "changed_by": client["changed_by"],
        "previous_secret_valid_until": (
            client["previous_valid_until"].isoformat() if client["previous_valid_until"] else None
        ),
    }  # fmt: skip
    if usage is not None:
        days = [
            {"day": day, "requests": n, "refusals": refused, "rate_limited": limited}
            for day, n, refused, limited in usage
        ]
        shown["usage"] = {
            "requests": sum(d["requests"] for d in days),
            "refusals": sum(d["refusals"] for d in days),
            "rate_limited": sum(d["rate_limited"] for d in days),
            "days": days,
        }
    return shown


def imported(
    client_id: str, secret_sha256: str, role: Role, scope: str, person_id: str | None,
    now: datetime, institution: str | None = None,
) -> Record:  # fmt: skip
    """A development client (from `hs-edge dev-setup`'s file) as the registry's first version."""
    wanted = Registration(client_id, role, scope, person_id, client_id=client_id,
                          institution=institution)  # fmt: skip
    record, _ = register(wanted, "dev-setup", now)
    return record | {"secret_sha256": secret_sha256}


class RevokedClients:
    """The revoked clients' ids, read again at most every `every` seconds: a revoked client's
    tokens already issued are refused from then on, on every replica."""

    def __init__(self, load: Callable[[], set[str]], every: float = 5.0) -> None:
        self.load, self.every = load, every
        self._ids: set[str] = set()
        self._read_at = float("-inf")

    def __contains__(self, client_id: str) -> bool:
        return client_id in self.ids(time.monotonic())

    def ids(self, now: float) -> set[str]:
        if now - self._read_at >= self.every:
            self._ids, self._read_at = self.load(), now
        return self._ids

    def add(self, client_id: str) -> None:
        """Known at once to the replica that revoked it."""
        self._ids = self._ids | {client_id}
