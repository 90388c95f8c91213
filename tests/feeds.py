"""A generated feed (hs-synth) made into canonical events as ingestion makes them, in process:
each HL7 message kept as the MLLP door keeps it, each clinic, FHIR and device body as the
HTTP door does, then normalized. For the tests that need the platform's events of a feed
without the doors in between."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hs_common.codec import Codec
from hs_common.envelope import new_envelope
from hs_ingestion.intake import Kept, receive_hl7
from hs_ingestion.normalize import normalize_raw
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.tools import hl7_messages

SHANGHAI = timedelta(hours=8)


def sent_at(message: bytes) -> datetime:
    """MSH-7 of a generated message (local time of the hospitals, +0800), in UTC."""
    stamp = message.split(b"\r", 1)[0].split(b"|")[6].decode()[:14]
    return datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC) - SHANGHAI


def canonical_events(
    folder: Path, codec: Codec, received: Callable[[bytes], datetime] | None = None,
    devices: bool = False,
) -> list[tuple[str, dict[str, Any]]]:  # fmt: skip
    """(schema, record) of every event the feed's files make, in file order. `received`: the
    receipt time of an HL7 message (default: now); bodies sent over HTTP are received now."""
    sources = SourceRegistry.load(default_sources_dir())
    now = datetime.now(UTC)
    raws = []
    for path in sorted((folder / "hl7").glob("*.mllp")):
        for chunk in hl7_messages(path.read_bytes()):
            at = received(chunk.payload) if received else now
            kept = receive_hl7(chunk.payload, sources, codec.keyring, received_at=at)
            if isinstance(kept, Kept):
                raws.append(kept.record)
    bodies = [(p.stem, line) for p in sorted(folder.glob("*/*.ndjson"))
              for line in p.read_bytes().splitlines() if line]  # fmt: skip
    bodies += [("SHC02", p.read_bytes()) for p in sorted(folder.glob("clinics/SHC02/*.csv"))]
    for code, body in bodies:
        source = sources.get(code)
        if source is not None and (devices or source.format != "device-batch"):
            envelope = new_envelope(code, "import", now, now)
            raws.append({"envelope": envelope, "payload": body, "charset": "utf-8"})
    events = []
    for raw in raws:
        source = sources.get(raw["envelope"]["source"]["institution"])
        assert source is not None
        events += [(e.schema, e.record) for e in normalize_raw(raw, source).events]
    return events
