"""EMPI streaming speed: link one incoming record at a time against a large person index.

The index holds one registration per person for `--persons` people (1,000,000 by default:
the generator's people with their first registration's noise); the model is estimated on a
50,000-record sample. Then `--incoming` further registrations of indexed people (and of new
people) arrive one by one; each is standardized and linked, and its latency measured.

Baseline, same run: Splink 5 `predict_between` scoring one new record against 5,000 existing
records (the scale Splink's real-time use was measured at), median of 20 calls; trained the
standard way, without term-frequency adjustment (its incremental path needs TF tables
registered separately).

    uv run python bench/empi_speed_bench.py [--persons 1000000] [--incoming 20000]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import statistics
import time
from datetime import datetime

import pandas as pd
import splink.comparison_library as cl
from empi_accuracy_bench import splink_row
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from hs_empi.index import PersonIndex
from hs_empi.model import estimate
from hs_empi.standardize import IdentityFields, Standard, standardize
from hs_synth.people import generate_people
from hs_synth.registrations import NoiseConfig, Registration, registrations_for

SEED = 20261129


def fields(registration: Registration) -> IdentityFields:
    return IdentityFields(
        institution=registration.institution.code,
        local_id=registration.local_id,
        family=registration.family or registration.family_pinyin,
        given=registration.given or registration.given_pinyin,
        resident_id=registration.id_number,
        birth_date=registration.birth_date,
        sex="M" if registration.male else "F",
        phones=(registration.phone,) if registration.phone else (),
        address=registration.address.text,
        district=registration.address.district.code,
    )


def registrations(persons: int) -> list[Registration]:
    people = generate_people(persons, SEED)
    result: list[Registration] = []
    for start in range(0, persons, 50_000):
        result += registrations_for(
            people[start : start + 50_000], SEED, NoiseConfig(), datetime(2026, 1, 1), 90
        )
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def splink_baseline(records: list[Standard], calls: int = 20) -> float:
    db_api = DuckDBAPI()
    existing = db_api.register(pd.DataFrame([splink_row(s) for s in records[:5000]]))
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.DamerauLevenshteinAtThresholds("id_number", [1, 2]),
            cl.NameComparison("family"),
            cl.NameComparison("given"),
            cl.DateOfBirthComparison("birth_date", input_is_string=True),
            cl.ExactMatch("phone"),
            cl.ExactMatch("district"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("id_number"),
            block_on("phone"),
            block_on("family", "birth_date"),
            block_on("given", "birth_date"),
        ],
    )
    linker = Linker(existing, settings)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"))
    timings = []
    for s in records[5000 : 5000 + calls]:
        started = time.perf_counter()
        new = db_api.register(pd.DataFrame([splink_row(s)]))
        linker.inference.predict_between(existing, new).as_pandas_dataframe()  # type: ignore[no-untyped-call]
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--incoming", type=int, default=20_000)
    args = parser.parse_args()
    logging.getLogger("splink").setLevel(logging.WARNING)

    started = time.perf_counter()
    every = registrations(args.persons)
    first: dict[str, Registration] = {}
    later: list[Registration] = []
    for registration in every:
        if registration.person.person_id in first:
            later.append(registration)
        else:
            first[registration.person.person_id] = registration
    print(f"generated {len(every):,} registrations in {time.perf_counter() - started:.0f} s")

    started = time.perf_counter()
    indexed = [standardize(fields(r)) for r in first.values()]
    model = estimate(random.Random(SEED).sample(indexed, min(50_000, len(indexed))))
    index = PersonIndex(model)
    for record in indexed:
        index.add(record)
    print(
        f"index of {index.person_count():,} persons from {len(indexed):,} records built in "
        f"{time.perf_counter() - started:.0f} s"
    )

    incoming = random.Random(SEED).sample(later, min(args.incoming, len(later)))
    latencies = []
    run_started = time.perf_counter()
    for registration in incoming:
        began = time.perf_counter()
        index.add(standardize(fields(registration)))
        latencies.append(time.perf_counter() - began)
    seconds = time.perf_counter() - run_started

    baseline = splink_baseline(indexed)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(
        f"HealthStream: {len(incoming):,} incoming records against {args.persons:,} persons: "
        f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, {len(incoming) / seconds:,.0f} records/s"
    )
    print(
        f"baseline, Splink predict_between one record against 5,000: median {baseline * 1000:.0f} ms; "
        f"ratio Splink/HealthStream p50 {baseline / p50:,.0f}x"
    )


if __name__ == "__main__":
    main()
