"""Generator speed: people with identity records, against Faker's zh_CN provider.

HealthStream's generator writes people and every institution's identity records (HL7 ADT,
clinic JSON/CSV, FHIR Patient bundles) plus the truth files. The baseline is Faker (zh_CN)
making just the people (name, resident ID, phone, address), measured in the same run on a
sample and reported per second.

    uv run python bench/synth_bench.py [--people 1000000] [--faker-sample 20000]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from faker import Faker

from hs_synth.generate import GeneratorConfig, generate


def faker_people_per_second(sample: int) -> float:
    fake = Faker("zh_CN")
    fake.seed_instance(1)
    started = time.perf_counter()
    for _ in range(sample):
        (fake.name(), fake.romanized_name(), fake.ssn(), fake.phone_number(), fake.address())
    return sample / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--faker-sample", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        manifest = generate(
            GeneratorConfig(people=args.people, identity_only=True), Path(folder), progress=False
        )
        seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    ours = args.people / seconds
    baseline = faker_people_per_second(args.faker_sample)
    print(f"machine: {platform.machine()}, python {platform.python_version()}")
    print(
        f"hs-synth: {args.people:,} people, {manifest['records']:,} identity records, "
        f"{size / 2**20:,.0f} MiB in {seconds:.1f} s = {ours:,.0f} people/s"
    )
    print(f"faker zh_CN (people only, {args.faker_sample:,} sample): {baseline:,.0f} people/s")
    print(f"ratio hs-synth / faker: {ours / baseline:.2f}")


if __name__ == "__main__":
    main()
