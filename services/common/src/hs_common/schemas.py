"""The schema catalogue: Avro contracts loaded from `schemas/`.

Each `.avsc` file holds one named type (the *logical* schema). A field may carry
`"hs.sensitivity": "identifying" | "health"`; on the wire such a field is an
`hs.crypto.Sealed` record (or `["null", hs.crypto.Sealed]` when the logical type is
nullable) holding the field's Avro binary value, encrypted. The *wire* schema of a type is
its logical schema with that substitution made.

The fingerprint in the single-object header is CRC-64-AVRO of the wire schema's canonical
form, followed, for types with sealed fields, by `\n<record>.<field>=<canonical form of the
sealed content>` for each sealed field in name order. Versions recorded under
`schemas/history/<type>/<fingerprint>.avsc` stay decodable: their data is resolved into the
current version's shape.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import fastavro
from fastavro.schema import UnknownType, to_parsing_canonical_form

from hs_common.avrowrite import Writer, compile_writer
from hs_common.errors import SchemaCatalogueError

Sensitivity: TypeAlias = Literal["identifying", "health"]
SENSITIVITIES: tuple[Sensitivity, ...] = ("identifying", "health")
SENSITIVITY_ATTR = "hs.sensitivity"
SEALED_TYPE = "hs.crypto.Sealed"
SINGLE_OBJECT_MARKER = b"\xc3\x01"

JsonSchema: TypeAlias = Any  # Avro schema JSON: str | list | dict
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO (the Rabin fingerprint of the Avro specification)."""
    fp = _CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ byte) & 0xFF]
    return fp


_CRC64_EMPTY = 0xC15D213AA4D7A795


def _crc64_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_CRC64_TABLE = _crc64_table()


# --- seal plans: where in a record the sealed fields are -------------------------------


@dataclass(frozen=True)
class SealedField:
    """A tagged field: sealed on the way out, opened for key holders on the way in."""

    aad_name: str  # "<record full name>.<field name>"
    sensitivity: Sensitivity
    nullable: bool
    plain_json: JsonSchema  # wrapper record {"v": <logical type>}, self-contained (adds no bytes)
    plain_schema: Any  # the wrapper, parsed
    plain_canonical: str  # canonical form of that wrapper: part of the contract fingerprint
    write_plain: Writer = field(repr=False, compare=False)  # the wrapper's Avro binary writer


@dataclass(frozen=True)
class RecordPlan:
    fields: tuple[tuple[str, Plan], ...]


@dataclass(frozen=True)
class ArrayPlan:
    items: Plan


@dataclass(frozen=True)
class MapPlan:
    values: Plan


@dataclass(frozen=True)
class NullablePlan:
    inner: Plan


Plan: TypeAlias = SealedField | RecordPlan | ArrayPlan | MapPlan | NullablePlan


@dataclass(frozen=True)
class EventSchema:
    """One named type with its logical and wire forms."""

    name: str
    path: Path
    logical: JsonSchema
    logical_parsed: Any  # for tools that handle plaintext records (golden examples, generators)
    wire: JsonSchema
    wire_parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO of the wire canonical form
    plan: RecordPlan | None  # None when the type has no sealed field
    write_wire: Writer = field(repr=False, compare=False)  # Avro binary writer of the wire form
    sensitive_fields: tuple[str, ...] = field(default=())
    sealed_fields: Mapping[str, SealedField] = field(default_factory=dict)  # by aad_name
    released: bool = False  # True for a version loaded from schemas/history/

    @property
    def header(self) -> bytes:
        return SINGLE_OBJECT_MARKER + self.fingerprint


class SchemaCatalogue:
    """Every named type under a schema folder, indexed by full name and by fingerprint."""

    def __init__(
        self, schemas: Iterable[EventSchema], released: Iterable[EventSchema] = ()
    ) -> None:
        self._by_name = {s.name: s for s in schemas}
        self._released = list(released)
        self._by_fingerprint = {s.fingerprint: s for s in self._released}
        self._by_fingerprint.update({s.fingerprint: s for s in self._by_name.values()})
        self._definitions = _named_definitions(s.logical for s in self._by_name.values())
        self._readers: dict[bytes, Any] = {}

    @classmethod
    def load(cls, root: Path) -> SchemaCatalogue:
        """Current types from `root/<domain>/*.avsc`; released versions from `root/history/`."""
        history = root / HISTORY_DIR
        files = sorted(p for p in root.rglob("*.avsc") if history not in p.parents)
        if not files:
            raise SchemaCatalogueError(f"no .avsc files under {root}")
        current = cls.from_documents({path: _read_json(path) for path in files})
        released = [
            _released_version(path, _read_json(path), current)
            for path in sorted(history.rglob("*.avsc"))
        ]
        return cls(current, released)

    @classmethod
    def from_documents(cls, documents: Mapping[Path, JsonSchema]) -> SchemaCatalogue:
        logical_parsed = _parse_in_dependency_order(documents)
        definitions = _named_definitions(documents.values())
        return cls(
            _event_schema(path, document, definitions, logical_parsed[path])
            for path, document in documents.items()
        )

    def released(self) -> list[EventSchema]:
        """Every version recorded in schemas/history/: what data on topics may be written with."""
        return list(self._released)

    def is_released(self, schema: EventSchema) -> bool:
        return any(r.fingerprint == schema.fingerprint for r in self._released)

    def release_document(self, name: str) -> JsonSchema:
        """The current type as one self-contained logical schema, to record in history."""
        return _Expander(self._definitions, seal=False).derive(name)

    def reading_of(self, writer: EventSchema) -> JsonSchema:
        """The current version's wire schema as the reader of what `writer` wrote. A field
        sealed since that version is read as it was written, in the clear (sealing a field is
        a compatible change; the codec seals it when the record is written again)."""
        later = self.sealed_since(writer)
        if not later:
            return self.get(writer.name).wire
        return _Expander(self._definitions, seal=True, plain=later).derive(writer.name)

    def sealed_since(self, writer: EventSchema) -> frozenset[str]:
        """The fields the current version seals that `writer` did not."""
        return frozenset(self.get(writer.name).sealed_fields) - frozenset(writer.sealed_fields)

    def reader_of(self, writer: EventSchema) -> Any:
        """`reading_of(writer)`, parsed (kept per writer)."""
        reader = self._readers.get(writer.fingerprint)
        if reader is None:
            reader = fastavro.parse_schema(self.reading_of(writer), named_schemas={})
            self._readers[writer.fingerprint] = reader
        return reader

    def __iter__(self) -> Iterator[EventSchema]:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> EventSchema:
        try:
            return self._by_name[name]
        except KeyError:
            raise SchemaCatalogueError(f"no schema named {name!r} in the catalogue") from None

    def by_fingerprint(self, fingerprint: bytes) -> EventSchema | None:
        return self._by_fingerprint.get(fingerprint)


HISTORY_DIR = "history"


def _event_schema(
    path: Path,
    document: JsonSchema,
    definitions: Mapping[str, dict[str, Any]],
    logical_parsed: Any,
    released: bool = False,
) -> EventSchema:
    name = _full_name(document, None)
    wire = _Expander(definitions, seal=True).derive(name)
    try:
        wire_parsed = fastavro.parse_schema(wire, named_schemas={})
    except Exception as exc:
        raise SchemaCatalogueError(f"{path}: wire schema does not parse: {exc}") from exc
    plan = _plan_for(name, definitions, visiting=frozenset())
    sealed_fields = {f.aad_name: f for f in _sealed_fields(plan)}
    return EventSchema(
        name=name,
        path=path,
        logical=document,
        logical_parsed=logical_parsed,
        wire=wire,
        wire_parsed=wire_parsed,
        fingerprint=_contract_fingerprint(wire_parsed, sealed_fields.values()),
        plan=plan if isinstance(plan, RecordPlan) else None,
        write_wire=compile_writer(wire_parsed),
        sensitive_fields=tuple(_sensitive_field_names(name, definitions)),
        sealed_fields=sealed_fields,
        released=released,
    )


def _contract_fingerprint(wire_parsed: Any, sealed: Iterable[SealedField]) -> bytes:
    """CRC-64-AVRO of the wire schema's canonical form. For a type with sealed fields, the
    canonical forms of what each sealed field holds are appended, so that a change inside a
    sealed field changes the fingerprint as a change in the clear would."""
    contract = to_parsing_canonical_form(wire_parsed)
    for sealed_field in sorted(sealed, key=lambda f: f.aad_name):
        contract += f"\n{sealed_field.aad_name}={sealed_field.plain_canonical}"
    return crc64_avro(contract.encode()).to_bytes(8, "little")


def _sealed_fields(plan: Plan | None) -> Iterator[SealedField]:
    if isinstance(plan, SealedField):
        yield plan
    elif isinstance(plan, RecordPlan):
        for _, inner in plan.fields:
            yield from _sealed_fields(inner)
    elif isinstance(plan, ArrayPlan):
        yield from _sealed_fields(plan.items)
    elif isinstance(plan, MapPlan):
        yield from _sealed_fields(plan.values)
    elif isinstance(plan, NullablePlan):
        yield from _sealed_fields(plan.inner)


def _released_version(path: Path, document: JsonSchema, current: SchemaCatalogue) -> EventSchema:
    """A version recorded in history: self-contained but for hs.crypto.Sealed (taken from the
    current set; it never changes incompatibly)."""
    documents = {path: document, Path(SEALED_TYPE): current.get(SEALED_TYPE).logical}
    logical_parsed = _parse_in_dependency_order(documents)
    definitions = _named_definitions(documents.values())
    version = _event_schema(path, document, definitions, logical_parsed[path], released=True)
    if path.stem != version.fingerprint.hex():
        raise SchemaCatalogueError(
            f"{path}: file name does not match its fingerprint {version.fingerprint.hex()}"
        )
    return version


def _read_json(path: Path) -> JsonSchema:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemaCatalogueError(f"{path}: not valid JSON: {exc}") from exc


def _full_name(schema: Mapping[str, Any], enclosing_namespace: str | None) -> str:
    name = str(schema["name"])
    if "." in name:
        return name
    namespace = schema.get("namespace", enclosing_namespace)
    return f"{namespace}.{name}" if namespace else name


def _parse_in_dependency_order(documents: Mapping[Path, JsonSchema]) -> dict[Path, Any]:
    """Parse every file, retrying those that reference types defined in files not yet parsed."""
    named: dict[str, Any] = {}
    parsed: dict[Path, Any] = {}
    pending = dict(documents)
    while pending:
        progressed = False
        for path, document in list(pending.items()):
            attempt = dict(named)  # a failed parse leaves partial names behind
            try:
                parsed[path] = fastavro.parse_schema(document, named_schemas=attempt)
            except UnknownType:
                continue
            except Exception as exc:
                raise SchemaCatalogueError(f"{path}: invalid Avro schema: {exc}") from exc
            named = attempt
            del pending[path]
            progressed = True
        if not progressed:
            unresolved = ", ".join(str(p) for p in pending)
            raise SchemaCatalogueError(f"unresolved type references in: {unresolved}")
    return parsed


def _named_definitions(documents: Iterable[JsonSchema]) -> dict[str, dict[str, Any]]:
    """Full name -> JSON definition of every named type, with nested names made full."""
    definitions: dict[str, dict[str, Any]] = {}

    def visit(schema: JsonSchema, namespace: str | None) -> None:
        if isinstance(schema, list):
            for branch in schema:
                visit(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                full = _full_name(schema, namespace)
                definitions[full] = schema
                inner_namespace = full.rpartition(".")[0] or None
                for f in schema.get("fields", []):
                    visit(f["type"], inner_namespace)
            elif kind == "array":
                visit(schema["items"], namespace)
            elif kind == "map":
                visit(schema["values"], namespace)
            elif isinstance(kind, (dict, list)):
                visit(kind, namespace)

    for document in documents:
        visit(document, None)
    return definitions


def _resolve_name(name: str, namespace: str | None, definitions: Mapping[str, Any]) -> str:
    if name in definitions:
        return name
    if namespace and f"{namespace}.{name}" in definitions:
        return f"{namespace}.{name}"
    raise SchemaCatalogueError(f"unknown type {name!r} (namespace {namespace!r})")


class _Expander:
    """Writes a named type as one self-contained schema (each named type defined at its first
    use). With seal=True it writes the wire schema: tagged fields become hs.crypto.Sealed, but
    for those named in `plain` ('<record full name>.<field name>')."""

    def __init__(
        self,
        definitions: Mapping[str, dict[str, Any]],
        seal: bool,
        plain: frozenset[str] = frozenset(),
    ) -> None:
        self._definitions = definitions
        self._seal = seal
        self._plain = plain
        self._emitted: set[str] = set()

    def derive(self, name: str) -> JsonSchema:
        return self._named(name)

    def type_of(self, schema: JsonSchema, namespace: str | None) -> JsonSchema:
        return self._type(schema, namespace)

    def _named(self, full: str) -> JsonSchema:
        if full in self._emitted:
            return full
        self._emitted.add(full)
        definition = copy.deepcopy(self._definitions[full])
        definition["name"] = full
        definition.pop("namespace", None)
        namespace = full.rpartition(".")[0] or None
        if definition["type"] in ("record", "error"):
            fields = []
            for logical_field in definition["fields"]:
                wire_field = dict(logical_field)
                if (
                    self._seal
                    and wire_field.pop(SENSITIVITY_ATTR, None) is not None
                    and (f"{full}.{wire_field['name']}" not in self._plain)
                ):
                    wire_field["type"] = self._sealed(wire_field["type"], full, wire_field["name"])
                else:
                    wire_field["type"] = self._type(wire_field["type"], namespace)
                fields.append(wire_field)
            definition["fields"] = fields
        return definition

    def _sealed(self, logical: JsonSchema, record: str, field_name: str) -> JsonSchema:
        sealed = self._named(SEALED_TYPE)
        if _is_nullable(logical):
            return ["null", sealed]
        if isinstance(logical, list):
            raise SchemaCatalogueError(
                f"{record}.{field_name}: a tagged union must be [null, <type>]"
            )
        return sealed

    def _type(self, schema: JsonSchema, namespace: str | None) -> JsonSchema:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return schema
            return self._named(_resolve_name(schema, namespace, self._definitions))
        if isinstance(schema, list):
            return [self._type(branch, namespace) for branch in schema]
        kind = schema["type"]
        if kind in ("record", "error", "enum", "fixed"):
            return self._named(_full_name(schema, namespace))
        if kind == "array":
            return {**schema, "items": self._type(schema["items"], namespace)}
        if kind == "map":
            return {**schema, "values": self._type(schema["values"], namespace)}
        if isinstance(kind, (dict, list)):
            return self._type(kind, namespace)
        return schema  # primitive with a logical type


def _is_nullable(schema: JsonSchema) -> bool:
    return isinstance(schema, list) and len(schema) == 2 and "null" in schema


def _plan_for(
    name: str, definitions: Mapping[str, dict[str, Any]], visiting: frozenset[str]
) -> Plan | None:
    definition = definitions[name]
    if definition["type"] not in ("record", "error") or name in visiting:
        return None
    namespace = name.rpartition(".")[0] or None
    fields: list[tuple[str, Plan]] = []
    for f in definition["fields"]:
        sensitivity = f.get(SENSITIVITY_ATTR)
        if sensitivity is not None:
            if sensitivity not in SENSITIVITIES:
                raise SchemaCatalogueError(
                    f"{name}.{f['name']}: {SENSITIVITY_ATTR} must be one of {SENSITIVITIES}"
                )
            plain_json = {
                "type": "record",
                "name": "hs.crypto.Plain",
                "fields": [
                    {
                        "name": "v",
                        "type": _Expander(definitions, seal=False).type_of(f["type"], namespace),
                    }
                ],
            }
            plain = fastavro.parse_schema(plain_json, named_schemas={})
            sealed = SealedField(
                aad_name=f"{name}.{f['name']}",
                sensitivity=sensitivity,
                nullable=_is_nullable(f["type"]),
                plain_json=plain_json,
                plain_schema=plain,
                plain_canonical=to_parsing_canonical_form(plain),
                write_plain=compile_writer(plain),
            )
            fields.append((f["name"], sealed))
            continue
        inner = _type_plan(f["type"], namespace, definitions, visiting | {name})
        if inner is not None:
            fields.append((f["name"], inner))
    return RecordPlan(tuple(fields)) if fields else None


def _type_plan(
    schema: JsonSchema,
    namespace: str | None,
    definitions: Mapping[str, dict[str, Any]],
    visiting: frozenset[str],
) -> Plan | None:
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return None
        return _plan_for(_resolve_name(schema, namespace, definitions), definitions, visiting)
    if isinstance(schema, list):
        plans = [_type_plan(b, namespace, definitions, visiting) for b in schema]
        found = [p for p in plans if p is not None]
        if not found:
            return None
        if not _is_nullable(schema):
            raise SchemaCatalogueError(
                "sealed fields inside a union are supported only in [null, <record>] unions"
            )
        return NullablePlan(found[0])
    kind = schema["type"]
    if kind in ("record", "error"):
        return _plan_for(_full_name(schema, namespace), definitions, visiting)
    if kind == "array":
        items = _type_plan(schema["items"], namespace, definitions, visiting)
        return ArrayPlan(items) if items else None
    if kind == "map":
        values = _type_plan(schema["values"], namespace, definitions, visiting)
        return MapPlan(values) if values else None
    return None


def _sensitive_field_names(name: str, definitions: Mapping[str, dict[str, Any]]) -> Iterator[str]:
    definition = definitions[name]
    for f in definition.get("fields", []):
        if SENSITIVITY_ATTR in f:
            yield f["name"]


def default_schema_root() -> Path:
    """`schemas/` at the repository root, or HS_SCHEMA_DIR when installed elsewhere."""
    configured = os.environ.get("HS_SCHEMA_DIR")
    if configured:
        return Path(configured)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "schemas"
        if (candidate / "common").is_dir():
            return candidate
    raise SchemaCatalogueError("cannot find the schemas/ folder; set HS_SCHEMA_DIR")
