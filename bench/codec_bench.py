"""Codec speed: HealthStream single-object encoding with sealed fields vs plain fastavro.

Baseline: fastavro schemaless write/read of the same Observation (logical schema, nothing
sealed) in the same run. The ratio is the price of the header lookup and of sealing two
fields (subject: identifying, result: health) with SM4-GCM.

    uv run python bench/codec_bench.py [--records 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import time
from collections.abc import Callable

import fastavro

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.testing import golden_example

SCHEMA = "hs.clinical.Observation"


def rate(operation: Callable[[], object], records: int, rounds: int) -> float:
    """Median records/s over `rounds` runs of `records` operations."""
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(records):
            operation()
        rates.append(records / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    root = default_schema_root()
    catalogue = SchemaCatalogue.load(root)
    schema = catalogue.get(SCHEMA)
    record = golden_example(schema, root)
    codec = Codec(catalogue, Keyring.generate())
    encoded = codec.encode(SCHEMA, record)
    plain = io.BytesIO()
    fastavro.schemaless_writer(plain, schema.logical_parsed, record)
    plain_bytes = plain.getvalue()

    def baseline_write() -> None:
        fastavro.schemaless_writer(io.BytesIO(), schema.logical_parsed, record)

    def baseline_read() -> None:
        fastavro.schemaless_reader(io.BytesIO(plain_bytes), schema.logical_parsed, None)

    results = {
        "encode": (rate(lambda: codec.encode(SCHEMA, record), args.records, args.rounds),
                   rate(baseline_write, args.records, args.rounds)),
        "decode": (rate(lambda: codec.decode(encoded), args.records, args.rounds),
                   rate(baseline_read, args.records, args.rounds)),
    }  # fmt: skip
    print(f"machine: {platform.machine()}, python {platform.python_version()}")
    print(f"{SCHEMA}: {len(encoded)} bytes sealed, {len(plain_bytes)} bytes plain fastavro")
    print(f"{'operation':<10}{'healthstream/s':>16}{'fastavro/s':>14}{'ratio':>8}")
    for operation, (ours, baseline) in results.items():
        print(f"{operation:<10}{ours:>16,.0f}{baseline:>14,.0f}{ours / baseline:>8.2f}")


if __name__ == "__main__":
    main()
