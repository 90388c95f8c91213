"""`hs-admin`: development keyring, topics and schema history.

hs-admin dev-keys         write a development keyring (HS_KEYRING_FILE) unless one exists
hs-admin create-topics    create every catalogued topic that is missing
hs-admin release-schemas  record every current schema version in schemas/history/
hs-admin counts           count the committed records on every catalogued topic
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from hs_common import topics
from hs_common.crypto import Keyring
from hs_common.kafka import make_admin, make_consumer
from hs_common.schemas import HISTORY_DIR, SchemaCatalogue, default_schema_root
from hs_common.settings import Environment, RuntimeSettings


def dev_keys(settings: RuntimeSettings) -> str:
    if settings.environment is Environment.PRODUCTION:
        return "refused: development keys are not generated in production"
    if settings.keyring_file.exists():
        return f"keyring {settings.keyring_file} exists; left as it is"
    Keyring.generate().to_file(settings.keyring_file)
    return f"wrote development keyring {settings.keyring_file} (mode 600, not for production)"


def create_topics(settings: RuntimeSettings) -> str:
    created = topics.ensure_topics(
        make_admin(settings), topics.ALL, settings.topic_partitions, settings.topic_replication
    )
    names = ", ".join(created) if created else "none (all exist)"
    return f"topics created on {settings.kafka_bootstrap}: {names}"


def release_schemas(settings: RuntimeSettings) -> str:
    root = settings.schema_dir or default_schema_root()
    catalogue = SchemaCatalogue.load(root)
    recorded = []
    for schema in catalogue:
        if catalogue.is_released(schema):
            continue
        path = root / HISTORY_DIR / schema.name / f"{schema.fingerprint.hex()}.avsc"
        path.parent.mkdir(parents=True, exist_ok=True)
        document = catalogue.release_document(schema.name)
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        recorded.append(f"{schema.name} {schema.fingerprint.hex()}")
    return "recorded: " + (", ".join(recorded) if recorded else "nothing new")


def counts(settings: RuntimeSettings) -> str:
    consumer = make_consumer(settings, f"hs-admin-counts-{uuid.uuid4().hex}", "hs-admin")
    lines = []
    try:
        for spec in topics.ALL:
            metadata = consumer.list_topics(spec.name, timeout=10).topics[spec.name]
            partitions = [
                TopicPartition(spec.name, p, OFFSET_BEGINNING) for p in metadata.partitions
            ]
            consumer.assign(partitions)
            count, idle_since = 0, time.monotonic()
            while time.monotonic() - idle_since < 1.0:
                batch = consumer.consume(1000, 0.2)
                count += sum(1 for m in batch if m.error() is None)
                if batch:
                    idle_since = time.monotonic()
            lines.append(f"  {spec.name:<30}{count:>10,}")
    finally:
        consumer.close()
    return "records per topic (committed):\n" + "\n".join(lines)


COMMANDS = {
    "dev-keys": dev_keys,
    "create-topics": create_topics,
    "release-schemas": release_schemas,
    "counts": counts,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hs-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    result = COMMANDS[args.command](RuntimeSettings())
    print(result)
    return 1 if result.startswith("refused") else 0


if __name__ == "__main__":
    sys.exit(main())
