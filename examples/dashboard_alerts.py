"""A disease-control or ward dashboard following HealthStream's alert stream.

    python examples/dashboard_alerts.py --login .local/kafka-clients/dashboard.env [--seconds 30]

Logs in as the `dashboard` principal, which may read `hs.vitals.alert.v1` and nothing else
(hs_common.access), reads the stream from the beginning, and prints, every few seconds, the
alerts open now per institution and severity, and those raised per hour. It holds no keys: the
rule, cohort, readings and scores in an alert stay sealed (they tell a condition); severity,
institution and times are what a dashboard counts. The login file holds HS_KAFKA_* variables
(`make dev-credentials`).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer

from hs_common import topics
from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.settings import RuntimeSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--login", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to follow")
    args = parser.parse_args(argv)
    codec = Codec(SchemaCatalogue.load(default_schema_root()), Keyring.empty())
    group = f"dashboard-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        RuntimeSettings.from_login_file(args.login).kafka_client_config()
        | {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topics.VITALS_ALERT.name])
    open_alerts: dict[str, tuple[str, str]] = {}  # alert id -> (institution, severity)
    per_hour: Counter[str] = Counter()
    read = 0
    deadline, shown = time.monotonic() + args.seconds, 0.0
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if message.error() is not None or not message.value():
                    continue
                alert = codec.decode(message.value() or b"").record
                read += 1
                if alert["action"] == "OPENED":
                    where = alert["envelope"]["source"]["institution"]
                    open_alerts[alert["alert_id"]] = (where, alert["severity"])
                    per_hour[alert["at"].strftime("%Y-%m-%d %H:00")] += 1
                else:
                    open_alerts.pop(alert["alert_id"], None)
            if time.monotonic() - shown > 5:
                shown = time.monotonic()
                print(f"{read} alert events read; open now:")
                for (where, severity), count in sorted(Counter(open_alerts.values()).items()):
                    print(f"  {where:<12}{severity:<8}{count:>6}")
    finally:
        consumer.close()
    busiest = ", ".join(f"{hour}: {n}" for hour, n in per_hour.most_common(3))
    print(f"done: {read} alert events, {len(open_alerts)} open; busiest hours: {busiest or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
