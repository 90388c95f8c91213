"""The open platform's operations: tokens for registered clients, and the administrators'
registration, rotation, revocation and usage of clients. A change is stored on the client
topic (acks=all, with the edge's MAC) before it is answered, and applied to this replica's read
model at once; the other replicas take it from the topic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hs_common import topics
from hs_common.codec import Record
from hs_edge import clients
from hs_edge.auth import Caller, Refused, Role
from hs_edge.operations import Edge, View, send

SCHEMA = topics.EDGE_CLIENT.value_schema


def issue_token(edge: Edge, client_id: str, secret: str, scope: str | None) -> dict[str, Any]:
    """OAuth2 client credentials: a token for an active registered client."""
    if edge.issuer is None:
        raise Refused("token_endpoint.disabled", "tokens come from the identity provider", 404)
    stored = edge.store.client(client_id)
    client = edge.opened(stored) if stored is not None else None
    if client is None:
        raise Refused("client.invalid", "unknown client or wrong secret", 401)
    granted = clients.grant(client, secret, scope, edge.tokens.audience, datetime.now(UTC))
    return edge.issuer.token(
        granted.client_id, granted.role, granted.scope, granted.person_id, granted.audience,
        granted.institution,
    )  # fmt: skip


def _administrator(caller: Caller, access: str) -> None:
    caller.require("Client", access)
    caller.require_role(Role.ADMINISTRATOR)


def _by(caller: Caller) -> str:
    return f"{caller.client_id}/{caller.subject}" if caller.subject else caller.client_id


async def _store(edge: Edge, client: Record) -> None:
    value = await send(edge, edge.client_topic, SCHEMA, client, client["client_id"])
    edge.store.put_client(client["client_id"], client["version"], client["status"], value)


def _client(edge: Edge, client_id: str) -> Record:
    stored = edge.store.client(client_id)
    if stored is None:
        raise Refused("client.not_found", "no such client", 404)
    return edge.opened(stored)


async def register_client(edge: Edge, caller: Caller, wanted: clients.Registration) -> View:
    """A new client; its secret is in this answer only."""
    _administrator(caller, "write")
    if wanted.client_id is not None and edge.store.client(wanted.client_id) is not None:
        raise Refused("client.exists", "a client with this id exists", 409)
    client, secret = clients.register(wanted, _by(caller), datetime.now(UTC))
    await _store(edge, client)
    return clients.view(client) | {"client_secret": secret}


async def rotate_secret(edge: Edge, caller: Caller, client_id: str, grace: timedelta) -> View:
    """A new secret (in this answer only); the old one is accepted for `grace` more."""
    _administrator(caller, "write")
    client, secret = clients.rotated(_client(edge, client_id), grace, _by(caller),
                                     datetime.now(UTC))  # fmt: skip
    await _store(edge, client)
    return clients.view(client) | {"client_secret": secret}


async def revoke_client(edge: Edge, caller: Caller, client_id: str) -> View:
    """No more tokens for the client; the tokens it holds are refused within seconds on every
    replica (at once on this one)."""
    _administrator(caller, "write")
    client = clients.revoked(_client(edge, client_id), _by(caller), datetime.now(UTC))
    await _store(edge, client)
    edge.revoked.add(client_id)
    return clients.view(client)


def list_clients(edge: Edge, caller: Caller) -> View:
    _administrator(caller, "read")
    found = [edge.opened(event) for event in edge.store.clients()]
    return {"items": [clients.view(c, edge.store.usage(c["client_id"])) for c in found]}


def client_detail(edge: Edge, caller: Caller, client_id: str) -> View:
    """The client and its usage per day: requests, refusals and rate-limit hits."""
    _administrator(caller, "read")
    return clients.view(_client(edge, client_id), edge.store.usage(client_id))
