"""The generator: people → registrations → clinical courses → each institution's files,
with malformed input mixed in and the ground truth written apart.

Output folder:
    manifest.json                    seed, settings and counts
    hl7/<institution>.mllp           MLLP-framed HL7 v2 stream, as the hospital would send it
    clinics/HZC01.ndjson             one clinic JSON document per line
    clinics/SHC02/batch-NNNNN.csv    CSV uploads of up to 500 rows
    fhir/F01.ndjson                  one FHIR R4 transaction Bundle per line
    devices/W01.ndjson               one wearable batch per line
    truth/*.csv                      people, records, merges, cohorts, episodes, cases,
                                     outbreaks, bad_inputs (never sent to the platform)
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, astuple, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hs_synth import badinput
from hs_synth import institutions as inst
from hs_synth.courses import CourseConfig, Truth, clinical_courses
from hs_synth.defects import Defect, DefectConfig, spoil_feed, spoil_registrations
from hs_synth.events import Feed, LabResult, report_sent_at
from hs_synth.formats import clinic, devices, fhir
from hs_synth.formats.hl7 import Hl7Writer
from hs_synth.people import Person, generate_people
from hs_synth.registrations import NoiseConfig, Registration, registrations_for

CHUNK = 20_000
CSV_BATCH_ROWS = 500


@dataclass(frozen=True)
class GeneratorConfig:
    people: int = 10_000
    seed: int = 20260101
    start: datetime = datetime(2026, 1, 1)
    days: int = 90
    noise_scale: float = 1.0
    bad_rate: float = 0.01
    identity_only: bool = False
    merge_rate: float = 0.7  # re-registrations the hospital later merges with ADT^A40
    update_rate: float = 0.1  # registrations followed by an ADT^A08 / re-sent record
    courses: dict[str, float] = field(default_factory=dict)  # CourseConfig overrides
    defects: DefectConfig = field(default_factory=DefectConfig)  # data-quality defects


@dataclass
class Output:
    """Payloads per file, each with the time it belongs to, before sorting and writing."""

    streams: dict[str, list[tuple[datetime, int, bytes]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    csv_rows: list[tuple[datetime, int, dict[str, str]]] = field(default_factory=list)
    sequence: int = 0

    def add(self, stream: str, at: datetime, payload: bytes) -> None:
        self.sequence += 1
        self.streams[stream].append((at, self.sequence, payload))

    def add_row(self, at: datetime, row: dict[str, str]) -> None:
        self.sequence += 1
        self.csv_rows.append((at, self.sequence, row))


def generate(config: GeneratorConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    noise = NoiseConfig(scale=config.noise_scale)
    people: list[Person] = []
    registrations: list[Registration] = []
    chunks = range(0, config.people, CHUNK)
    for first in tqdm(chunks, desc="people", unit="chunk", disable=not progress):
        chunk = generate_people(min(CHUNK, config.people - first), config.seed, first)
        people.extend(chunk)
        registrations.extend(
            registrations_for(chunk, config.seed, noise, config.start, config.days)
        )

    rng = random.Random(f"generate:{config.seed}")
    spoiler = random.Random(f"defects:{config.seed}")
    defects: list[Defect] = []
    if config.defects.any:
        registrations, defects = spoil_registrations(spoiler, registrations, config.defects)
    output = Output()
    writers = {i.code: Hl7Writer(i) for i in inst.ALL if i.channel is inst.Channel.HL7}
    merges = _identity_messages(rng, config, registrations, writers, output, progress)
    truth = Truth([], [], [], [])
    if not config.identity_only:
        course_config = CourseConfig(
            start=config.start, days=config.days, **_course_overrides(config)
        )
        feed, truth = clinical_courses(registrations, course_config, config.seed)
        if config.defects.any:
            defects += spoil_feed(spoiler, feed, config.defects, config.start)
        _clinical_messages(feed, writers, output, progress)

    bad: list[dict[str, str]] = []
    counts = _write_streams(rng, config, output, out, bad, progress)
    _write_truth(out, people, registrations, merges, truth, bad)
    _csv(out / "truth" / "quality_defects.csv", tuple(f.name for f in fields(Defect)),
         (astuple(d) for d in defects))  # fmt: skip
    manifest = {
        "generator": "hs-synth 0.1.0",
        "config": {**asdict(config), "start": config.start.isoformat()},
        "files": counts,
        "people": len(people),
        "records": len(registrations),
        "episodes": len(truth.episodes),
        "cases": len(truth.cases),
        "outbreaks": len(truth.outbreaks),
        "bad_inputs": len(bad),
        "quality_defects": len(defects),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _course_overrides(config: GeneratorConfig) -> dict[str, Any]:
    integer_fields = {"cgm_patients", "cgm_days", "cuff_patients", "inpatients", "outbreaks"}
    return {k: int(v) if k in integer_fields else v for k, v in config.courses.items()}


def _identity_messages(
    rng: random.Random,
    config: GeneratorConfig,
    registrations: list[Registration],
    writers: dict[str, Hl7Writer],
    output: Output,
    progress: bool,
) -> list[tuple[str, str, str, datetime]]:
    originals = {(r.institution.code, r.local_id): r for r in registrations}
    merges = []
    for r in tqdm(
        registrations, desc="identity records", unit="rec", disable=not progress, mininterval=1
    ):
        _registration_message(r, writers, output)
        if rng.random() < config.update_rate:
            later = r.registered_at + timedelta(days=rng.randint(1, 30))
            _registration_message(r, writers, output, update_at=later)
        if (
            r.prior_local_id
            and r.institution.channel is inst.Channel.HL7
            and rng.random() < config.merge_rate
        ):
            surviving = originals[(r.institution.code, r.prior_local_id)]
            at = r.registered_at + timedelta(days=rng.randint(1, 5))
            output.add(
                f"hl7/{r.institution.code}.mllp",
                at,
                writers[r.institution.code].merge(surviving, r.local_id, at),
            )
            merges.append((r.institution.code, surviving.local_id, r.local_id, at))
    return merges


def _registration_message(
    r: Registration,
    writers: dict[str, Hl7Writer],
    output: Output,
    update_at: datetime | None = None,
) -> None:
    at = update_at or r.registered_at
    channel = r.institution.channel
    if channel is inst.Channel.HL7:
        event = "A08" if update_at else "A04"
        output.add(
            f"hl7/{r.institution.code}.mllp", at, writers[r.institution.code].adt(r, event, at)
        )
    elif channel is inst.Channel.CLINIC_JSON:
        output.add("clinics/HZC01.ndjson", at, clinic.json_registration(r))
    elif channel is inst.Channel.CLINIC_CSV:
        output.add_row(at, clinic.csv_registration_row(r))
    elif channel is inst.Channel.FHIR:
        output.add("fhir/F01.ndjson", at, fhir.registration_bundle(r))


def _clinical_messages(
    feed: Feed, writers: dict[str, Hl7Writer], output: Output, progress: bool
) -> None:
    orders: dict[tuple[str, str], list[LabResult]] = defaultdict(list)
    for result in feed.labs:
        orders[(result.registration.institution.code, result.order_id)].append(result)
    for (code, _), results in orders.items():
        channel = results[0].registration.institution.channel
        at = results[0].at
        if channel is inst.Channel.HL7:
            for _copy in range(results[0].copies):
                output.add(f"hl7/{code}.mllp", report_sent_at(results[0]),
                           writers[code].labs(results))  # fmt: skip
        elif channel is inst.Channel.CLINIC_JSON:
            output.add("clinics/HZC01.ndjson", at, clinic.json_labs(results))
        elif channel is inst.Channel.CLINIC_CSV:
            for result in results:
                output.add_row(at, clinic.csv_lab_row(result))
        elif channel is inst.Channel.FHIR:
            output.add("fhir/F01.ndjson", at, fhir.observations_bundle(results))
    for d in feed.diagnoses:
        channel = d.registration.institution.channel
        code = d.registration.institution.code
        if channel is inst.Channel.HL7:
            output.add(f"hl7/{code}.mllp", d.at, writers[code].diagnosis(d))
        elif channel is inst.Channel.CLINIC_JSON:
            output.add("clinics/HZC01.ndjson", d.at, clinic.json_diagnosis(d))
        elif channel is inst.Channel.CLINIC_CSV:
            output.add_row(d.at, clinic.csv_diagnosis_row(d))
        elif channel is inst.Channel.FHIR:
            output.add("fhir/F01.ndjson", d.at, fhir.condition_bundle(d))
    for admission in feed.admissions:
        code = admission.registration.institution.code
        output.add(f"hl7/{code}.mllp", admission.at, writers[code].admission(admission))
    for signs in tqdm(
        feed.vitals, desc="vital signs", unit="set", disable=not progress, mininterval=1
    ):
        code = signs.registration.institution.code
        for _copy in range(signs.copies):
            output.add(f"hl7/{code}.mllp", signs.at, writers[code].vitals(signs))
    for first_at, batch in devices.batches(feed.readings):
        output.add(
            "devices/W01.ndjson", datetime.fromisoformat(first_at).replace(tzinfo=None), batch
        )


def _write_streams(
    rng: random.Random,
    config: GeneratorConfig,
    output: Output,
    out: Path,
    bad: list[dict[str, str]],
    progress: bool,
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in tqdm(sorted(output.streams), desc="writing", unit="file", disable=not progress):
        payloads = [payload for _, _, payload in sorted(output.streams[name])]
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make_bad = _bad_maker(rng, name)
        with path.open("wb") as stream:
            for index, payload in enumerate(
                _with_bad_inputs(rng, config.bad_rate, payloads, make_bad, name, bad)
            ):
                stream.write(payload if name.endswith(".mllp") else payload + b"\n")
                counts[name] = index + 1
    rows = [row for _, _, row in sorted(output.csv_rows, key=lambda item: item[:2])]
    batch_dir = out / "clinics" / "SHC02"
    batch_dir.mkdir(parents=True, exist_ok=True)
    batch_number = 0
    for first in range(0, len(rows), CSV_BATCH_ROWS):
        batch_number += 1
        chunk = rows[first : first + CSV_BATCH_ROWS]
        name = f"clinics/SHC02/batch-{batch_number:05d}.csv"
        if rng.random() < config.bad_rate * 10:
            broken = badinput.bad_csv(rng, chunk[:20])
            (out / name).write_bytes(broken.payload)
            bad.append(
                {
                    "file": name,
                    "index": "0",
                    "kind": broken.kind,
                    "expected_reason": broken.expected_reason,
                }
            )
            batch_number += 1
            name = f"clinics/SHC02/batch-{batch_number:05d}.csv"
        (out / name).write_bytes(clinic.csv_batch(chunk))
    counts["clinics/SHC02"] = batch_number
    return counts


def _bad_maker(rng: random.Random, name: str) -> Callable[[bytes], badinput.BadInput]:
    if name.startswith("hl7/"):
        segment_end = next(i.segment_end for i in inst.ALL if f"hl7/{i.code}.mllp" == name)
        return lambda good: badinput.bad_hl7(rng, good, segment_end)
    if name.startswith("clinics/"):
        return lambda good: badinput.bad_json(rng, good)
    if name.startswith("fhir/"):
        return lambda good: badinput.bad_fhir(rng, good)
    return badinput.bad_device_batch


def _with_bad_inputs(
    rng: random.Random,
    rate: float,
    payloads: list[bytes],
    make_bad: Callable[[bytes], badinput.BadInput],
    name: str,
    bad: list[dict[str, str]],
) -> Iterable[bytes]:
    index = 0
    for payload in payloads:
        if rng.random() < rate:
            broken = make_bad(payload)
            bad.append(
                {
                    "file": name,
                    "index": str(index),
                    "kind": broken.kind,
                    "expected_reason": broken.expected_reason,
                }
            )
            yield broken.payload
            index += 1
        yield payload
        index += 1


def _write_truth(
    out: Path,
    people: list[Person],
    registrations: list[Registration],
    merges: list[tuple[str, str, str, datetime]],
    truth: Truth,
    bad: list[dict[str, str]],
) -> None:
    folder = out / "truth"
    folder.mkdir(parents=True, exist_ok=True)
    _csv(folder / "people.csv", PEOPLE_COLUMNS, (_person_row(p) for p in people))
    _csv(
        folder / "records.csv",
        ("institution", "local_id", "person_id", "channel", "noise"),
        (
            (
                r.institution.code,
                r.local_id,
                r.person.person_id,
                r.institution.channel.value,
                ";".join(r.noise),
            )
            for r in registrations
        ),
    )
    _csv(
        folder / "merges.csv",
        ("institution", "surviving_local_id", "merged_local_id", "at"),
        ((i, s, m, at.isoformat()) for i, s, m, at in merges),
    )
    _csv(folder / "cohorts.csv", ("person_id", "cohort"), truth.cohorts)
    _csv(
        folder / "episodes.csv",
        ("kind", "person_id", "source", "start", "end", "detail"),
        (
            (e.kind, e.person_id, e.source, e.start.isoformat(), e.end.isoformat(), e.detail)
            for e in truth.episodes
        ),
    )
    _csv(
        folder / "cases.csv",
        (
            "person_id",
            "disease",
            "icd10",
            "class",
            "diagnosed_at",
            "district",
            "institution",
            "local_id",
            "outbreak_id",
        ),
        (
            (
                c.person_id,
                c.disease,
                c.icd10,
                c.klass,
                c.day.isoformat(),
                c.district,
                c.institution,
                c.local_id,
                c.outbreak_id,
            )
            for c in truth.cases
        ),
    )
    _csv(
        folder / "outbreaks.csv",
        ("outbreak_id", "district", "disease", "icd10", "start", "end", "extra_cases_per_day"),
        (
            (
                o.outbreak_id,
                o.district,
                o.disease,
                o.icd10,
                o.start.date().isoformat(),
                o.end.date().isoformat(),
                o.extra_cases,
            )
            for o in truth.outbreaks
        ),
    )
    _csv(
        folder / "bad_inputs.csv",
        ("file", "index", "kind", "expected_reason"),
        ((b["file"], b["index"], b["kind"], b["expected_reason"]) for b in bad),
    )


PEOPLE_COLUMNS = (
    "person_id", "family", "given", "family_pinyin", "given_pinyin", "sex", "birth_date",
    "id_number", "phone", "district", "address", "household_id", "twin_of",
)  # fmt: skip


def _person_row(p: Person) -> tuple[str, ...]:
    return (
        p.person_id, p.family, p.given, p.family_pinyin, p.given_pinyin, "M" if p.male else "F",
        p.birth_date.isoformat(), p.id_number or "", p.phone, p.address.district.code,
        p.address.text, p.household_id, p.twin_of or "",
    )  # fmt: skip


def _csv(path: Path, header: tuple[str, ...], rows: Iterable[Iterable[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
