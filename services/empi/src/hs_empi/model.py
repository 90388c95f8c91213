"""The Fellegi-Sunter model: m and u probabilities per comparison level, the prior, and term
frequencies; scoring with evidence; estimation from the data. Pure (numpy for the EM).

- u (how often a level occurs between two different people) is measured on random pairs.
- m (how often it occurs between two records of one person) and the prior are estimated by
  expectation-maximisation on the pairs each blocking rule finds, leaving out the comparisons
  that rule makes agree by construction (Splink's training scheme), then averaged.
- Agreement on a name or phone weighs by how common the value is: two records sharing a
  common name (Wang Wei) are less likely the same person than two sharing a rare one.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hs_common.errors import HealthStreamError
from hs_empi.compare import (
    BLOCKING_RULES,
    COMPARISONS,
    MISSING,
    BlockingRule,
    Comparison,
    tf_value,
    vector,
)
from hs_empi.standardize import Standard

FLOOR = 1e-6


class ModelError(HealthStreamError):
    """A model file that does not fit the comparisons of this version."""


PSEUDO_SHARE = 0.01


@dataclass(frozen=True)
class Evidence:
    comparison: str
    level: str
    weight: float  # log2 Bayes factor, term-frequency adjusted (0 when missing)


@dataclass(frozen=True)
class Score:
    weight: float  # prior log-odds plus the evidence, in bits
    probability: float
    evidence: tuple[Evidence, ...]


@dataclass
class Model:
    m: list[list[float]]  # [comparison][level]; level 0 (missing) unused
    u: list[list[float]]
    prior: float  # probability that two random records are one person, among `trained_on`
    tf: dict[str, dict[str, float]] = field(default_factory=dict)  # comparison -> value -> share
    trained_on: int = 0  # records the prior was estimated among (0: use the prior as it is)
    # Term-frequency tables keyed by a keyed hash of the value (names and phones are not kept
    # in the clear): the function that keys a value, when they are.
    tf_key: Callable[[str], str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._weights = [
            [0.0]
            + [
                math.log2(max(m, FLOOR) / max(u, FLOOR))
                for m, u in zip(ms[1:], us[1:], strict=True)
            ]
            for ms, us in zip(self.m, self.u, strict=True)
        ]
        self._prior_weight = math.log2(self.prior / (1 - self.prior))

    def prior_weight(self, population: int = 0) -> float:
        """Prior log-odds that a record is one person with another among `population` records.
        A person has about the same number of records however many people are indexed, so the
        chance that two random records match falls as the index grows beyond the records the
        prior was estimated among (below that, the estimate stands)."""
        if not self.trained_on or population <= self.trained_on:
            return self._prior_weight
        prior = self.prior * (self.trained_on - 1) / (population - 1)
        return math.log2(prior / (1 - prior))

    def weight(self, a: Standard, b: Standard, population: int = 0) -> float:
        """Prior log-odds plus the evidence, in bits (what candidates are ranked by)."""
        return self.prior_weight(population) + sum(w for _, _, w in self._terms(a, b))

    def score(self, a: Standard, b: Standard, population: int = 0) -> Score:
        """The weight with its evidence, comparison by comparison."""
        terms = self._terms(a, b)
        total = self.prior_weight(population) + sum(w for _, _, w in terms)
        evidence = tuple(Evidence(c.name, c.levels[level], round(w, 3)) for c, level, w in terms)
        return Score(total, _probability(total), evidence)

    def _terms(self, a: Standard, b: Standard) -> list[tuple[Comparison, int, float]]:
        terms = []
        for index, comparison in enumerate(COMPARISONS):
            level = comparison.level_of(a, b)
            weight = self._weights[index][level]
            if level in comparison.tf_levels:
                weight += self._tf_adjustment(index, comparison.name, a, b, level)
            terms.append((comparison, level, weight))
        return terms

    def _tf_adjustment(self, index: int, name: str, a: Standard, b: Standard, level: int) -> float:
        table = self.tf.get(name)
        value = tf_value(name, a, b)
        if not table or value is None:
            return 0.0
        if self.tf_key is not None:
            value = self.tf_key(value)
        share = table.get(value, 1.0 / max(1, int(table.get("", 1e6))))
        return math.log2(max(self.u[index][level], FLOOR) / max(share, FLOOR))

    def keyed(self, key: Callable[[str], str]) -> Model:
        """The same model with its term-frequency tables keyed by `key` (a keyed hash)."""
        if self.tf_key is not None:
            return self
        tables = {
            name: {(key(value) if value else value): share for value, share in table.items()}
            for name, table in self.tf.items()
        }
        return Model(self.m, self.u, self.prior, tables, self.trained_on, key)

    def to_json(self) -> dict[str, Any]:
        """The model as JSON: m and u by comparison and level, the prior, term frequencies."""
        return {
            "prior": self.prior,
            "comparisons": {
                c.name: {
                    level: {"m": float(self.m[i][j]), "u": float(self.u[i][j])}
                    for j, level in enumerate(c.levels)
                    if j
                }
                for i, c in enumerate(COMPARISONS)
            },
            "term_frequencies": self.tf,
            "term_frequencies_keyed": self.tf_key is not None,
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_json(
        cls, document: dict[str, Any], tf_key: Callable[[str], str] | None = None
    ) -> Model:
        """The model a document holds; `tf_key` keys values as its tables were keyed."""
        if document.get("term_frequencies_keyed") and tf_key is None:
            raise ModelError("the model's term frequencies are keyed: give the key to read them")
        m, u = [], []
        for comparison in COMPARISONS:
            levels = document["comparisons"].get(comparison.name, {})
            missing = [name for name in comparison.levels[1:] if name not in levels]
            if missing:
                raise ModelError(
                    f"model has no {comparison.name} levels {missing}: it was estimated for "
                    "other comparisons; estimate it again (hs-empi train)"
                )
            m.append([0.0] + [float(levels[name]["m"]) for name in comparison.levels[1:]])
            u.append([0.0] + [float(levels[name]["u"]) for name in comparison.levels[1:]])
        return cls(
            m,
            u,
            float(document["prior"]),
            document.get("term_frequencies", {}),
            int(document.get("trained_on", 0)),
            tf_key if document.get("term_frequencies_keyed") else None,
        )


def _probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    return 1.0 / (1.0 + math.pow(2.0, -weight))


def term_frequencies(records: Iterable[Standard]) -> dict[str, dict[str, float]]:
    """Share of records holding each name (full pinyin) and each phone; "" holds the count."""
    names: Counter[str] = Counter()
    phones: Counter[str] = Counter()
    count = 0
    for record in records:
        count += 1
        if record.name is not None and record.name.full:
            names[record.name.full] += 1
        phones.update(record.phones)
    tables: dict[str, dict[str, float]] = {}
    for comparison, counter in (("name", names), ("contact", phones)):
        table = {value: n / count for value, n in counter.items()}
        table[""] = float(count)
        tables[comparison] = table
    return tables


# --- estimation ------------------------------------------------------------------------


def estimate(
    records: Sequence[Standard],
    seed: int = 1,
    random_pairs: int = 300_000,
    max_block: int = 50,
    iterations: int = 30,
) -> Model:
    """m, u, prior and term frequencies from unlabelled records."""
    rng = random.Random(seed)
    u = _u_from_random_pairs(records, rng, random_pairs)
    m_sums = [np.zeros(len(c.levels)) for c in COMPARISONS]
    m_runs = [0] * len(COMPARISONS)
    blocked: set[tuple[int, int]] = set()
    for rule in BLOCKING_RULES:
        pairs = _blocked_pairs(records, rule, max_block)
        blocked |= pairs
        if len(pairs) < 50 or not rule.trains:
            continue
        free = [c.name not in rule.covers for c in COMPARISONS]
        m, _ = _em(_patterns(records, pairs), u, free, iterations)
        for index, estimated in enumerate(free):
            if estimated:
                m_sums[index] += m[index]
                m_runs[index] += 1
    m_final = [
        list(m_sums[i] / m_runs[i]) if m_runs[i] else _m_start(len(c.levels))
        for i, c in enumerate(COMPARISONS)
    ]
    matches = _expected_matches(_patterns(records, blocked), m_final, u)
    total_pairs = len(records) * (len(records) - 1) / 2
    prior = min(0.5, max(matches, 1.0) / max(total_pairs, 1.0))
    return Model(m_final, u, prior, term_frequencies(records), len(records))


def _u_from_random_pairs(
    records: Sequence[Standard], rng: random.Random, count: int
) -> list[list[float]]:
    counts = [
        np.full(len(c.levels), 0.5) for c in COMPARISONS
    ]  # half a count: no level is impossible
    n = len(records)
    for _ in range(count if n > 1 else 0):
        i, j = rng.randrange(n), rng.randrange(n)
        if i != j:
            for index, level in enumerate(vector(records[i], records[j])):
                counts[index][level] += 1
    return [_normalised(c) for c in counts]


def _normalised(counts: np.ndarray) -> list[float]:
    present = counts[1:].sum()
    return [0.0, *(counts[1:] / present).tolist()] if present else [0.0] * len(counts)


def _blocked_pairs(
    records: Sequence[Standard], rule: BlockingRule, max_block: int
) -> set[tuple[int, int]]:
    blocks: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        for key in rule.keys(record):
            blocks.setdefault(key, []).append(index)
    pairs: set[tuple[int, int]] = set()
    for members in blocks.values():
        if 1 < len(members) <= max_block:
            pairs.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :] if a != b)
    return pairs


def _patterns(
    records: Sequence[Standard], pairs: Iterable[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    counted = Counter(vector(records[a], records[b]) for a, b in pairs)
    if not counted:
        return np.zeros((0, len(COMPARISONS)), dtype=np.int64), np.zeros(0)
    patterns = np.array(list(counted), dtype=np.int64)
    return patterns, np.array(list(counted.values()), dtype=float)


def _m_start(levels: int) -> list[float]:
    """Start values: most true pairs agree at the best level."""
    weights = np.array([0.0] + [0.5**k for k in range(levels - 1)])
    weights[1] = 4.0
    return list(weights / weights[1:].sum())


def _em(
    data: tuple[np.ndarray, np.ndarray],
    u: list[list[float]],
    free: list[bool],
    iterations: int,
    prior: float = 0.3,
) -> tuple[list[np.ndarray], float]:
    patterns, counts = data
    m = [np.array(_m_start(len(c.levels))) for c in COMPARISONS]
    log_u = _log_levels(u, patterns, free)
    for _ in range(iterations):
        log_m = _log_levels([list(x) for x in m], patterns, free)
        odds = np.exp(np.clip(log_m - log_u, -700, 700)) * prior / (1 - prior)
        posterior = odds / (1 + odds)
        weighted = counts * posterior
        prior = float(np.clip(weighted.sum() / counts.sum(), 1e-6, 1 - 1e-6))
        for index, estimated in enumerate(free):
            if not estimated:
                continue
            column = patterns[:, index]
            sums = np.bincount(column, weights=weighted, minlength=len(m[index]))
            sums[MISSING] = 0
            present = sums.sum()
            if present > 0:
                # pseudo-counts (1% of the mass, shaped like the start values): a level never
                # seen among this sample's true pairs stays possible rather than damning
                pseudo = PSEUDO_SHARE * present * np.array(_m_start(len(m[index])))
                m[index] = np.maximum((sums + pseudo) / (present + pseudo.sum()), FLOOR)
                m[index][MISSING] = 0
    return m, prior


def _log_levels(table: list[list[float]], patterns: np.ndarray, free: list[bool]) -> np.ndarray:
    total = np.zeros(len(patterns))
    for index, estimated in enumerate(free):
        if not estimated:
            continue
        logs = np.log(np.maximum(np.array(table[index]), FLOOR))
        logs[MISSING] = 0.0
        total += logs[patterns[:, index]]
    return total


def _expected_matches(
    data: tuple[np.ndarray, np.ndarray], m: list[list[float]], u: list[list[float]]
) -> float:
    """Expected number of true pairs among the blocked ones, with m and u known."""
    patterns, counts = data
    if not len(patterns):
        return 0.0
    every = [True] * len(COMPARISONS)
    ratio = np.exp(
        np.clip(_log_levels(m, patterns, every) - _log_levels(u, patterns, every), -700, 700)
    )
    share = 0.3
    for _ in range(20):  # the blocked pairs' own prior, by EM with m and u held
        odds = ratio * share / (1 - share)
        share = float(np.clip((counts * odds / (1 + odds)).sum() / counts.sum(), 1e-6, 1 - 1e-6))
    odds = ratio * share / (1 - share)
    return float((counts * odds / (1 + odds)).sum())
