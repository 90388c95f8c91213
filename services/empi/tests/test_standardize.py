"""Standardization of Chinese identity fields."""

from __future__ import annotations

from datetime import date

import pytest

from hs_empi.standardize import (
    IdentityFields,
    e164,
    resident_id,
    standard_name,
    standardize,
    upgrade_15,
)


def test_the_standards_worked_example_is_valid_and_read() -> None:
    parsed = resident_id("11010519491231002X")
    assert parsed is not None
    assert parsed.valid
    assert (parsed.birth_date, parsed.sex) == (date(1949, 12, 31), "F")


def test_a_wrong_check_digit_or_impossible_date_is_invalid() -> None:
    wrong_digit = resident_id("110105194912310021")
    impossible = resident_id("110105194902300028")
    assert wrong_digit is not None and not wrong_digit.valid
    assert impossible is not None and not impossible.valid
    assert resident_id("not a number") is None


def test_first_generation_numbers_are_upgraded() -> None:
    assert upgrade_15("440524800101001") == "440524198001010013"
    parsed = resident_id("440524800101001")
    assert parsed is not None and parsed.valid and parsed.number == "440524198001010013"


def test_full_width_and_lower_case_x_are_normalised() -> None:
    parsed = resident_id("１１０１０５１９４９１２３１００２ｘ")
    assert parsed is not None and parsed.number == "11010519491231002X" and parsed.valid


@pytest.mark.parametrize(
    ("han", "pinyin"),
    [
        ("单雄信", ("shan", "xiongxin")),
        ("曾国藩", ("zeng", "guofan")),
        ("解缙", ("xie", "jin")),
        ("仇英", ("qiu", "ying")),
        ("区志坚", ("ou", "zhijian")),
        ("查良镛", ("zha", "liangyong")),
        ("覃雪梅", ("qin", "xuemei")),
        ("欧阳修", ("ouyang", "xiu")),
        ("尉迟恭", ("yuchi", "gong")),
    ],
)
def test_surnames_are_read_as_surnames(han: str, pinyin: tuple[str, str]) -> None:
    name = standard_name(None, None, han)
    assert name is not None
    assert (name.family, name.given) == pinyin


def test_han_names_lose_spaces_and_dots_and_romanised_names_their_punctuation() -> None:
    han = standard_name("王", " 小 明 ", None)
    assert han is not None and (han.family_han, han.given_han) == ("王", "小明")
    latin = standard_name("WANG", "Xiao-Ming", None)
    assert latin is not None and (latin.family, latin.given, latin.family_han) == (
        "wang",
        "xiaoming",
        None,
    )


def test_phones_in_every_spelling_become_one_e164() -> None:
    spellings = ["13800138000", "+86 138-0013-8000", "0086 13800138000", "8613800138000"]
    assert {e164(s) for s in spellings} == {"+8613800138000"}
    assert e164("010-12345678") == "+861012345678"
    assert e164("12") is None


def test_id_and_record_disagreeing_on_birth_date_or_sex_are_flagged() -> None:
    record = standardize(
        IdentityFields(
            "H1", "1", family="王", given="芳", resident_id="11010519491231002X",
            birth_date=date(1949, 12, 13), sex="M",
        )
    )  # fmt: skip
    assert {"id_birth_date_mismatch", "id_sex_mismatch"} <= set(record.flags)
    assert record.id_valid


def test_missing_birth_date_and_sex_are_read_from_a_valid_id() -> None:
    record = standardize(
        IdentityFields("H1", "1", name_text="王芳", resident_id="11010519491231002X")
    )
    assert (record.birth_date, record.sex) == (date(1949, 12, 31), "F")


def test_a_record_without_any_usable_identifier_is_flagged_not_refused() -> None:
    record = standardize(IdentityFields("H1", "7", family="王"))
    assert "no_usable_identifier" in record.flags
    assert record.record_id == "H1:7"
