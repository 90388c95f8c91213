"""The common envelope every event carries (schemas/common/Envelope.avsc)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_envelope(
    institution: str,
    system: str,
    occurred_at: datetime,
    received_at: datetime | None = None,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """Envelope for an event made from bytes just received."""
    return {
        "event_id": str(uuid.uuid4()),
        "source": {"institution": institution, "system": system},
        "occurred_at": occurred_at,
        "received_at": received_at or datetime.now(UTC),
        "trace_id": trace_id or new_trace_id(),
    }


def derived_envelope(
    parent: Mapping[str, Any], occurred_at: datetime | None = None
) -> dict[str, Any]:
    """Envelope for an event derived from another: new id, same source, receipt time and trace."""
    return {
        "event_id": str(uuid.uuid4()),
        "source": dict(parent["source"]),
        "occurred_at": occurred_at or parent["occurred_at"],
        "received_at": parent["received_at"],
        "trace_id": parent["trace_id"],
    }
