"""The person index: every source record linked to one person, decided as records arrive.

A record is compared with the records that share a blocking key with it; candidates are
scored with the Fellegi-Sunter model and grouped by person. Above the link threshold it joins
the best person; between the thresholds it starts a new person and a review item names the
likely one; below, it starts a new person. Two records with the same valid resident ID are
always one person unless a reviewer separated them. Every decision carries its score and the
evidence against the best-matching record. Pure: the Kafka service feeds it and publishes
its decisions; rebuilt by replaying them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from hs_empi.compare import blocking_keys
from hs_empi.model import Evidence, Model, Score
from hs_empi.standardize import Standard

LINKED, NEW_PERSON, REVIEW = "LINKED", "NEW_PERSON", "REVIEW"


@dataclass(frozen=True)
class Thresholds:
    link: float = 0.6  # match probability at or above which a record joins a person
    review: float = 0.2  # at or above (and below link): new person, and a reviewer is asked


@dataclass(frozen=True)
class Decision:
    record_id: str
    person_id: str
    action: str  # LINKED, NEW_PERSON or REVIEW (new person, possible duplicate of review_person)
    probability: float  # against the best-matching record (0 when there was none)
    weight: float
    evidence: tuple[Evidence, ...]
    matched_record: str | None = None
    review_person: str | None = None
    merged_persons: tuple[str, ...] = ()  # persons folded into person_id by this decision
    flags: tuple[str, ...] = ()


def default_person_id(record_id: str) -> str:
    return "P" + hashlib.sha256(record_id.encode()).hexdigest()[:16]


@dataclass
class PersonIndex:
    model: Model
    thresholds: Thresholds = field(default_factory=Thresholds)
    person_id_for: Callable[[str], str] = default_person_id
    max_block: int = 500  # a blocking key shared by more records than this is not used
    records: dict[str, Standard] = field(default_factory=dict)
    person_of: dict[str, str] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    blocks: dict[str, list[str]] = field(default_factory=dict)
    kept_apart: set[frozenset[str]] = field(default_factory=set)
    arrival: dict[str, int] = field(default_factory=dict)  # record -> when it was last (re)linked
    clock: int = 0

    def add(self, record: Standard) -> Decision:
        """Link a new or updated record."""
        previous_person = self._forget(record.record_id)
        best: dict[str, tuple[float, str]] = {}  # person -> best weight, its record
        population = len(self.records) + 1
        same_id: set[str] = set()
        other_id: set[str] = set()  # persons holding a different valid ID: never linked unasked
        for candidate_id in self._candidates(record):
            candidate = self.records[candidate_id]
            person = self.person_of[candidate_id]
            if record.id_valid and candidate.id_valid:
                (same_id if record.id_number == candidate.id_number else other_id).add(person)
            weight = self.model.weight(record, candidate, population)
            if person not in best or weight > best[person][0]:
                best[person] = (weight, candidate_id)
        if previous_person is not None:  # a reviewer's separation holds for updates too
            apart = {p for p in best if frozenset({p, previous_person}) in self.kept_apart}
            same_id -= apart
            best = {p: found for p, found in best.items() if p not in apart}
        decision = self._decide(record, best, same_id, other_id - same_id, previous_person)
        self._remember(record, decision.person_id)
        return decision

    def _decide(
        self,
        record: Standard,
        best: dict[str, tuple[float, str]],
        same_id: set[str],
        other_id: set[str],
        previous_person: str | None,
    ) -> Decision:
        link, review = _log_odds(self.thresholds.link), _log_odds(self.thresholds.review)
        flags = record.flags if record.has_identifier else (*record.flags, "low_confidence")
        top_person = max(best, key=lambda p: best[p][0], default=None)
        if same_id:
            target = top_person if top_person in same_id else sorted(same_id)[0]
            merged = self._merge_all(target, same_id - {target})
            score = self._explain(record, best[target][1])
            forced = () if score.weight >= link else ("id_forced_link",)
            return self._decision(
                record, target, LINKED, score, best[target][1], None, merged, (*flags, *forced)
            )
        new_person = (
            previous_person
            if previous_person and previous_person not in self.members
            else self._fresh_person(record.record_id)
        )
        if top_person is None or not record.has_identifier:  # nothing to link it by, safely
            return Decision(record.record_id, new_person, NEW_PERSON, 0.0, 0.0, (), flags=flags)
        top_weight, top_record = best[top_person]
        score = self._explain(record, top_record)
        if top_weight >= link:
            # two valid, different resident IDs, or siblings born together: a person decides
            doubt = (
                "id_conflict"
                if top_person in other_id
                else "possible_twin"
                if possible_twins(record, self.records[top_record])
                else None
            )
            if doubt is not None:
                flagged = (*flags, doubt)
                return self._decision(
                    record, new_person, REVIEW, score, top_record, top_person, (), flagged
                )
        if top_weight >= link:
            # a record that is surely two persons' shows they are one (connected components)
            held = self._valid_ids(top_person) | (
                {record.id_number} if record.id_valid and record.id_number else set()
            )
            also = {
                p
                for p, (weight, _) in best.items()
                if weight >= link and p not in other_id and not _conflict(held, self._valid_ids(p))
            }
            merged = self._merge_all(top_person, also - {top_person})
            return self._decision(
                record, top_person, LINKED, score, top_record, None, merged, flags
            )
        if top_weight >= review:
            return self._decision(
                record, new_person, REVIEW, score, top_record, top_person, (), flags
            )
        return self._decision(record, new_person, NEW_PERSON, score, top_record, None, (), flags)

    def _explain(self, record: Standard, matched: str) -> Score:
        return self.model.score(record, self.records[matched], len(self.records) + 1)

    @staticmethod
    def _decision(
        record: Standard,
        person: str,
        action: str,
        score: Score,
        matched: str,
        review_person: str | None,
        merged: tuple[str, ...],
        flags: tuple[str, ...],
    ) -> Decision:
        return Decision(
            record.record_id, person, action, score.probability, score.weight, score.evidence,
            matched, review_person, merged, flags,
        )  # fmt: skip

    def _candidates(self, record: Standard) -> set[str]:
        found: set[str] = set()
        for key in blocking_keys(record):
            members = self.blocks.get(key, ())
            if len(members) <= self.max_block or key.startswith("id:"):
                found.update(members)
        found.discard(record.record_id)
        return found

    def _remember(self, record: Standard, person: str) -> None:
        self.clock += 1
        self.arrival[record.record_id] = self.clock
        self.records[record.record_id] = record
        self.person_of[record.record_id] = person
        self.members.setdefault(person, set()).add(record.record_id)
        for key in blocking_keys(record):
            self.blocks.setdefault(key, []).append(record.record_id)

    def _forget(self, record_id: str) -> str | None:
        """Take a record out before it is linked again; its person, if any."""
        old = self.records.pop(record_id, None)
        if old is None:
            return None
        for key in blocking_keys(old):
            self.blocks[key].remove(record_id)
        person = self.person_of.pop(record_id)
        self.members[person].discard(record_id)
        if not self.members[person]:
            del self.members[person]
        return person

    # --- decisions taken by people and by sources -----------------------------------------

    def merge(self, survivor_record: str, prior_record: str) -> tuple[str, tuple[str, ...]]:
        """A source's merge (ADT^A40) or a reviewer's link: the two records' persons become
        one, the survivor's. Returns (person, persons folded into it)."""
        target = self.person_of[survivor_record]
        other = self.person_of.get(prior_record)
        if other is None or other == target:
            return target, ()
        self.kept_apart.discard(frozenset({target, other}))
        return target, self._merge_all(target, {other})

    def unlink(self, record_id: str, apart_from: str | None = None) -> tuple[str, tuple[str, ...]]:
        """A reviewer's decision: the record is not the person it was linked to. It gets a
        person of its own, which the same-ID rule will not merge back; records with its valid
        ID that were separated from that person before are this person too. With `apart_from`
        (a reviewer's "no link" on a suggested match) the record is not that record's person:
        when they are two persons, they are kept apart as they are. Returns (person, persons
        folded into it)."""
        old_person = self.person_of[record_id]
        other = self.person_of.get(apart_from) if apart_from is not None else None
        if other is not None and other != old_person:
            self.kept_apart.add(frozenset({old_person, other}))
            return old_person, ()
        if len(self.members[old_person]) == 1:
            return old_person, ()
        record = self.records[record_id]
        self._forget(record_id)
        new_person = self._fresh_person(record_id)
        self._remember(record, new_person)
        self.kept_apart.add(frozenset({old_person, new_person}))
        same_id = {
            self.person_of[other]
            for other in self.blocks.get(f"id:{record.id_number}", ())
            if record.id_valid and self.records[other].id_valid
        } - {old_person, new_person}
        return new_person, self._merge_all(new_person, same_id)

    def _valid_ids(self, person: str) -> set[str]:
        return {
            record.id_number
            for record in (self.records[r] for r in self.members.get(person, ()))
            if record.id_valid and record.id_number
        }

    def _fresh_person(self, record_id: str) -> str:
        """A person id derived from the record that founds it; deterministic, so replaying the
        same decisions rebuilds the same ids."""
        person, attempt = self.person_id_for(record_id), 0
        while person in self.members:
            attempt += 1
            person = self.person_id_for(f"{record_id}#{attempt}")
        return person

    def restore(
        self,
        record: Standard,
        person: str,
        merged: tuple[str, ...] = (),
        apart_from: str | None = None,
    ) -> None:
        """Apply a decision read back from the link log (rebuilding after a restart)."""
        self._forget(record.record_id)
        self.members.setdefault(person, set())
        for other in merged:
            self._fold(person, other)
        self._remember(record, person)
        if apart_from is not None:
            self.kept_apart.add(frozenset({person, apart_from}))

    def _merge_all(self, target: str, others: set[str]) -> tuple[str, ...]:
        merged = []
        for other in sorted(others):
            if frozenset({target, other}) in self.kept_apart or other not in self.members:
                continue
            self._fold(target, other)
            merged.append(other)
        return tuple(merged)

    def _fold(self, target: str, other: str) -> None:
        """`other`'s records become `target`'s, and so do the separations decided for it."""
        for record_id in self.members.pop(other, set()):
            self.person_of[record_id] = target
            self.members[target].add(record_id)
        for pair in [pair for pair in self.kept_apart if other in pair]:
            self.kept_apart.discard(pair)
            (apart,) = pair - {other}
            if apart != target:
                self.kept_apart.add(frozenset({target, apart}))

    def person_count(self) -> int:
        return len(self.members)


def _conflict(ids: set[str], other: set[str]) -> bool:
    """Two persons each holding valid resident IDs, none in common."""
    return bool(ids and other and ids.isdisjoint(other))


def _log_odds(probability: float) -> float:
    return math.log2(probability / (1 - probability))


def possible_twins(a: Standard, b: Standard) -> bool:
    """Same birth date and family name, Han given names with no character in common, and no
    resident ID to tell them apart: siblings born together, until a person says otherwise."""
    if a.id_valid and b.id_valid and a.id_number == b.id_number:
        return False
    x, y = a.name, b.name
    if x is None or y is None or not x.given_han or not y.given_han:
        return False  # in pinyin, a garbled given name and a sibling's cannot be told apart
    if a.birth_date is None or a.birth_date != b.birth_date or x.family != y.family:
        return False
    return not set(x.given_han) & set(y.given_han)
