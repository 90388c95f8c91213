"""`hs-vitals`: device readings in, clinical alerts out, with per-patient state in Quix Streams.

hs.device.reading.v1 (keyed by device) is re-keyed by patient, and each patient's monitor
(hs_vitals.monitor) lives in the Quix state store (RocksDB, with a changelog topic that
restores it on another instance), exactly once. Everything that leaves the process is
sealed: the repartition topic carries the codec's DeviceReading, and state values are sealed
with the health key before they reach RocksDB and its changelog.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field
from quixstreams import Application, State
from quixstreams.models.serializers import Deserializer, Serializer
from quixstreams.state.rocksdb import RocksDBOptions

from hs_common import topics
from hs_common.codec import Codec, Record
from hs_common.crypto import Sealed
from hs_common.envelope import derived_envelope
from hs_common.runtime import Runtime
from hs_common.settings import RuntimeSettings
from hs_vitals.monitor import AlertEvent, Metric, PatientMonitor, Reading, from_state, to_state
from hs_vitals.thresholds import DEFAULT, Thresholds, load_cohorts

STATE_KEY = "monitor"
SEALED_STATE = b"\x00sealed:"
AAD_STATE = "hs.vitals.state"


class VitalsSettings(RuntimeSettings):
    metrics_port: int = Field(9404, ge=0, le=65535, alias="HS_METRICS_PORT")
    group_id: str = Field("hs-vitals", alias="HS_VITALS_GROUP")
    reading_topic: str = Field(topics.DEVICE_READING.name, alias="HS_VITALS_READING_TOPIC")
    alert_topic: str = Field(topics.VITALS_ALERT.name, alias="HS_VITALS_ALERT_TOPIC")
    state_dir: Path = Field(Path(".local/vitals-state"), alias="HS_VITALS_STATE_DIR")
    cohorts_file: Path | None = Field(None, alias="HS_VITALS_COHORTS_FILE")


class CodecDeserializer(Deserializer):
    def __init__(self, codec: Codec, schema: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.codec, self.schema = codec, schema

    def __call__(self, value: bytes, ctx: Any) -> Record:
        return self.codec.decode(value, expect=self.schema).record


class CodecSerializer(Serializer):
    def __init__(self, codec: Codec, schema: str) -> None:
        super().__init__()
        self.codec, self.schema = codec, schema

    def __call__(self, value: Record, ctx: Any) -> bytes:
        return self.codec.encode(self.schema, value)


def sealed_state(codec: Codec) -> RocksDBOptions:
    """State values sealed with the health key; state keys (constant names) left readable,
    since the store looks them up by their bytes."""

    def dumps(value: Any) -> bytes:
        plain = json.dumps(value).encode()
        if isinstance(value, str):
            return plain
        sealed = codec.keyring.seal("health", AAD_STATE, plain)
        return (
            SEALED_STATE
            + json.dumps([sealed.key_id, sealed.nonce.hex(), sealed.ciphertext.hex()]).encode()
        )

    def loads(data: bytes) -> Any:
        if not data.startswith(SEALED_STATE):
            return json.loads(data)
        key_id, nonce, ciphertext = json.loads(data[len(SEALED_STATE) :])
        sealed = Sealed(key_id, bytes.fromhex(nonce), bytes.fromhex(ciphertext))
        plain = codec.keyring.open(AAD_STATE, sealed)
        if plain is None:
            raise RuntimeError("vitals state sealed with a key this process does not hold")
        return json.loads(plain)

    return RocksDBOptions(dumps=dumps, loads=loads)


class Vitals:
    """The per-patient step: a reading in, alert records out."""

    def __init__(self, codec: Codec, thresholds: Thresholds = DEFAULT) -> None:
        self.codec = codec
        self.thresholds = thresholds

    def patient_key(self, reading: Record) -> str:
        institution = reading["envelope"]["source"]["institution"]
        binding = reading["binding"]
        patient = binding["local_patient_id"] or f"device:{binding['device_id']}"
        return self.codec.keyring.pseudonym(institution, patient)

    def device_step(self, reading: Record, state: State[str, Any]) -> list[Record]:
        """A device reading (re-keyed by patient)."""
        measurement = reading["measurement"]
        if measurement["metric"] not in Metric.__members__:
            return []
        binding = reading["binding"]
        metric, value = Metric(measurement["metric"]), float(measurement["value"])
        observed = Reading(binding["device_id"], metric, value, reading["measured_at"])
        return self._observe(state, observed, reading["envelope"], self.patient_key(reading))

    def _observe(
        self, state: State[str, Any], reading: Reading, envelope: Record, patient_key: str
    ) -> list[Record]:
        stored = state.get(STATE_KEY)
        monitor = from_state(stored, self.thresholds) if stored else PatientMonitor(self.thresholds)
        outcome = monitor.observe(reading)
        state.set(STATE_KEY, to_state(monitor))
        return [self.alert(envelope, patient_key, event) for event in outcome.alerts]

    def alert(self, envelope: Record, patient_key: str, event: AlertEvent) -> Record:
        return {
            "envelope": derived_envelope(envelope, event.at),
            "alert_id": alert_id(patient_key, event.rule, event.opened_at),
            "action": event.action.value,
            "rule_id": event.rule,
            "severity": event.severity.value,
            "patient_key": patient_key,
            "person_id": None,
            "at": event.at,
            "readings": [
                {"metric": r.metric.value, "value": r.value, "measured_at": r.at}
                for r in event.readings
            ],
        }


def alert_id(patient_key: str, rule: str, opened: datetime) -> str:
    return hashlib.sha256(f"{patient_key}|{rule}|{opened.isoformat()}".encode()).hexdigest()[:16]


def build(settings: VitalsSettings, codec: Codec, thresholds: Thresholds = DEFAULT) -> Application:
    app = Application(
        broker_address=settings.kafka_bootstrap,
        consumer_group=settings.group_id,
        processing_guarantee="exactly-once",
        auto_offset_reset="earliest",
        state_dir=str(settings.state_dir),
        rocksdb_options=sealed_state(codec),
        commit_interval=0.5,
        loglevel=None,
    )
    vitals = Vitals(codec, thresholds)
    reading_schema = topics.DEVICE_READING.value_schema
    readings = app.topic(
        settings.reading_topic,
        key_deserializer="bytes",
        value_deserializer=CodecDeserializer(codec, reading_schema),
        timestamp_extractor=lambda value, headers, timestamp, kind: int(
            value["measured_at"].timestamp() * 1000
        ),
    )
    alerts = app.topic(
        settings.alert_topic,
        key_serializer="string",
        value_serializer=CodecSerializer(codec, topics.VITALS_ALERT.value_schema),
    )
    sdf = app.dataframe(readings)
    sdf = sdf.group_by(
        vitals.patient_key,
        name="patient",
        value_deserializer=CodecDeserializer(codec, reading_schema),
        value_serializer=CodecSerializer(codec, reading_schema),
    )
    sdf = sdf.apply(vitals.device_step, stateful=True, expand=True)
    sdf.to_topic(alerts, key=lambda alert: alert["patient_key"])
    return app


def main() -> int:
    settings = VitalsSettings()
    runtime = Runtime.start("vitals", settings)
    if settings.cohorts_file is not None:
        load_cohorts(settings.cohorts_file)  # refuse a bad file at start, naming the entry
    runtime.ready()
    build(settings, runtime.codec).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
