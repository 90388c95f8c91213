from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from hs_synth.idcard import birth_date_of, check_character, is_male, is_valid
from hs_synth.people import Person, generate_people
from hs_synth.reference import BIRTH_REGIONS, DISTRICTS


@pytest.mark.parametrize(
    "number",
    [
        "11010519491231002X",
        "440524198001010013",
    ],  # GB 11643's worked example; an upgraded 15-digit number
)
def test_published_examples_pass_the_check(number: str) -> None:
    assert is_valid(number)
    assert check_character(number[:17]) == number[17]


@pytest.mark.parametrize(
    "number",
    ["110105194912310021", "11010519491331002X", "1101051949123100", "11010519491231002A"],
)
def test_wrong_check_character_date_or_length_fail(number: str) -> None:
    assert not is_valid(number)


@pytest.fixture(scope="module")
def people() -> list[Person]:
    return generate_people(20_000, seed=11)


def test_every_id_number_passes_and_agrees_with_its_person(people: list[Person]) -> None:
    regions = {d.code for d in DISTRICTS} | set(BIRTH_REGIONS)
    with_id = [p for p in people if p.id_number]
    assert len(with_id) > 0.9 * len(people)
    for person in with_id:
        assert person.id_number is not None
        assert is_valid(person.id_number), person.person_id
        assert birth_date_of(person.id_number) == person.birth_date
        assert is_male(person.id_number) == person.male
        assert person.id_number[:6] in regions


def test_some_people_have_no_id_number(people: list[Person]) -> None:
    assert 0.02 < sum(p.id_number is None for p in people) / len(people) < 0.07


def test_households_share_an_address_and_often_a_phone(people: list[Person]) -> None:
    households: dict[str, list[Person]] = defaultdict(list)
    for person in people:
        households[person.household_id].append(person)
    shared_phone = 0
    for members in households.values():
        assert len({m.address for m in members}) == 1
        shared_phone += len(members) - len({m.phone for m in members})
    assert shared_phone > 0.1 * (len(people) - len(households))


def test_twins_share_birth_date_household_and_surname(people: list[Person]) -> None:
    by_id = {p.person_id: p for p in people}
    twins = [p for p in people if p.twin_of]
    assert twins
    for twin in twins:
        sibling = by_id[twin.twin_of or ""]
        assert (twin.birth_date, twin.household_id, twin.family) == (
            sibling.birth_date,
            sibling.household_id,
            sibling.family,
        )


def test_surnames_are_skewed_like_china_s(people: list[Person]) -> None:
    top = Counter(p.family for p in people).most_common(3)
    assert {name for name, _ in top} <= {"王", "李", "张", "刘", "陈"}
    assert sum(count for _, count in top) / len(people) > 0.15


def test_same_seed_same_people_other_seed_other_people() -> None:
    assert generate_people(500, seed=3) == generate_people(500, seed=3)
    assert generate_people(500, seed=3) != generate_people(500, seed=4)
