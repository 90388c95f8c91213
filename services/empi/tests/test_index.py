"""The person index: decisions, evidence, the same-ID rule, merges and separations."""

from __future__ import annotations

import random
from datetime import date

import pytest

from hs_empi.compare import COMPARISONS
from hs_empi.index import LINKED, NEW_PERSON, REVIEW, PersonIndex
from hs_empi.model import Model, ModelError, estimate
from hs_empi.standardize import IdentityFields, Standard, standardize

SOMEONE_ELSE: dict[str, object] = {
    "family": "李", "given": "芳", "birth_date": date(1990, 1, 2), "sex": "F",
    "phones": ("13700000000",),
}  # fmt: skip
FAMILIES = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "欧阳", "单"]
GIVENS = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "明", "小红", "建国"]


def person(n: int, rng: random.Random) -> IdentityFields:
    born = date(1940 + rng.randrange(70), 1 + rng.randrange(12), 1 + rng.randrange(28))
    return IdentityFields(
        "H1", f"L{n}", family=rng.choice(FAMILIES), given=rng.choice(GIVENS),
        birth_date=born, sex=rng.choice("MF"), phones=(f"139{rng.randrange(10**8):08d}",),
        district=f"3301{rng.randrange(10, 20)}",
    )  # fmt: skip


@pytest.fixture(scope="module")
def model() -> Model:
    rng = random.Random(7)
    records = []
    for n in range(3000):
        fields = person(n, rng)
        records.append(standardize(fields))
        if n % 3 == 0:  # the same person registered again elsewhere, with a typo in the phone
            given = (
                fields.given
                if n % 2
                else {"伟": "玮", "静": "婧", "丽": "立"}.get(fields.given or "", fields.given)
            )
            again = IdentityFields(
                "H2", f"M{n}", family=fields.family, given=given, birth_date=fields.birth_date,
                sex=fields.sex, phones=(fields.phones[0][:-1] + "0",), district=fields.district,
            )  # fmt: skip
            records.append(standardize(again))
    return estimate(records, random_pairs=50_000)


def record(local: str, **overrides: object) -> Standard:
    fields: dict[str, object] = {
        "family": "欧阳", "given": "建国", "birth_date": date(1971, 5, 4), "sex": "M",
        "phones": ("13912345678",), "district": "330105",
    }  # fmt: skip
    fields.update(overrides)
    institution, local_id = local.split(":")
    return standardize(IdentityFields(institution, local_id, **fields))  # type: ignore[arg-type]


def test_em_learns_that_agreement_is_evidence(model: Model) -> None:
    names = [c.name for c in COMPARISONS]
    birth = names.index("birth_date")
    assert model.m[birth][1] > 0.5  # true pairs mostly agree on the birth date
    assert model.u[birth][1] < 0.01  # random pairs rarely do
    assert 0 < model.prior < 0.01


def test_a_record_matching_a_person_is_linked_with_its_evidence(model: Model) -> None:
    index = PersonIndex(model)
    first = index.add(record("H1:1"))
    second = index.add(record("H2:9", given="建囯", phones=("13912345679",)))  # typo in both
    assert first.action == NEW_PERSON
    assert (second.action, second.person_id) == (LINKED, first.person_id)
    evidence = {e.comparison: e.level for e in second.evidence}
    assert evidence["birth_date"] == "exact"
    assert evidence["contact"] == "same_district"  # the phone differs by a digit
    assert second.matched_record == "H1:1"


def test_a_different_person_starts_a_new_one(model: Model) -> None:
    index = PersonIndex(model)
    first = index.add(record("H1:1"))
    other = index.add(
        record(
            "H2:2",
            **SOMEONE_ELSE,
        )
    )
    assert other.action == NEW_PERSON and other.person_id != first.person_id
    assert index.person_count() == 2


def test_a_doubtful_record_goes_to_review(model: Model) -> None:
    index = PersonIndex(model)
    first = index.add(record("H1:1"))
    doubtful = index.add(record("H2:2", given="伟", phones=(), district=None, sex=None))
    assert doubtful.action in (REVIEW, NEW_PERSON)
    if doubtful.action == REVIEW:
        assert doubtful.review_person == first.person_id
    assert doubtful.person_id != first.person_id


def test_the_same_valid_id_number_is_always_one_person(model: Model) -> None:
    index = PersonIndex(model)
    first = index.add(record("H1:1", resident_id="11010519491231002X"))
    second = index.add(
        record(
            "H2:2",
            resident_id="11010519491231002X",
            family="李",
            given="芳",
            phones=(),
            birth_date=None,
        )
    )
    assert (second.action, second.person_id) == (LINKED, first.person_id)
    assert "id_forced_link" in second.flags


def test_a_record_bridging_two_persons_merges_them_unless_a_reviewer_kept_them_apart(
    model: Model,
) -> None:
    index = PersonIndex(model)
    a = index.add(record("H1:1", resident_id="11010519491231002X", phones=()))
    b = index.add(record("H2:1", phones=("13800000000",), birth_date=date(1971, 5, 5)))
    assert a.person_id != b.person_id or b.action == LINKED
    index.unlink("H2:1")
    separated = index.person_of["H2:1"]
    assert separated != index.person_of["H1:1"]
    merged_person, folded = index.merge("H1:1", "H2:1")  # a source's A40 overrides the separation
    assert index.person_of["H2:1"] == index.person_of["H1:1"] == merged_person
    assert folded == (separated,)


def test_a_no_link_on_a_suggested_match_keeps_the_two_persons_apart(model: Model) -> None:
    index = PersonIndex(model)
    index.add(record("H1:1", resident_id="11010519491231002X", phones=()))
    index.add(record("H2:1", phones=("13800000000",), birth_date=date(1971, 5, 5)))
    first, second = index.person_of["H1:1"], index.person_of["H2:1"]
    assert first != second
    assert index.unlink("H2:1", apart_from="H1:1") == (second, ())
    assert index.person_of["H2:1"] == second  # nothing moved
    assert frozenset({first, second}) in index.kept_apart
    # a later record like both no longer bridges them
    index.add(record("H3:1", resident_id="11010519491231002X", phones=("13800000000",)))
    assert index.person_of["H1:1"] != index.person_of["H2:1"]


def test_an_update_moves_the_record_but_keeps_one_person_per_record(model: Model) -> None:
    index = PersonIndex(model)
    index.add(record("H1:1"))
    index.add(record("H2:2"))
    index.add(
        record(
            "H2:2",
            **SOMEONE_ELSE,
            district="110101",
        )
    )
    assert sum("H2:2" in members for members in index.members.values()) == 1
    assert index.person_of["H2:2"] != index.person_of["H1:1"]


def test_a_record_with_no_usable_identifier_is_a_low_confidence_new_person(model: Model) -> None:
    index = PersonIndex(model)
    index.add(record("H1:1"))
    decision = index.add(
        standardize(IdentityFields("H1", "x", family="欧阳", given="建国", district="330105"))
    )
    assert decision.action == NEW_PERSON
    assert {"no_usable_identifier", "low_confidence"} <= set(decision.flags)


def test_twins_with_their_own_valid_ids_are_never_linked_unasked(model: Model) -> None:
    index = PersonIndex(model)
    first = index.add(record("H1:1", given="立建", resident_id="11010519491231002X", sex="F"))
    twin = index.add(record("H1:2", given="立康", resident_id="110105194912310046", sex="F"))
    assert twin.person_id != first.person_id
    assert twin.action in (NEW_PERSON, REVIEW)
    if twin.action == REVIEW:
        assert "id_conflict" in twin.flags


def test_siblings_born_together_without_ids_go_to_review_not_to_one_person(model: Model) -> None:
    index = PersonIndex(model)
    first = index.add(record("H1:1", given="立建"))
    sibling = index.add(record("H1:2", given="春强"))  # same family, birth date, phone, district
    assert sibling.person_id != first.person_id
    if sibling.action == REVIEW:
        assert "possible_twin" in sibling.flags
        assert sibling.review_person == first.person_id


def test_a_model_estimated_for_other_comparisons_is_refused_clearly() -> None:
    with pytest.raises(ModelError, match="estimate it again"):
        Model.from_json({"prior": 0.001, "comparisons": {"id_number": {}}})


@pytest.mark.parametrize("seed", range(5))
def test_invariants_hold_through_random_registrations_updates_merges_and_unlinks(
    model: Model, seed: int
) -> None:
    rng = random.Random(seed)
    index = PersonIndex(model)
    ids = ["11010519491231002X", "110105194912310046", None, None]
    for step in range(600):
        local = f"H{rng.randrange(3)}:{rng.randrange(60)}"
        operation = rng.random()
        if operation < 0.8 or len(index.records) < 2:
            index.add(
                record(
                    local, family=rng.choice(FAMILIES[:3]), given=rng.choice(GIVENS[:4]),
                    birth_date=date(1970, 1, 1 + rng.randrange(3)), resident_id=rng.choice(ids),
                )
            )  # fmt: skip
        elif operation < 0.9:
            a, b = rng.sample(sorted(index.records), 2)
            index.merge(a, b)
        else:
            index.unlink(rng.choice(sorted(index.records)))
        # a source record belongs to exactly one person at a time
        holders = [p for p, members in index.members.items() for r in members]
        assert sorted(holders) == sorted(index.person_of[r] for r in index.records), step
        assert all(members for members in index.members.values())
        assert set(index.person_of) == set(index.records)
    # the same valid ID is one person, unless a reviewer separated them
    by_id: dict[str, set[str]] = {}
    for record_id, standard in index.records.items():
        if standard.id_valid and standard.id_number:
            by_id.setdefault(standard.id_number, set()).add(index.person_of[record_id])
    for persons in by_id.values():
        for a in persons:
            for b in persons - {a}:
                assert frozenset({a, b}) in index.kept_apart
