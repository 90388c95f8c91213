"""Local codes nobody has mapped yet, counted per source, each with LOINC candidates ranked
from its display text and unit (hs_terminology.loinc.suggest), written as the line a source
file needs: accepting a mapping is pasting one line. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hs_terminology.loinc import Candidate, suggest


@dataclass(frozen=True)
class UnmappedCode:
    institution: str
    code: str
    display: str | None
    unit: str | None
    results: int
    candidates: tuple[Candidate, ...]

    def source_file_lines(self) -> list[str]:
        """The `[codes]` line for the best candidate, the others as comments."""
        about = f"{self.display or '?'} ({self.unit or 'no unit'}), {self.results} results"
        if not self.candidates:
            return [f"# {self.code!r}: no LOINC candidate for {about}"]
        best, *others = self.candidates
        accept = f'"{self.code}" = "{best.loinc.code}"'
        return [
            f"{accept}  # {about}: {best.loinc.long_common_name} ({best.score:.2f})",
            *(f"#   or {c.loinc.code} {c.loinc.long_common_name} ({c.score:.2f})" for c in others),
        ]


def unmapped_codes(
    observations: Iterable[dict[str, Any]], candidates: int = 3
) -> list[UnmappedCode]:
    """The UNMAPPED local codes among hs.clinical.Observation records, most frequent first."""
    counts: Counter[tuple[str, str, str | None, str | None]] = Counter()
    for observation in observations:
        result = observation["result"]
        if result["code_origin"] != "UNMAPPED":
            continue
        local = result["local_code"]
        institution = observation["envelope"]["source"]["institution"]
        counts[(institution, local["code"], local["display"], result["original_unit"])] += 1
    return [
        UnmappedCode(institution, code, display, unit, n, tuple(suggest(display, unit, candidates)))
        for (institution, code, display, unit), n in counts.most_common()
    ]
