"""Registered sources, one TOML file each in `services/ingestion/sources/`: a new sender is
a new file. Unknown senders are refused."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hs_common.errors import HealthStreamError
from hs_ingestion.units import ANALYTES


class SourceConfigError(HealthStreamError):
    """A source file is malformed."""


@dataclass(frozen=True)
class Source:
    code: str
    name: str
    transports: tuple[str, ...]
    format: str = "hl7v2"  # hl7v2, fhir, clinic-json, clinic-csv, device-batch
    charset: str | None = None  # overrides MSH-18 / HTTP charset for senders that get it wrong
    utc_offset_hours: int = 8  # for times sent without an offset
    content_types: tuple[str, ...] = ()
    required_columns: tuple[str, ...] = ()
    codes: Mapping[str, str] = field(default_factory=dict)  # local code -> analyte key
    mapping: Mapping[str, Any] = field(default_factory=dict)  # field mapping of clinic formats


class SourceRegistry:
    def __init__(self, sources: dict[str, Source]) -> None:
        self._sources = sources

    @classmethod
    def load(cls, folder: Path) -> SourceRegistry:
        sources = {}
        for path in sorted(folder.glob("*.toml")):
            try:
                document = tomllib.loads(path.read_text(encoding="utf-8"))
                source = Source(
                    code=str(document["code"]),
                    name=str(document["name"]),
                    transports=tuple(document["transports"]),
                    format=str(document.get("format", "hl7v2")),
                    charset=document.get("charset"),
                    utc_offset_hours=int(document.get("utc_offset_hours", 8)),
                    content_types=tuple(document.get("content_types", ())),
                    required_columns=tuple(document.get("required_columns", ())),
                    codes=dict(document.get("codes", {})),
                    mapping=dict(document.get("mapping", {})),
                )
            except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
                raise SourceConfigError(f"{path}: {type(exc).__name__}: {exc}") from None
            unknown = sorted(set(source.codes.values()) - set(ANALYTES))
            if unknown:
                raise SourceConfigError(f"{path}: [codes] maps to unknown analytes {unknown}")
            if path.stem != source.code:
                raise SourceConfigError(
                    f"{path}: file name must be the source code {source.code!r}"
                )
            sources[source.code] = source
        if not sources:
            raise SourceConfigError(f"no source files (*.toml) in {folder}")
        return cls(sources)

    def get(self, code: str) -> Source | None:
        return self._sources.get(code)

    def __len__(self) -> int:
        return len(self._sources)


def default_sources_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "sources"
