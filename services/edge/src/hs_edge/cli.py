"""`hs-edge serve` runs the edge; `hs-edge dev-setup` writes development credentials;
`hs-edge verify-audit` proves the audit trail's keyed chains intact (and holding every head
anchored in the edge's database), or names the first tampered entry (exit status 1);
`hs-edge audit-query` lists the entries about a person, of a client, or in a time range, as JSON
lines (the trail is kept without a time limit: hs.edge.audit.v1 has no retention);
`hs-edge reseal` seals the read model's events anew under the active keys after a rotation and
reports the keys they still use."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hs_common import topics
from hs_common.admin import resealed, sealed_key_ids
from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.kafka import read_range
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.settings import RuntimeSettings
from hs_edge.audit import Anchor, Entry, from_record, verify
from hs_edge.devsetup import write_dev_files
from hs_edge.service import DEV
from hs_edge.service import main as serve
from hs_edge.store import Store


def trail(settings: RuntimeSettings, codec: Codec, topic: str) -> Iterator[tuple[Entry, Any]]:
    for message in read_range(settings, topic, "hs-edge-verify-audit", timeout=600):
        value = message.value() or b""
        record = codec.decode(value, expect=topics.EDGE_AUDIT.value_schema).record
        yield from_record(record), f"partition {message.partition()} offset {message.offset()}"


def verify_audit(topic: str, database: str | None) -> int:
    settings = RuntimeSettings()
    # the edge's MAC keys check the entries (audit events carry no sealed fields)
    keyring = Keyring.from_file(settings.keyring_file)
    codec = Codec(SchemaCatalogue.load(settings.schema_dir or default_schema_root()), keyring)
    anchors = [Anchor(*a) for a in Store.open(database).anchors()] if database else []
    verdict = verify(trail(settings, codec, topic), keyring, anchors)
    if verdict.intact:
        held = f"anchored heads held: {len(anchors)}" if database else "no anchors checked"
        print(f"intact: {verdict.entries} entries in {verdict.chains} chains on {topic} ({held})")
        return 0
    assert verdict.first_bad is not None
    chain, sequence, where = verdict.first_bad
    print(f"TAMPERED: chain {chain}, entry {sequence} ({where}): {verdict.problem}")
    return 1


def audit_query(
    topic: str, person: str | None, client: str | None, since: datetime | None,
    until: datetime | None,
) -> int:  # fmt: skip
    """Print the matching entries, oldest first within each chain; exit status 0."""
    settings = RuntimeSettings()
    codec = Codec(SchemaCatalogue.load(settings.schema_dir or default_schema_root()),
                  Keyring.empty())  # fmt: skip
    for entry, where in trail(settings, codec, topic):
        r = entry.request
        if (person and r.person_id != person) or (client and r.client_id != client):
            continue
        if (since and r.at < since) or (until and r.at >= until):
            continue
        shown = {"chain": entry.chain, "sequence": entry.sequence, "where": where,
                 "at": r.at.isoformat(), "client_id": r.client_id, "subject": r.subject,
                 "role": r.role, "operation": r.operation, "person_id": r.person_id,
                 "outcome": r.outcome.value, "status": r.status, "reason": r.reason}  # fmt: skip
        print(json.dumps(shown, ensure_ascii=False))
    return 0


def reseal_read_model(database: str) -> int:
    """Seal the read model's events anew under the active keys (`hs-admin reseal` does the
    compacted topics), then count the keys its events still use."""
    settings = RuntimeSettings()
    keyring = Keyring.from_file(settings.keyring_file)
    catalogue = SchemaCatalogue.load(settings.schema_dir or default_schema_root())
    codec, blind = Codec(catalogue, keyring), Codec(catalogue, Keyring.empty())
    store = Store.open(database)
    rewritten = store.rewrite_events(lambda event: resealed(codec, event))
    used = Counter(
        k for event in store.events() for k in sealed_key_ids(blind.decode(event).record)
    )
    print(f"{rewritten} events re-sealed in the read model; keys its events use:")
    for key_id, count in sorted(used.items()):
        print(f"  {key_id:<28}{count:>10,} values")
    idle = sorted(set(keyring.keys) - set(used))
    print("in the keyring, used by no event of the read model: " + ", ".join(idle or ["none"]))
    return 0


def moment(text: str) -> datetime:
    """An ISO 8601 time; one without an offset is UTC."""
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hs-edge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify-audit", help="verify the audit trail's hash chains")
    check.add_argument("--topic", default=topics.EDGE_AUDIT.name)
    check.add_argument(
        "--database", default=os.environ.get("HS_EDGE_DATABASE"),
        help="the edge's database, whose anchored chain heads the trail must hold "
        "(default: HS_EDGE_DATABASE)",
    )  # fmt: skip
    query = commands.add_parser("audit-query", help="list audit entries (JSON lines)")
    query.add_argument("--topic", default=topics.EDGE_AUDIT.name)
    query.add_argument("--person", help="entries about this person id")
    query.add_argument("--client", help="entries of this OAuth2 client")
    query.add_argument("--since", type=moment, help="from this time (ISO 8601), inclusive")
    query.add_argument("--until", type=moment, help="to this time (ISO 8601), exclusive")
    reseal = commands.add_parser(
        "reseal", help="seal the read model's events anew under the active keys"
    )
    reseal.add_argument("--database", default=os.environ.get("HS_EDGE_DATABASE"), required=False)
    setup = commands.add_parser("dev-setup", help="write development keys, TLS and clients")
    setup.add_argument("--folder", type=Path, default=DEV.folder)
    commands.add_parser("serve", help="run the edge (settings from HS_EDGE_* variables)")
    args = parser.parse_args(argv)
    if args.command == "dev-setup":
        secrets = write_dev_files(args.folder)
        print(f"development credentials in {args.folder}; client secrets (shown once):")
        for client, secret in secrets.items():
            print(f"  {client}: {secret}")
        return 0
    if args.command == "serve":
        return serve()
    if args.command == "reseal":
        if not args.database:
            parser.error("reseal needs --database (or HS_EDGE_DATABASE)")
        return reseal_read_model(args.database)
    if args.command == "audit-query":
        return audit_query(args.topic, args.person, args.client, args.since, args.until)
    return verify_audit(args.topic, args.database)


if __name__ == "__main__":
    sys.exit(main())
