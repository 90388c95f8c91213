"""`hs-check-compat`: refuse schema changes that old data cannot be read with.

Two checks, both with the Apache `avro` package's ReaderWriterCompatibilityChecker
(backward compatibility: the new schema, as reader, reads data the old one wrote), applied to
the wire schema and to what every sealed field holds:

- `--base REF`: every type whose contract changed since the commit REF (directly or through
  a type it embeds). A removed type is refused: its old data would become unreadable.
- `--history`: every version recorded in `schemas/history/` (data on the topics may be
  written with any of them), and every current type must itself be recorded there
  (`hs-admin release-schemas`), so that readers of tomorrow can decode what it writes today.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as parse_avro

from hs_common.schemas import EventSchema, JsonSchema, SchemaCatalogue


def catalogue_at(repo: Path, ref: str, schema_dir: str) -> SchemaCatalogue | None:
    listing = _git(repo, "ls-tree", "-r", "--name-only", ref, "--", schema_dir)
    paths = [p for p in listing.splitlines() if p.endswith(".avsc") and "/history/" not in p]
    if not paths:
        return None
    documents = {Path(p): json.loads(_git(repo, "show", f"{ref}:{p}")) for p in paths}
    return SchemaCatalogue.from_documents(documents)


def reads(readers: SchemaCatalogue, writer: EventSchema) -> list[str]:
    """Why the current version in `readers` cannot read data written with `writer` (empty
    when it can). A field sealed since `writer` is read as written (`reading_of`)."""
    problems = _compatibility(readers.reading_of(writer), writer.wire, "")
    for aad_name, written in writer.sealed_fields.items():
        read = readers.get(writer.name).sealed_fields.get(aad_name)
        if read is not None:
            problems += _compatibility(read.plain_json, written.plain_json, f"sealed {aad_name}: ")
    return problems


def incompatibilities(old: SchemaCatalogue, new: SchemaCatalogue) -> list[str]:
    problems = []
    for before in old:
        if before.name not in new:
            problems.append(f"{before.name}: removed; data written with it could no longer be read")
            continue
        if new.get(before.name).fingerprint != before.fingerprint:
            problems += [f"{before.name}: {p}" for p in reads(new, before)]
    return problems


def history_problems(catalogue: SchemaCatalogue) -> list[str]:
    problems = []
    for version in catalogue.released():
        label = f"{version.name} (released {version.fingerprint.hex()})"
        if version.name not in catalogue:
            problems.append(f"{label}: removed; data written with it could no longer be read")
            continue
        problems += [f"{label}: {p}" for p in reads(catalogue, version)]
    problems += [
        f"{s.name}: current version {s.fingerprint.hex()} is not recorded in history; "
        "run `make schemas-release`"
        for s in catalogue
        if not catalogue.is_released(s)
    ]
    return problems


def _compatibility(reader: JsonSchema, writer: JsonSchema, prefix: str) -> list[str]:
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        reader=parse_avro(json.dumps(reader)), writer=parse_avro(json.dumps(writer))
    )
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    details = "; ".join(sorted(set(result.messages))) or "incompatible"
    where = ", ".join(sorted(set(result.locations)))
    return [f"{prefix}cannot read old data ({details}) at {where}"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hs-check-compat",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--base", help="commit to compare the working tree with")
    parser.add_argument("--history", action="store_true", help="check against schemas/history/")
    parser.add_argument("--repo", type=Path, default=Path())
    parser.add_argument(
        "--schemas", default="schemas", help="schema folder, relative to the repository"
    )
    args = parser.parse_args(argv)
    if not (args.base or args.history):
        parser.error("give --base REF, --history, or both")
    current = SchemaCatalogue.load(args.repo / args.schemas)
    problems: list[str] = []
    if args.base:
        try:
            old = catalogue_at(args.repo, args.base, args.schemas)
        except subprocess.CalledProcessError as exc:
            print(f"cannot read schemas at {args.base}: {exc.stderr.strip()}", file=sys.stderr)
            return 2
        if old is not None:
            problems += incompatibilities(old, current)
            changed = sum(
                1
                for s in old
                if s.name in current and current.get(s.name).fingerprint != s.fingerprint
            )
            print(f"checked {changed} changed schema(s) against {args.base}")
    if args.history:
        problems += history_problems(current)
        print(f"checked {len(current.released())} released version(s) in history")
    for problem in problems:
        print(f"INCOMPATIBLE {problem}", file=sys.stderr)
    print(f"{len(problems)} incompatible")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
