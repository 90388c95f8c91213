"""The read model on SQLite: golden records, observations and alerts projected from events,
read back by person with filters and paging; offsets kept with the rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.testing import golden_example, writer_headers
from hs_edge.operations import Opened
from hs_edge.projector import Consumed, Projector, code_key
from hs_edge.store import Store

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
CATALOGUE = SchemaCatalogue.load(default_schema_root())
CODEC = Codec(CATALOGUE, Keyring.generate())
GLUCOSE = {"system": "http://loinc.org", "code": "2345-7", "display": None, "version": None}
CREATININE = {"system": "http://loinc.org", "code": "2160-0", "display": None, "version": None}


def example(name: str) -> dict[str, Any]:
    record = golden_example(CATALOGUE.get(name), default_schema_root())
    return CODEC.decode(CODEC.encode(name, record)).record


def observation(
    n: int, patient: str, coding: dict[str, Any], category: str = "LABORATORY"
) -> bytes:
    record = example("hs.clinical.Observation")
    record["observation_id"] = f"OBS-{n}"
    record["subject"]["local_patient_id"] = patient
    record["effective_at"] = T0 + timedelta(hours=n)
    record["category"] = category
    record["result"]["code"] = coding
    return CODEC.encode("hs.clinical.Observation", record)


def person(person_id: str, keys: list[str], status: str = "ACTIVE", into: str | None = None,
           at: datetime = T0) -> bytes:  # fmt: skip
    record = example("hs.identity.Person")
    record |= {"person_id": person_id, "record_keys": keys, "status": status, "merged_into": into}
    record["envelope"]["occurred_at"] = at
    return CODEC.encode("hs.identity.Person", record)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same tests on each backend of the read model."""
    if request.param == "sqlite":
        return Store.sqlite(tmp_path / "edge.db")
    return Store.postgres(request.getfixturevalue("postgres_schema"))


def key(patient: str) -> str:
    return CODEC.keyring.pseudonym("H330102", patient)


def feed(projector: Projector, topic: str, values: list[bytes], keys: list[str | None]) -> None:
    start = sum(projector.store.offsets(topic).values())
    projector.apply(
        Consumed(topic, 0, start + i, k, v, tuple(writer_headers(CODEC, v)))
        for i, (k, v) in enumerate(zip(keys, values, strict=True))
    )


def test_a_person_s_observations_filtered_and_paged(store: Store) -> None:
    projector = Projector(store, CODEC)
    feed(projector, "persons", [person("P1", [key("A"), key("B")])], [None])
    values = [
        observation(n, "A" if n % 2 else "B", GLUCOSE if n % 3 else CREATININE) for n in range(12)
    ]
    values.append(observation(99, "C", GLUCOSE))  # someone else
    feed(projector, "observations", values, [None] * len(values))
    golden, records = store.person("P1") or (b"", [])
    assert CODEC.decode(golden).record["person_id"] == "P1"
    assert records == sorted([key("A"), key("B")])

    glucose = [code_key(CODEC, GLUCOSE) or ""]
    first = store.observations(records, code_keys=glucose, limit=3)
    second = store.observations(records, code_keys=glucose, limit=3, cursor=first.next_cursor)
    rest = store.observations(records, code_keys=glucose, limit=10, cursor=second.next_cursor)
    ids = [CODEC.decode(v).record["observation_id"] for v in first.rows + second.rows + rest.rows]
    assert ids == [f"OBS-{n}" for n in range(12) if n % 3]
    assert rest.next_cursor is None
    window = store.observations(
        records, since=T0 + timedelta(hours=3), until=T0 + timedelta(hours=6)
    )
    assert [CODEC.decode(v).record["observation_id"] for v in window.rows] == [
        "OBS-3",
        "OBS-4",
        "OBS-5",
    ]
    assert store.observations(records, category="VITAL_SIGNS").rows == []


def test_sensitive_values_stay_sealed_at_rest(store: Store, tmp_path: Path) -> None:
    feed(Projector(store, CODEC), "observations", [observation(1, "A", GLUCOSE)], [None])
    rows = store.db.execute("SELECT * FROM observations").fetchall()
    stored = repr(rows).encode()
    assert b"OBS-1" in stored  # the check can see what is there
    assert b"2345-7" not in stored and b"MRN" not in stored and b"loinc" not in stored
    if store.mark == "?":  # and SQLite's files
        store.db.close()
        files = b"".join(path.read_bytes() for path in tmp_path.glob("edge.db*"))
        assert b"OBS-" in files and b"2345-7" not in files and b"loinc" not in files


def test_merges_and_moves_follow_the_newest_decision(store: Store) -> None:
    projector = Projector(store, CODEC)
    feed(projector, "persons", [
        person("P1", [key("A")], at=T0), person("P2", [key("B")], at=T0),
        person("P1", [key("A"), key("B")], at=T0 + timedelta(minutes=5)),
        person("P2", [], status="MERGED", into="P1", at=T0 + timedelta(minutes=5)),
        person("P3", [key("A")], at=T0 - timedelta(days=1)),  # an older decision arriving late
    ], [None] * 5)  # fmt: skip
    assert (store.person("P2") or (b"", []))[1] == sorted([key("A"), key("B")])  # followed
    assert store.person("P9") is None


def test_offsets_commit_with_the_rows_and_repeats_do_not_duplicate(store: Store) -> None:
    projector = Projector(store, CODEC)
    alert = CODEC.encode("hs.vitals.Alert", example("hs.vitals.Alert"))
    batch = [Consumed("alerts", 2, 40, None, alert), Consumed("alerts", 2, 41, None, alert)]
    projector.apply(batch)
    projector.apply(batch)  # redelivered after a crash before the consumer moved on
    assert store.offsets("alerts") == {2: 42}
    patient = example("hs.vitals.Alert")["patient_key"]
    assert len(store.alerts([patient])) == 1


def test_a_forged_cursor_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="cursor"):
        store.observations(["k"], cursor="not-a-cursor")


def test_a_person_s_diagnoses_follow_their_records(store: Store) -> None:
    projector = Projector(store, CODEC)
    feed(projector, "persons", [person("P1", [key("A")])], [None])
    diagnoses = []
    for n, patient in enumerate(["A", "A", "C"]):
        record = example("hs.clinical.Condition")
        record["condition_id"] = f"DG-{n}"
        record["subject"]["local_patient_id"] = patient
        record["recorded_at"] = T0 - timedelta(days=n)
        diagnoses.append(CODEC.encode("hs.clinical.Condition", record))
    feed(projector, "conditions", diagnoses, [None] * 3)
    feed(projector, "conditions", diagnoses[:1], [None])  # a repeat replaces, not adds
    _, records = store.person("P1") or (b"", [])
    listed = [CODEC.decode(e).record["condition_id"] for e in store.conditions(records)]
    assert listed == ["DG-1", "DG-0"]  # oldest first; C is someone else


def test_opened_events_are_kept_for_the_pages_asked_for_again() -> None:
    events = [observation(n, "A", GLUCOSE) for n in range(3)]
    opened = Opened(CODEC, size=2)
    first = opened(events[0])
    assert opened(events[0]) is first and first["observation_id"] == "OBS-0"
    opened(events[1]), opened(events[2])  # the oldest is let go
    assert opened(events[0]) is not first and opened(events[0]) == first
    none_kept = Opened(CODEC, size=0)
    assert none_kept(events[0]) is not none_kept(events[0])


def test_a_golden_record_without_the_empi_s_mac_is_not_projected(store: Store) -> None:
    """The forged Person of the security review: written to the topic with no MAC, or with the
    MAC of another record, it changes nothing."""
    projector = Projector(store, CODEC)
    genuine, forged = person("P1", [key("A")]), person("P1", [key("A"), key("B")])
    stolen = tuple(writer_headers(CODEC, genuine))
    projector.apply([
        Consumed("persons", 0, 0, "P1", genuine, stolen),
        Consumed("persons", 0, 1, "P1", forged),
        Consumed("persons", 0, 2, "P1", forged, stolen),
    ])  # fmt: skip
    assert (store.person("P1") or (b"", []))[1] == [key("A")]
    assert store.offsets("persons") == {0: 3}  # read, and passed over


def test_results_belong_to_the_patient_of_their_subject_not_of_their_kafka_key(
    store: Store,
) -> None:
    projector = Projector(store, CODEC)
    feed(projector, "persons", [person("P1", [key("A")]), person("P2", [key("B")])], [None] * 2)
    feed(projector, "observations", [observation(1, "B", GLUCOSE)], [key("A")])  # B's, keyed A
    assert len(store.observations([key("A")]).rows) == 0
    assert len(store.observations([key("B")]).rows) == 1
