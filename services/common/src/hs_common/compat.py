"""`hs-check-compat`: refuse schema changes that old data cannot be read with.

Compares the catalogue at a base commit with the working tree. Every type whose wire schema
changed (directly, or through a type it embeds) must read data written with its old version
(backward compatibility, checked with the Apache `avro` package's
ReaderWriterCompatibilityChecker). A removed type is refused too: its old data would become
unreadable.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as parse_avro

from hs_common.schemas import SchemaCatalogue


def catalogue_at(repo: Path, ref: str, schema_dir: str) -> SchemaCatalogue | None:
    listing = _git(repo, "ls-tree", "-r", "--name-only", ref, "--", schema_dir)
    paths = [p for p in listing.splitlines() if p.endswith(".avsc")]
    if not paths:
        return None
    documents = {Path(p): json.loads(_git(repo, "show", f"{ref}:{p}")) for p in paths}
    return SchemaCatalogue.from_documents(documents)


def incompatibilities(old: SchemaCatalogue, new: SchemaCatalogue) -> list[str]:
    problems = []
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    for before in old:
        if before.name not in new:
            problems.append(f"{before.name}: removed; data written with it could no longer be read")
            continue
        after = new.get(before.name)
        if after.fingerprint == before.fingerprint:
            continue
        result = checker.get_compatibility(
            reader=parse_avro(json.dumps(after.wire)), writer=parse_avro(json.dumps(before.wire))
        )
        if result.compatibility is not SchemaCompatibilityType.compatible:
            details = "; ".join(sorted(set(result.messages))) or "incompatible"
            where = ", ".join(sorted(set(result.locations)))
            problems.append(f"{before.name}: cannot read old data ({details}) at {where}")
    return problems


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hs-check-compat", description=__doc__)
    parser.add_argument(
        "--base", default="origin/main", help="commit to compare with (default origin/main)"
    )
    parser.add_argument("--repo", type=Path, default=Path())
    parser.add_argument(
        "--schemas", default="schemas", help="schema folder, relative to the repository"
    )
    args = parser.parse_args(argv)
    try:
        old = catalogue_at(args.repo, args.base, args.schemas)
    except subprocess.CalledProcessError as exc:
        print(f"cannot read schemas at {args.base}: {exc.stderr.strip()}", file=sys.stderr)
        return 2
    new = SchemaCatalogue.load(args.repo / args.schemas)
    if old is None:
        print(f"no schemas at {args.base}; nothing to compare")
        return 0
    problems = incompatibilities(old, new)
    for problem in problems:
        print(f"INCOMPATIBLE {problem}", file=sys.stderr)
    changed = sum(1 for s in old if s.name in new and new.get(s.name).fingerprint != s.fingerprint)
    print(f"checked {changed} changed schema(s) against {args.base}: {len(problems)} incompatible")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
