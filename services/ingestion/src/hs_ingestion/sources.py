"""Registered sources, one TOML file each in `services/ingestion/sources/`: a new sender is
a new file. Unknown senders are refused."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from hs_common.errors import HealthStreamError
from hs_ingestion.canonical import source_zone
from hs_ingestion.terms import mapped_code

# PID-3.5 identifier types (HL7 table 0203) naming a patient number the institution assigns,
# in the order one is taken as the local patient id unless the source's file says otherwise.
LOCAL_ID_TYPES = ("PI", "MR", "PT", "PN", "AN", "VN")


class SourceConfigError(HealthStreamError):
    """A source file is malformed."""


@dataclass(frozen=True)
class Source:
    code: str
    name: str
    transports: tuple[str, ...]
    format: str = "hl7v2"  # hl7v2, fhir, clinic-json, clinic-csv, device-batch
    charset: str | None = None  # overrides MSH-18 / HTTP charset for senders that get it wrong
    # When MSH-18 is empty: 'utf-8-or-gb18030' reads valid UTF-8 as UTF-8 and anything else as
    # GB 18030 (what Chinese systems send); 'ascii' holds to the standard's default.
    undeclared_charset: str = "utf-8-or-gb18030"
    time_zone: str = "Asia/Shanghai"  # IANA name, for times sent without an offset
    sending_applications: tuple[str, ...] = ()  # MSH-3 values this source is (with MSH-4)
    facility: str | None = None  # MSH-4 when it differs from the code
    listener_port: int | None = None  # a port only this source sends to (MSH-4 may be empty)
    local_id_types: tuple[str, ...] = LOCAL_ID_TYPES
    content_types: tuple[str, ...] = ()
    required_columns: tuple[str, ...] = ()
    codes: Mapping[str, str] = field(default_factory=dict)  # local code -> 'system|code'
    mapping: Mapping[str, Any] = field(default_factory=dict)  # field mapping of clinic formats

    @property
    def zone(self) -> tzinfo:
        return source_zone(self.time_zone)


class SourceRegistry:
    def __init__(self, sources: dict[str, Source]) -> None:
        self._sources = sources
        self._by_sender: dict[tuple[str, str], Source] = {}
        self._by_port: dict[int, Source] = {}
        for source in sources.values():
            facility = source.facility or source.code
            for application in source.sending_applications or ("",):
                self._by_sender[(application, facility)] = source
            if source.listener_port is not None:
                self._by_port[source.listener_port] = source

    @classmethod
    def load(cls, folder: Path) -> SourceRegistry:
        sources = {}
        for path in sorted(folder.glob("*.toml")):
            source = _source(path)
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

    def sender(self, application: str, facility: str, port: int | None = None) -> Source | None:
        """The source an HL7 message comes from: MSH-3 with MSH-4 when the source names its
        applications, else MSH-4, else the port it was sent to."""
        return (
            self._by_sender.get((application, facility))
            or self._by_sender.get(("", facility))
            or (self._by_port.get(port) if port is not None else None)
        )

    def listener_ports(self) -> list[int]:
        return sorted(self._by_port)

    def __len__(self) -> int:
        return len(self._sources)

    def __iter__(self) -> Iterator[Source]:
        return iter(self._sources.values())


def _source(path: Path) -> Source:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        offset = document.get("utc_offset_hours")
        source = Source(
            code=str(document["code"]),
            name=str(document["name"]),
            transports=tuple(document["transports"]),
            format=str(document.get("format", "hl7v2")),
            charset=document.get("charset"),
            undeclared_charset=str(document.get("undeclared_charset", "utf-8-or-gb18030")),
            time_zone=str(
                document.get("time_zone")
                or (f"{int(offset):+03d}:00" if offset is not None else "Asia/Shanghai")
            ),
            sending_applications=tuple(document.get("sending_applications", ())),
            facility=document.get("facility"),
            listener_port=document.get("listener_port"),
            local_id_types=tuple(document.get("local_id_types", LOCAL_ID_TYPES)),
            content_types=tuple(document.get("content_types", ())),
            required_columns=tuple(document.get("required_columns", ())),
            codes={str(k): mapped_code(str(v)) for k, v in document.get("codes", {}).items()},
            mapping=dict(document.get("mapping", {})),
        )
        source.zone  # noqa: B018  (an unknown zone name fails here, at load)
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SourceConfigError(f"{path}: {type(exc).__name__}: {exc}") from None
    return source


def default_sources_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "sources"
