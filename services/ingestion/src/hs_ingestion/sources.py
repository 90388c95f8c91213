"""Registered sources, one TOML file each in `services/ingestion/sources/`: a new sender is
a new file. Unknown senders are refused."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from hs_common.errors import HealthStreamError


class SourceConfigError(HealthStreamError):
    """A source file is malformed."""


@dataclass(frozen=True)
class Source:
    code: str
    name: str
    transports: tuple[str, ...]
    charset: str | None = None  # overrides MSH-18 / HTTP charset for senders that get it wrong
    utc_offset_hours: int = 8  # for times sent without an offset
    content_types: tuple[str, ...] = ()
    required_columns: tuple[str, ...] = ()


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
                    charset=document.get("charset"),
                    utc_offset_hours=int(document.get("utc_offset_hours", 8)),
                    content_types=tuple(document.get("content_types", ())),
                    required_columns=tuple(document.get("required_columns", ())),
                )
            except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
                raise SourceConfigError(f"{path}: {type(exc).__name__}: {exc}") from None
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
