"""The escalation clock: a check when an open alert falls due, none for closed or replayed
alerts, and nothing kept for alerts it is not waiting on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_vitals.service import EscalationClock, VitalsSettings

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
ENVELOPE = {"source": {"institution": "W", "system": "vitals"}, "trace_id": "t"}


def alert(alert_id: str, action: str, due: datetime | None = None) -> dict[str, Any]:
    return {"alert_id": alert_id, "action": action, "escalate_at": due,
            "patient_key": f"pk-{alert_id}", "envelope": ENVELOPE}  # fmt: skip


def test_checks_only_for_open_live_alerts_that_are_due() -> None:
    codec = Codec(SchemaCatalogue.load(default_schema_root()), Keyring.generate())
    clock = EscalationClock(VitalsSettings(), codec)
    clock.follow(alert("due", "OPENED", NOW - timedelta(minutes=1)))
    clock.follow(alert("later", "OPENED", NOW + timedelta(minutes=5)))
    clock.follow(alert("resolved", "OPENED", NOW - timedelta(minutes=2)))
    clock.follow(alert("resolved", "RESOLVED"))
    clock.follow(alert("replayed", "OPENED", NOW - timedelta(days=3)))
    clock.follow(alert("never-seen-open", "ESCALATED"))
    checks = list(clock.fire(NOW))
    assert [(c["kind"], c["patient_key"], c["at"]) for c in checks] == [("CHECK", "pk-due", NOW)]
    assert clock.closed == set()  # nothing kept for alerts it was not waiting on
    assert [c["patient_key"] for c in clock.fire(NOW + timedelta(minutes=5))] == ["pk-later"]
