"""Clinical courses with known truth: diabetes (labs and CGM with hypoglycaemia at known
times), chronic kidney disease (rising creatinine), hypertension (cuff readings with crises),
acutely ill inpatients crossing NEWS2 thresholds, and notifiable infections with seasonal
baselines per district plus injected outbreaks."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from hs_synth import institutions as inst
from hs_synth.events import Admission, DeviceReading, Diagnosis, Feed, LabResult, VitalSigns
from hs_synth.reference import NOTIFIABLE_DISEASES, NotifiableDisease
from hs_synth.registrations import Registration

CGM_INTERVAL = timedelta(minutes=5)
HYPO_L1, HYPO_L2, HYPER = 3.9, 3.0, 13.9


@dataclass(frozen=True)
class CourseConfig:
    start: datetime
    days: int
    diabetes_rate: float = 0.08  # of people aged 35 and over
    ckd_rate: float = 0.03
    hypertension_rate: float = 0.15
    cgm_patients: int = 20
    cgm_days: int = 14
    cuff_patients: int = 20
    oximeter_patients: int = 10
    oximeter_days: int = 3
    inpatients: int = 30
    outbreaks: int = 2
    infection_scale: float = 1.0


@dataclass(frozen=True)
class Episode:
    """A stretch of time when a rule should fire (or, for kind *_unconfirmed, should not)."""

    kind: str
    person_id: str
    source: str  # device id or institution:local id
    start: datetime
    end: datetime
    detail: str


@dataclass(frozen=True)
class Case:
    person_id: str
    disease: str
    icd10: str
    klass: str
    day: datetime
    district: str
    institution: str
    local_id: str
    outbreak_id: str


@dataclass(frozen=True)
class Outbreak:
    outbreak_id: str
    district: str
    disease: str
    icd10: str
    start: datetime
    end: datetime
    extra_cases: int


@dataclass
class Truth:
    cohorts: list[tuple[str, str]]
    episodes: list[Episode]
    cases: list[Case]
    outbreaks: list[Outbreak]


def clinical_courses(
    registrations: list[Registration], config: CourseConfig, seed: int
) -> tuple[Feed, Truth]:
    rng = random.Random(f"courses:{seed}")
    feed = Feed()
    truth = Truth([], [], [], [])
    by_person: dict[str, list[Registration]] = defaultdict(list)
    for r in registrations:
        by_person[r.person.person_id].append(r)
    people = sorted(by_person)
    end = config.start + timedelta(days=config.days)

    diabetics, ckd, hypertensive = [], [], []
    for person_id in people:
        first = by_person[person_id][0]
        age = first.person.age_on(config.start.date())
        if age >= 35 and rng.random() < config.diabetes_rate:
            diabetics.append(person_id)
        if age >= 45 and rng.random() < config.ckd_rate:
            ckd.append(person_id)
        if age >= 30 and rng.random() < config.hypertension_rate:
            hypertensive.append(person_id)
    for cohort, members, icd10, display in (
        ("diabetes", diabetics, "E11.9", "2型糖尿病"),
        ("ckd", ckd, "N18.3", "慢性肾脏病3期"),
        ("hypertension", hypertensive, "I10", "原发性高血压"),
    ):
        for person_id in members:
            truth.cohorts.append((person_id, cohort))
            r = _clinical_registration(rng, by_person[person_id])
            at = _random_time(rng, config.start, config.days)
            feed.diagnoses.append(Diagnosis(r, icd10, display, at, _visit_id(rng, r)))

    for person_id in diabetics:
        _diabetes_labs(
            rng, _lab_registration(rng, by_person[person_id], "hba1c"), config, end, feed
        )
    for person_id in ckd:
        _ckd_labs(
            rng, _lab_registration(rng, by_person[person_id], "creatinine"), config, end, feed
        )

    hospital_patients = [
        p for p in people if any(r.institution in _HOSPITALS for r in by_person[p])
    ]
    for person_id in rng.sample(diabetics, min(config.cgm_patients, len(diabetics))):
        _cgm_stream(rng, _hospital_registration(rng, by_person[person_id]), config, feed, truth)
    for person_id in rng.sample(hypertensive, min(config.cuff_patients, len(hypertensive))):
        _cuff_stream(rng, _hospital_registration(rng, by_person[person_id]), config, feed, truth)
    for person_id in rng.sample(
        hospital_patients, min(config.oximeter_patients, len(hospital_patients))
    ):
        _oximeter_stream(
            rng, _hospital_registration(rng, by_person[person_id]), config, feed, truth
        )
    for person_id in rng.sample(hospital_patients, min(config.inpatients, len(hospital_patients))):
        _inpatient_stay(rng, _hospital_registration(rng, by_person[person_id]), config, feed, truth)

    _infections(rng, by_person, config, feed, truth)
    return feed, truth


_HOSPITALS = (inst.HZ01, inst.SH02, inst.BJ03)


def _clinical_registration(rng: random.Random, registrations: list[Registration]) -> Registration:
    return rng.choice(registrations)


def _lab_registration(
    rng: random.Random, registrations: list[Registration], test: str
) -> Registration:
    able = [r for r in registrations if test in r.institution.labs or r.institution is inst.F01]
    return rng.choice(able or registrations)


def _hospital_registration(rng: random.Random, registrations: list[Registration]) -> Registration:
    hospital = [r for r in registrations if r.institution in _HOSPITALS]
    return rng.choice(hospital or registrations)


def _random_time(rng: random.Random, start: datetime, days: int) -> datetime:
    return start + timedelta(seconds=rng.randrange(days * 86400))


def _visit_id(rng: random.Random, r: Registration) -> str:
    return f"V{r.institution.code}{rng.randrange(10**10):010d}"


def _diabetes_labs(
    rng: random.Random, r: Registration, config: CourseConfig, end: datetime, feed: Feed
) -> None:
    hba1c = rng.uniform(6.8, 10.5)
    trend = rng.uniform(-0.4, 0.3)  # % per quarter
    at = config.start + timedelta(days=rng.randint(0, 29), hours=rng.randint(8, 11))
    while at < end:
        order = _visit_id(rng, r)
        if "hba1c" in r.institution.labs or r.institution is inst.F01:
            feed.labs.append(LabResult(r, "hba1c", round(hba1c, 1), at, order))
        if "glucose" in r.institution.labs or r.institution is inst.F01:
            fasting = max(4.0, rng.gauss(hba1c * 1.2 - 1.0, 0.8))
            feed.labs.append(LabResult(r, "glucose", round(fasting, 2), at, order))
        hba1c = max(5.5, hba1c + trend / 3 + rng.gauss(0, 0.1))
        at += timedelta(days=rng.randint(25, 35))


def _ckd_labs(
    rng: random.Random, r: Registration, config: CourseConfig, end: datetime, feed: Feed
) -> None:
    creatinine = rng.uniform(110, 180)
    monthly_rise = rng.choice((0.01, 0.02, 0.08))  # 0.08: a rapid decliner
    at = config.start + timedelta(days=rng.randint(0, 20), hours=rng.randint(8, 11))
    while at < end:
        if "creatinine" in r.institution.labs or r.institution is inst.F01:
            feed.labs.append(LabResult(r, "creatinine", round(creatinine), at, _visit_id(rng, r)))
        creatinine *= 1 + monthly_rise + rng.gauss(0, 0.02)
        at += timedelta(days=rng.randint(26, 34))


def _device_ref(r: Registration) -> str:
    return f"{r.institution.code}:{r.local_id}"


def _cgm_stream(
    rng: random.Random, r: Registration, config: CourseConfig, feed: Feed, truth: Truth
) -> None:
    """Readings every 5 minutes; hypoglycaemia only inside injected episodes, sustained
    hyperglycaemia only inside injected ones; one sensor gap; a few duplicates."""
    device = f"CGM-{rng.getrandbits(24):06X}"
    person = r.person.person_id
    sensor_start = config.start + timedelta(
        days=rng.randint(0, max(0, config.days - config.cgm_days))
    )
    steps = config.cgm_days * 288
    mean = rng.uniform(7.0, 9.5)
    episodes: list[tuple[int, int, float, str]] = []  # (first step, last step, nadir, kind)
    for _ in range(rng.randint(2, 4)):
        first = rng.randrange(12, steps - 40)
        length = rng.randint(4, 18)  # 20-90 minutes below threshold
        level2 = rng.random() < 0.35
        if all(abs(first - e[0]) > 60 for e in episodes):
            nadir = rng.uniform(2.3, 2.9) if level2 else rng.uniform(3.2, 3.7)
            episodes.append(
                (
                    first,
                    first + length,
                    nadir,
                    "hypoglycaemia_level2" if level2 else "hypoglycaemia_level1",
                )
            )
    hyper_first = rng.randrange(12, steps - 60)
    if all(abs(hyper_first - e[0]) > 60 for e in episodes):
        episodes.append(
            (
                hyper_first,
                hyper_first + rng.randint(12, 36),
                rng.uniform(15.5, 19.0),
                "hyperglycaemia",
            )
        )
    gap_first = rng.randrange(20, steps - 40)
    gap = range(gap_first, gap_first + rng.randint(6, 30))
    if any(e[0] - 24 <= gap.stop and gap.start <= e[1] + 24 for e in episodes):
        gap = range(0)
    for first, last, nadir, kind in episodes:
        at0 = sensor_start + CGM_INTERVAL * first
        threshold = {"hyperglycaemia": f">{HYPER}", "hypoglycaemia_level2": f"<{HYPO_L2}"}.get(
            kind, f"<{HYPO_L1}"
        )
        truth.episodes.append(
            Episode(
                kind,
                person,
                device,
                at0,
                sensor_start + CGM_INTERVAL * last,
                f"{threshold} mmol/L, extreme {nadir:.1f}",
            )
        )
    if gap:
        truth.episodes.append(
            Episode(
                "sensor_gap",
                person,
                device,
                sensor_start + CGM_INTERVAL * gap.start,
                sensor_start + CGM_INTERVAL * gap.stop,
                "no readings",
            )
        )
    patient_ref = _device_ref(r)
    for step in range(steps):
        if step in gap or rng.random() < 0.02:
            continue
        at = sensor_start + CGM_INTERVAL * step
        minute_of_day = at.hour * 60 + at.minute
        value = (
            mean + sum(_meal(minute_of_day, meal) for meal in (450, 720, 1110)) + rng.gauss(0, 0.25)
        )
        value = min(max(value, 4.4), 12.5)
        for first, last, extreme, kind in episodes:
            if first - 3 <= step <= last + 3:
                inside = first <= step <= last
                if kind == "hyperglycaemia":
                    value = extreme + rng.gauss(0, 0.3) if inside else max(value, 12.0)
                else:
                    ceiling = (HYPO_L2 if kind == "hypoglycaemia_level2" else HYPO_L1) - 0.1
                    value = (
                        min(extreme + rng.uniform(0, 0.4), ceiling) if inside else min(value, 4.6)
                    )
        reading = DeviceReading(device, patient_ref, "glucose", round(value, 1), "mmol/L", at)
        feed.readings.append(reading)
        if rng.random() < 0.005:
            feed.readings.append(reading)  # re-sent by the phone app


def _meal(minute_of_day: int, meal_minute: int) -> float:
    after = minute_of_day - meal_minute
    if after < 0 or after > 240:
        return 0.0
    return 3.5 * (after / 45) * math.exp(1 - after / 45)


def _cuff_stream(
    rng: random.Random, r: Registration, config: CourseConfig, feed: Feed, truth: Truth
) -> None:
    """Morning and evening readings; crises are confirmed by a repeat 5 minutes later, and one
    isolated spike is not (no alert should follow it)."""
    device = f"BPC-{rng.getrandbits(24):06X}"
    person = r.person.person_id
    patient_ref = _device_ref(r)
    systolic_mean = rng.uniform(138, 158)
    crisis_days = set(rng.sample(range(config.days), k=min(2, config.days)))
    spike_day = rng.randrange(config.days)
    for day in range(config.days):
        for hour in (7, 20):
            at = config.start + timedelta(days=day, hours=hour, minutes=rng.randint(0, 40))
            systolic = round(rng.gauss(systolic_mean, 8))
            diastolic = round(systolic * 0.62 + rng.gauss(0, 4))
            systolic, diastolic = min(systolic, 175), min(diastolic, 108)
            readings = [(at, systolic, diastolic)]
            if hour == 20 and day in crisis_days:
                readings = [(at, rng.randint(185, 210), rng.randint(112, 128))]
                readings.append(
                    (at + timedelta(minutes=5), rng.randint(183, 205), rng.randint(105, 126))
                )
                truth.episodes.append(
                    Episode(
                        "bp_crisis",
                        person,
                        device,
                        at,
                        at + timedelta(minutes=5),
                        ">180/120 confirmed",
                    )
                )
            elif hour == 7 and day == spike_day and day not in crisis_days:
                readings = [
                    (at, rng.randint(185, 200), rng.randint(100, 115)),
                    (at + timedelta(minutes=5), systolic, diastolic),
                ]
                truth.episodes.append(
                    Episode(
                        "bp_spike_unconfirmed",
                        person,
                        device,
                        at,
                        at + timedelta(minutes=5),
                        "repeat normal",
                    )
                )
            for when, sbp, dbp in readings:
                feed.readings.append(
                    DeviceReading(device, patient_ref, "systolic_bp", sbp, "mm[Hg]", when)
                )
                feed.readings.append(
                    DeviceReading(device, patient_ref, "diastolic_bp", dbp, "mm[Hg]", when)
                )
                feed.readings.append(
                    DeviceReading(
                        device, patient_ref, "heart_rate", rng.randint(62, 88), "/min", when
                    )
                )


def _oximeter_stream(
    rng: random.Random, r: Registration, config: CourseConfig, feed: Feed, truth: Truth
) -> None:
    """SpO2 and pulse every 5 minutes; one sustained desaturation below 92 % (target 94-98 %,
    NEWS2 scale 1) at a recorded time, and loose-sensor artefacts (SpO2 over 100 %, pulse 0)
    that must be discarded rather than alerted on."""
    device = f"OXI-{rng.getrandbits(24):06X}"
    person = r.person.person_id
    patient_ref = _device_ref(r)
    start = config.start + timedelta(
        days=rng.randint(0, max(0, config.days - config.oximeter_days))
    )
    steps = config.oximeter_days * 288
    low_first = rng.randrange(24, steps - 30)
    low = range(low_first, low_first + rng.randint(4, 12))
    artefacts = {rng.randrange(steps) for _ in range(3)} - set(range(low.start - 6, low.stop + 6))
    truth.episodes.append(
        Episode(
            "spo2_low",
            person,
            device,
            start + CGM_INTERVAL * low.start,
            start + CGM_INTERVAL * (low.stop - 1),
            "<92 % on scale 1",
        )
    )
    for step in range(steps):
        at = start + CGM_INTERVAL * step
        if step in artefacts:
            feed.readings.append(DeviceReading(device, patient_ref, "spo2", 140.0, "%", at))
            feed.readings.append(DeviceReading(device, patient_ref, "heart_rate", 0.0, "/min", at))
            truth.episodes.append(
                Episode("artefact", person, device, at, at, "SpO2 140 %, pulse 0")
            )
            continue
        spo2 = rng.randint(86, 90) if step in low else rng.randint(95, 99)
        feed.readings.append(DeviceReading(device, patient_ref, "spo2", float(spo2), "%", at))
        feed.readings.append(
            DeviceReading(device, patient_ref, "heart_rate", float(rng.randint(64, 92)), "/min", at)
        )


def _inpatient_stay(
    rng: random.Random, r: Registration, config: CourseConfig, feed: Feed, truth: Truth
) -> None:
    """Vital signs every 4 hours; half the patients deteriorate from a known time."""
    admitted = _random_time(rng, config.start, max(1, config.days - 7))
    visit = _visit_id(rng, r)
    feed.admissions.append(Admission(r, admitted, visit, rng.choice(("NK1", "WK2", "HX3"))))
    sets = rng.randint(18, 42)
    deteriorates_at = rng.randint(6, sets - 6) if rng.random() < 0.5 else None
    source = f"{r.institution.code}:{r.local_id}"
    crossed: set[str] = set()
    for index in range(sets):
        at = admitted + timedelta(hours=4 * index + 1)
        worse = 0 if deteriorates_at is None else max(0, index - deteriorates_at + 1)
        signs = VitalSigns(
            registration=r,
            at=at,
            respiratory_rate=min(30, rng.randint(14, 18) + 3 * worse),
            spo2=max(85, rng.randint(96, 99) - 2 * worse),
            on_oxygen=worse >= 3,
            systolic=max(85, rng.randint(118, 135) - 8 * worse),
            diastolic=rng.randint(70, 85),
            pulse=min(140, rng.randint(68, 84) + 12 * worse),
            consciousness="A" if worse < 4 else "C",
            temperature=round(min(39.6, rng.uniform(36.4, 37.2) + 0.5 * worse), 1),
            visit_id=visit,
            admitted_at=admitted,
        )
        feed.vitals.append(signs)
        score, single_three = news2(signs)
        for kind, reached in (
            ("news2_single_3", single_three),
            ("news2_urgent", score >= 5),
            ("news2_emergency", score >= 7),
        ):
            if reached and kind not in crossed:
                crossed.add(kind)
                truth.episodes.append(
                    Episode(kind, r.person.person_id, source, at, at, f"aggregate {score}")
                )


def news2(v: VitalSigns) -> tuple[int, bool]:
    """NEWS2 aggregate (SpO2 scale 1) and whether any single parameter scored 3 (RCP 2017)."""
    rr = (
        3
        if v.respiratory_rate <= 8
        else 1
        if v.respiratory_rate <= 11
        else 0
        if v.respiratory_rate <= 20
        else 2
        if v.respiratory_rate <= 24
        else 3
    )
    spo2 = 3 if v.spo2 <= 91 else 2 if v.spo2 <= 93 else 1 if v.spo2 <= 95 else 0
    air = 2 if v.on_oxygen else 0
    sbp = (
        3
        if v.systolic <= 90
        else 2
        if v.systolic <= 100
        else 1
        if v.systolic <= 110
        else 0
        if v.systolic <= 219
        else 3
    )
    pulse = (
        3
        if v.pulse <= 40
        else 1
        if v.pulse <= 50
        else 0
        if v.pulse <= 90
        else 1
        if v.pulse <= 110
        else 2
        if v.pulse <= 130
        else 3
    )
    conscious = 0 if v.consciousness == "A" else 3
    t = v.temperature
    temp = 3 if t <= 35.0 else 1 if t <= 36.0 else 0 if t <= 38.0 else 1 if t <= 39.0 else 2
    parts = (rr, spo2, air, sbp, pulse, conscious, temp)
    return sum(parts), 3 in parts


def _seasonal(disease: NotifiableDisease, day: datetime) -> float:
    if disease.peak_month is None:
        return 1.0
    phase = 2 * math.pi * (day.timetuple().tm_yday - (disease.peak_month - 0.5) * 30.4) / 365
    return 1 + 0.8 * math.cos(phase)


def _infections(
    rng: random.Random,
    by_person: dict[str, list[Registration]],
    config: CourseConfig,
    feed: Feed,
    truth: Truth,
) -> None:
    residents: dict[str, list[str]] = defaultdict(list)
    for person_id, registrations in sorted(by_person.items()):
        residents[registrations[0].person.address.district.code].append(person_id)
    reported = [d for d in NOTIFIABLE_DISEASES if d.daily_rate_per_100k > 0]
    outbreak_diseases = [d for d in reported if d.name in ("手足口病", "细菌性痢疾", "流行性感冒")]
    districts = sorted(residents)
    for number in range(config.outbreaks):
        disease = outbreak_diseases[number % len(outbreak_diseases)]
        start = config.start + timedelta(
            days=rng.randint(min(20, config.days - 1), max(20, config.days - 12))
        )
        truth.outbreaks.append(
            Outbreak(
                f"OB{number + 1}",
                rng.choice(districts),
                disease.name,
                disease.icd10,
                start,
                start + timedelta(days=rng.randint(6, 10)),
                rng.randint(3, 6),
            )
        )
    # Synthetic populations are small: rates are per 100,000 real residents, and each synthetic
    # resident stands for 10 real ones, so daily counts per district stay in the range EARS sees.
    per_person = config.infection_scale * 10 / 100_000
    for offset in range(config.days):
        day = config.start + timedelta(days=offset)
        for district in districts:
            people = residents[district]
            for disease in reported:
                expected = (
                    disease.daily_rate_per_100k * per_person * len(people) * _seasonal(disease, day)
                )
                count = _poisson(rng, expected)
                outbreak_id = ""
                for outbreak in truth.outbreaks:
                    if (
                        outbreak.district == district
                        and outbreak.disease == disease.name
                        and outbreak.start <= day < outbreak.end
                    ):
                        count += outbreak.extra_cases + _poisson(rng, 1.0)
                        outbreak_id = outbreak.outbreak_id
                for _ in range(count):
                    person_id = rng.choice(people)
                    r = _hospital_registration(rng, by_person[person_id])
                    at = day + timedelta(hours=rng.randint(8, 20), minutes=rng.randint(0, 59))
                    feed.diagnoses.append(
                        Diagnosis(r, disease.icd10, disease.icd10_display, at, _visit_id(rng, r))
                    )
                    truth.cases.append(
                        Case(
                            person_id,
                            disease.name,
                            disease.icd10,
                            disease.klass,
                            at,
                            district,
                            r.institution.code,
                            r.local_id,
                            outbreak_id,
                        )
                    )


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count
