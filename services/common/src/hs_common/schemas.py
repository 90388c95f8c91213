"""The schema catalogue: Avro contracts loaded from `schemas/`.

Each `.avsc` file holds one named type (the *logical* schema). A field may carry
`"hs.sensitivity": "identifying" | "health"`; on the wire such a field is an
`hs.crypto.Sealed` record (or `["null", hs.crypto.Sealed]` when the logical type is
nullable) holding the field's Avro binary value, encrypted. The *wire* schema of a type is
its logical schema with that substitution made; it is what fingerprints and the
compatibility check are computed over. Other languages read the wire schema and apply the
same rule.
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
    plain_schema: Any  # parsed wrapper record {"v": <logical type>} (adds no bytes)


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
    sensitive_fields: tuple[str, ...] = field(default=())

    @property
    def header(self) -> bytes:
        return SINGLE_OBJECT_MARKER + self.fingerprint


class SchemaCatalogue:
    """Every named type under a schema folder, indexed by full name and by fingerprint."""

    def __init__(self, schemas: Iterable[EventSchema]) -> None:
        self._by_name = {s.name: s for s in schemas}
        self._by_fingerprint = {s.fingerprint: s for s in self._by_name.values()}

    @classmethod
    def load(cls, root: Path) -> SchemaCatalogue:
        files = sorted(root.rglob("*.avsc"))
        if not files:
            raise SchemaCatalogueError(f"no .avsc files under {root}")
        documents = {path: _read_json(path) for path in files}
        return cls.from_documents(documents)

    @classmethod
    def from_documents(cls, documents: Mapping[Path, JsonSchema]) -> SchemaCatalogue:
        logical_named, logical_parsed = _parse_in_dependency_order(documents)
        definitions = _named_definitions(documents.values())
        schemas = []
        for path, document in documents.items():
            name = _full_name(document, None)
            wire = _WireDeriver(definitions).derive(name)
            try:
                wire_parsed = fastavro.parse_schema(wire, named_schemas={})
            except Exception as exc:
                raise SchemaCatalogueError(f"{path}: wire schema does not parse: {exc}") from exc
            canonical = to_parsing_canonical_form(wire_parsed)
            fingerprint = crc64_avro(canonical.encode()).to_bytes(8, "little")
            plan = _plan_for(name, definitions, logical_named, visiting=frozenset())
            schemas.append(
                EventSchema(
                    name=name,
                    path=path,
                    logical=document,
                    logical_parsed=logical_parsed[path],
                    wire=wire,
                    wire_parsed=wire_parsed,
                    fingerprint=fingerprint,
                    plan=plan if isinstance(plan, RecordPlan) else None,
                    sensitive_fields=tuple(_sensitive_field_names(name, definitions)),
                )
            )
        return cls(schemas)

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


def _parse_in_dependency_order(
    documents: Mapping[Path, JsonSchema],
) -> tuple[dict[str, Any], dict[Path, Any]]:
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
    return named, parsed


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


class _WireDeriver:
    """Writes the wire schema of a named type: tagged fields become hs.crypto.Sealed."""

    def __init__(self, definitions: Mapping[str, dict[str, Any]]) -> None:
        self._definitions = definitions
        self._emitted: set[str] = set()

    def derive(self, name: str) -> JsonSchema:
        return self._named(name)

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
                sensitivity = wire_field.pop(SENSITIVITY_ATTR, None)
                if sensitivity is None:
                    wire_field["type"] = self._type(wire_field["type"], namespace)
                else:
                    wire_field["type"] = self._sealed(wire_field["type"], full, wire_field["name"])
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


def _type_reference(schema: JsonSchema, namespace: str | None) -> JsonSchema:
    """The same type with inline named definitions replaced by their full names."""
    if isinstance(schema, list):
        return [_type_reference(branch, namespace) for branch in schema]
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "error", "enum", "fixed"):
            return _full_name(schema, namespace)
        if kind == "array":
            return {**schema, "items": _type_reference(schema["items"], namespace)}
        if kind == "map":
            return {**schema, "values": _type_reference(schema["values"], namespace)}
    return schema


def _plan_for(
    name: str,
    definitions: Mapping[str, dict[str, Any]],
    logical_named: Mapping[str, Any],
    visiting: frozenset[str],
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
            wrapper = {
                "type": "record",
                "name": "hs.crypto.Plain",
                "fields": [{"name": "v", "type": _type_reference(f["type"], namespace)}],
            }
            plain = fastavro.parse_schema(wrapper, named_schemas=dict(logical_named))
            fields.append(
                (
                    f["name"],
                    SealedField(f"{name}.{f['name']}", sensitivity, _is_nullable(f["type"]), plain),
                )
            )
            continue
        inner = _type_plan(f["type"], namespace, definitions, logical_named, visiting | {name})
        if inner is not None:
            fields.append((f["name"], inner))
    return RecordPlan(tuple(fields)) if fields else None


def _type_plan(
    schema: JsonSchema,
    namespace: str | None,
    definitions: Mapping[str, dict[str, Any]],
    logical_named: Mapping[str, Any],
    visiting: frozenset[str],
) -> Plan | None:
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return None
        return _plan_for(
            _resolve_name(schema, namespace, definitions), definitions, logical_named, visiting
        )
    if isinstance(schema, list):
        plans = [_type_plan(b, namespace, definitions, logical_named, visiting) for b in schema]
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
        return _plan_for(_full_name(schema, namespace), definitions, logical_named, visiting)
    if kind == "array":
        items = _type_plan(schema["items"], namespace, definitions, logical_named, visiting)
        return ArrayPlan(items) if items else None
    if kind == "map":
        values = _type_plan(schema["values"], namespace, definitions, logical_named, visiting)
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
