"""Worker for the exactly-once test: device readings in, vital-sign observations out,
through hs_common's ExactlyOnceProcessor. Run as a separate process so the test can kill it."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Message

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.envelope import derived_envelope
from hs_common.lifecycle import stop_on_signals
from hs_common.logs import configure_logging
from hs_common.processor import ExactlyOnceProcessor, Output
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.settings import Environment, RuntimeSettings


def main() -> None:
    parser = argparse.ArgumentParser()
    for option in (
        "--bootstrap",
        "--input",
        "--output",
        "--dead-letters",
        "--group",
        "--instance",
        "--keyring",
    ):
        parser.add_argument(option, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    configure_logging("eos-worker")
    settings = RuntimeSettings(
        HS_ENV=Environment.TEST,
        HS_KAFKA_BOOTSTRAP=args.bootstrap,
        HS_INSTANCE_ID=args.instance,
        HS_KEYRING_FILE=Path(args.keyring),
    )
    codec = Codec(
        SchemaCatalogue.load(default_schema_root()), Keyring.from_file(settings.keyring_file)
    )

    def to_observation(message: Message) -> Iterator[Output]:
        reading = codec.decode(message.value() or b"", expect="hs.device.DeviceReading").record
        time.sleep(args.delay_ms / 1000)
        measurement = reading["measurement"]
        observation = {
            "envelope": derived_envelope(reading["envelope"]),
            "subject": {
                "local_patient_id": reading["binding"]["local_patient_id"],
                "encounter_id": None,
            },
            "observation_id": str(reading["envelope"]["event_id"]),
            "category": "VITAL_SIGNS",
            "status": "FINAL",
            "effective_at": reading["measured_at"],
            "result": {
                "local_code": {"system": "urn:hs:device-metric", "code": measurement["metric"]},
                "value_quantity": measurement["value"],
                "unit": measurement["unit"],
                "original_value": str(measurement["value"]),
                "original_unit": measurement["unit"],
                "unit_status": "UCUM_AS_SENT",
            },
        }
        yield Output(
            args.output, codec.encode("hs.clinical.Observation", observation), message.key()
        )

    ExactlyOnceProcessor(
        settings,
        stage="test.eos",
        group_id=args.group,
        input_topics=[args.input],
        transform=to_observation,
        codec=codec,
        batch_size=200,
        dead_letter_topic=args.dead_letters,
    ).run(stop_on_signals())


if __name__ == "__main__":
    main()
