"""Decisions written as PersonLink records rebuild the same index; the model survives JSON."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime

from hs_common.envelope import new_envelope
from hs_empi.index import PersonIndex
from hs_empi.links import MERGED, UNLINKED, decided_record, link_record, standard_of
from hs_empi.model import Model, estimate
from hs_empi.service import DEFAULT_MODEL
from hs_empi.standardize import IdentityFields, standardize

FAMILIES = ["王", "李", "张", "刘"]
GIVENS = ["伟", "芳", "小明", "建国", "丽"]


def test_links_replayed_into_an_empty_index_rebuild_it_exactly() -> None:
    rng = random.Random(3)
    model = Model.from_json(json.loads(DEFAULT_MODEL.read_text()))
    index = PersonIndex(model)
    envelope = new_envelope("H1", "empi", datetime(2026, 1, 1, tzinfo=UTC))
    links = []
    key_of: dict[str, str] = {}
    for n in range(300):
        fields = IdentityFields(
            f"H{n % 3}", f"L{n // 2}", family=rng.choice(FAMILIES), given=rng.choice(GIVENS),
            birth_date=date(1960 + n % 7, 1 + n % 12, 1 + n % 5), sex="MF"[n % 2],
            phones=(f"1390000{n % 40:04d}",), district="330105",
        )  # fmt: skip
        record = standardize(fields)
        key_of[record.record_id] = f"key-{record.record_id}"
        decision = index.add(record)
        links.append(link_record(envelope, decision, record, key_of[record.record_id], key_of))
        if n % 50 == 49:  # a source merge of two records
            survivor, prior = record.record_id, sorted(index.records)[n % len(index.records)]
            person, merged = index.merge(survivor, prior)
            links.append(
                decided_record(
                    envelope, MERGED, index.records[prior], key_of[prior], person, merged, "source"
                )
            )
        if n % 70 == 69:  # a reviewer separates a record from its person
            unlinked = sorted(index.records)[n % len(index.records)]
            separated_from = index.person_of[unlinked]
            person, merged = index.unlink(unlinked)
            links.append(
                decided_record(
                    envelope,
                    UNLINKED,
                    index.records[unlinked],
                    key_of[unlinked],
                    person,
                    merged,
                    "staff-1",
                    "not the same person",
                    separated_from,
                )
            )

    rebuilt = PersonIndex(model)
    for link in links:
        apart = link["review_person_id"] if link["action"] == UNLINKED else None
        rebuilt.restore(
            standard_of(link["record"]), link["person_id"], tuple(link["merged_person_ids"]), apart
        )
    assert rebuilt.person_of == index.person_of
    assert rebuilt.members == index.members
    assert rebuilt.records == index.records
    assert rebuilt.kept_apart == index.kept_apart


def test_a_model_written_as_json_reads_back_the_same() -> None:
    records = [
        standardize(
            IdentityFields(
                "H1", str(n), family="王", given=GIVENS[n % 5], birth_date=date(1980, 1, 1 + n % 28)
            )
        )
        for n in range(200)
    ]
    model = estimate(records, random_pairs=5000)
    again = Model.from_json(json.loads(json.dumps(model.to_json())))
    assert again.weight(records[0], records[1]) == model.weight(records[0], records[1])
    assert (
        again.score(records[0], records[28]).evidence
        == model.score(records[0], records[28]).evidence
    )
