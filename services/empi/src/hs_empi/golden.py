"""Survivorship: one person's golden record from the records linked to it. Pure.

For each field, the value comes from the best record that has one: a record carrying a valid
resident ID first (its identity was checked against the number), then the most trusted
source, then the most recent. The Han name and its pinyin come from the same record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hs_empi.standardize import Standard


@dataclass(frozen=True)
class Linked:
    record: Standard
    key: str  # the record's pseudonym
    arrival: int  # order in which the index saw it (larger: more recent)


def golden(
    linked: Sequence[Linked], trust: Mapping[str, int]
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(golden identity, field -> record key it came from, flags)."""
    ranked = sorted(
        linked,
        key=lambda item: (
            item.record.id_valid,
            trust.get(item.record.institution, 0),
            item.arrival,
        ),
        reverse=True,
    )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def take(field: str, value_of: Callable[[Standard], Any]) -> None:
        for item in ranked:
            value = value_of(item.record)
            if value:
                values[field], sources[field] = value, item.key
                return
        values[field] = None

    named = next((i for i in ranked if i.record.name and i.record.name.family_han), None) or next(
        (i for i in ranked if i.record.name), None
    )
    name = named.record.name if named else None
    values.update(
        family_han=name.family_han if name else None,
        given_han=name.given_han if name else None,
        family=name.family or None if name else None,
        given=name.given or None if name else None,
    )
    if named is not None:
        sources["name"] = named.key
    take("id_number", lambda r: r.id_number if r.id_valid else None)
    take("birth_date", lambda r: r.birth_date)
    take("sex", lambda r: r.sex)
    take("phone", lambda r: r.phones[0] if r.phones else None)
    take("address", lambda r: r.address)
    take("district", lambda r: r.district)
    return values, sources, _flags(linked)


def _flags(linked: Sequence[Linked]) -> list[str]:
    records = [item.record for item in linked]
    flags = []
    if not any(r.id_valid for r in records):
        flags.append("no_valid_id")
    if len({r.id_number for r in records if r.id_valid}) > 1:
        flags.append("conflicting_id_numbers")
    if len({r.birth_date for r in records if r.birth_date}) > 1:
        flags.append("conflicting_birth_dates")
    if len(records) == 1:
        flags.append("single_record")
    return flags
