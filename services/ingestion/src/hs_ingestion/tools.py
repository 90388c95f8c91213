"""`hs-ingestion-tools`: batch import and dead-letter replay, through the same door as the
listeners (same checks, same raw and dead-letter topics, same answers).

    hs-ingestion-tools import FOLDER            HL7 (.hl7, .mllp), NDJSON (.ndjson) and CSV (.csv)
                                                files; the source is the file's name or folder
    hs-ingestion-tools unmapped-codes [--source CODE]
                                                local codes that arrived unmapped, per
                                                source, with LOINC candidates as the lines
                                                to paste into the source's file
    hs-ingestion-tools sender-tokens [--out DIR]
                                                a bearer token per HTTP source: DIR/tokens.env
                                                (the secrets, mode 600, for the senders) and
                                                DIR/senders.json (their SHA-256, for
                                                HS_INGESTION_SENDER_TOKENS)
    hs-ingestion-tools dev-senders [--out DIR]   development only: sender tokens as above, a
                                                server certificate for MLLP over TLS and a
                                                client certificate per MLLP source, from the
                                                local broker's development CA; DIR/ingestion.env
                                                sets the intake to require them
    hs-ingestion-tools replay-dead-letters [--reason CODE] [--stage STAGE]
                                                re-run dead letters (e.g. after a mapping fix):
                                                refused input goes through intake again, raw
                                                messages the normalizer refused go back to the
                                                raw topic
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from tqdm import tqdm

from hs_common import access, devpki, topics
from hs_common.codec import Codec
from hs_common.kafka import AsyncDurableProducer, read_range
from hs_common.runtime import Runtime
from hs_common.settings import Environment
from hs_ingestion.hl7 import split_messages
from hs_ingestion.httpapi import FORMATS, Intake
from hs_ingestion.main import IngestionSettings
from hs_ingestion.mllp import END, START, Chunk, MllpServer
from hs_ingestion.normalize import EVERY_ITEM
from hs_ingestion.sources import SourceRegistry
from hs_ingestion.store import Store
from hs_ingestion.unmapped import unmapped_codes

ALL_FORMATS = tuple(FORMATS)


def hl7_messages(data: bytes) -> Iterator[Chunk]:
    """MLLP-framed files frame by frame; plain HL7 files (batches or not) message by message."""
    if START in data:
        for part in data.split(START)[1:]:
            body, found, rest = part.partition(END)
            yield Chunk(body, framed=bool(found) and not rest.strip())
        return
    for message in split_messages(data):
        yield Chunk(message, framed=True)


class Door:
    """The listeners' logic without the sockets."""

    def __init__(
        self,
        settings: IngestionSettings,
        codec: Codec,
        raw_topic: str = topics.RAW.name,
        dead_letter_topic: str = topics.DEAD_LETTER.name,
    ) -> None:
        self.codec = codec
        self.sources = SourceRegistry.load(settings.sources_dir)
        self.producer = AsyncDurableProducer(
            settings, f"ingestion-tools-{uuid.uuid4().hex[:6]}", settings.store_timeout
        )
        self.store = Store(codec, self.producer, raw_topic, dead_letter_topic)
        registry = CollectorRegistry()
        self.mllp = MllpServer(self.sources, self.store, registry)
        self.intake = Intake(self.sources, self.store, registry, settings.max_message_bytes)

    async def hl7(self, payload: bytes, framed: bool, origin: str) -> str:
        frames = await self.mllp.answer(Chunk(payload, framed), origin)
        if not frames:
            return "no acknowledgement due (MSH-15/16)" if framed else "framing error (dead letter)"
        return frames[0].split(b"MSA|")[1][:2].decode() if b"MSA|" in frames[0] else "no MSA"

    async def body(self, source: str, content_type: str, payload: bytes, origin: str) -> str:
        response = await self.intake.receive_body(
            source, ALL_FORMATS, content_type, payload, origin, None
        )
        return f"HTTP {response.status_code}"


async def import_folder(door: Door, folder: Path, progress: bool) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".hl7", ".mllp", ".ndjson", ".csv"))
    for path in tqdm(files, desc="import", unit="file", disable=not progress):
        origin = f"import:{path.name}"
        source = door.sources.get(path.stem) or door.sources.get(path.parent.name)
        if path.suffix in (".hl7", ".mllp"):
            for chunk in hl7_messages(path.read_bytes()):
                outcomes[await door.hl7(chunk.payload, chunk.framed, origin)] += 1
        elif source is None:
            outcomes[f"skipped {path.name}: no source file names it"] += 1
        else:
            content_type = FORMATS[source.format][0][0]
            payloads = (
                path.read_bytes().splitlines() if path.suffix == ".ndjson" else [path.read_bytes()]
            )
            for payload in payloads:
                if payload.strip():
                    outcomes[await door.body(source.code, content_type, payload, origin)] += 1
    return outcomes


async def replay_dead_letters(
    door: Door, settings: IngestionSettings, reason: str | None, stage: str | None
) -> Counter[str]:
    """Every dead letter written before now that matches, once. Letters that fail again become
    new dead letters (after the end read here), so a replay never loops."""
    outcomes: Counter[str] = Counter()
    for message in read_range(settings, door.store.dead_letter_topic, "dead-letter-replay"):
        letter = door.codec.decode(
            message.value() or b"", expect=topics.DEAD_LETTER.value_schema
        ).record
        if (reason and letter["reason_code"] != reason) or (stage and letter["stage"] != stage):
            continue
        outcomes[await _replay_one(door, letter)] += 1
    return outcomes


async def _replay_one(door: Door, letter: dict[str, Any]) -> str:
    original = bytes(letter["original"])
    origin: dict[str, Any] = letter["origin"]
    stage = str(letter["stage"])
    if stage == "ingestion.normalize":
        raw = door.codec.decode(original, expect=topics.RAW.value_schema).record
        key = door.codec.keyring.pseudonym(
            str(raw["envelope"]["source"]["institution"]), str(raw["sender_message_id"] or "")
        )
        item = letter.get("item")
        await door.store.keep(raw | {"only_items": [item or EVERY_ITEM]}, key)
        return (
            "item re-queued for normalization"
            if item
            else "raw message re-queued for normalization"
        )
    if stage == "ingestion.mllp":
        return await door.hl7(original, True, "dead-letter-replay")
    envelope: dict[str, Any] = letter["envelope"]
    content_type = str(origin.get("content_type") or "application/json")
    return await door.body(
        envelope["source"]["institution"], content_type, original, "dead-letter-replay"
    )


def unmapped_report(settings: IngestionSettings, codec: Codec, source: str | None) -> list[str]:
    """Every observation on the topic so far, read once; the unmapped codes' lines by source."""
    observations = (
        codec.decode(m.value() or b"", expect=topics.OBSERVATION.value_schema).record
        for m in read_range(settings, topics.OBSERVATION.name, "unmapped-codes")
    )
    lines: list[str] = []
    for found in unmapped_codes(observations):
        if source is None or found.institution == source:
            lines += [f"[{found.institution}]", *found.source_file_lines()]
    return lines


def sender_tokens(sources: SourceRegistry, out: Path) -> str:
    """A new bearer token per source that sends over HTTP; what the intake keeps is its hash."""
    issued = {s.code: secrets.token_urlsafe(32) for s in sources if "http" in s.transports}
    out.mkdir(parents=True, exist_ok=True)
    secret_file = out / "tokens.env"
    secret_file.touch(mode=0o600, exist_ok=True)
    secret_file.chmod(0o600)
    secret_file.write_text("".join(f"{code}={token}\n" for code, token in issued.items()))
    hashes = {code: hashlib.sha256(t.encode()).hexdigest() for code, t in issued.items()}
    (out / "senders.json").write_text(json.dumps(hashes, indent=2) + "\n")
    return (
        f"{len(issued)} sender tokens: secrets in {secret_file}, hashes in {out / 'senders.json'} "
        "(set HS_INGESTION_SENDER_TOKENS to it)"
    )


def dev_senders(settings: IngestionSettings, out: Path) -> str:
    """Sender credentials for a local run, made with the broker's development CA."""
    if settings.environment is Environment.PRODUCTION or settings.kafka_ssl_ca is None:
        return "refused: development credentials need HS_ENV other than production and the CA"
    sources = SourceRegistry.load(settings.sources_dir)
    tokens = sender_tokens(sources, out)
    ca = settings.kafka_ssl_ca
    cert, key = devpki.issue_server_certificate(ca, "ingestion-mllp", ["127.0.0.1"], out)
    senders = [s.code for s in sources if "mllp" in s.transports]
    for code in senders:
        devpki.issue_client_certificate(ca, access.institution_principal(code), out)
    shutil.copyfile(ca, out / "ca.pem")
    (out / "ingestion.env").write_text(
        f"HS_INGESTION_MLLP_TLS_CERT={cert.resolve()}\nHS_INGESTION_MLLP_TLS_KEY={key.resolve()}\n"
        f"HS_INGESTION_MLLP_CLIENT_CA={ca.resolve()}\n"
        f"HS_INGESTION_SENDER_TOKENS={(out / 'senders.json').resolve()}\n"
    )
    return f"{tokens}; MLLP over TLS: client certificates for {', '.join(senders)} in {out}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hs-ingestion-tools",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    importing = commands.add_parser("import", help="import a folder of HL7, NDJSON and CSV files")
    importing.add_argument("folder", type=Path)
    importing.add_argument("--quiet", action="store_true")
    replaying = commands.add_parser("replay-dead-letters", help="re-run dead letters")
    replaying.add_argument("--reason", help="only this reason code, e.g. code.unknown")
    replaying.add_argument("--stage", help="only this stage, e.g. ingestion.normalize")
    listing = commands.add_parser(
        "unmapped-codes", help="unmapped local codes, with LOINC candidates"
    )
    listing.add_argument("--source", help="only this source's codes")
    tokens = commands.add_parser("sender-tokens", help="a bearer token per HTTP source")
    tokens.add_argument("--out", type=Path, default=Path(".local/ingestion-senders"))
    dev = commands.add_parser("dev-senders", help="development sender tokens and certificates")
    dev.add_argument("--out", type=Path, default=Path(".local/ingestion-senders"))
    args = parser.parse_args(argv)
    settings = IngestionSettings(HS_METRICS_PORT=0)
    if args.command == "dev-senders":
        result = dev_senders(settings, args.out)
        print(result)
        return 1 if result.startswith("refused") else 0
    if args.command == "sender-tokens":
        print(sender_tokens(SourceRegistry.load(settings.sources_dir), args.out))
        return 0
    if args.command == "unmapped-codes":
        codec = Runtime.start("ingestion-tools", settings).codec
        print("\n".join(unmapped_report(settings, codec, args.source)))
        return 0

    async def run() -> Counter[str]:
        door = Door(settings, Runtime.start("ingestion-tools", settings).codec)
        try:
            if args.command == "import":
                return await import_folder(door, args.folder, progress=not args.quiet)
            return await replay_dead_letters(door, settings, args.reason, args.stage)
        finally:
            door.producer.close()

    outcomes = asyncio.run(run())
    for outcome, count in sorted(outcomes.items()):
        print(f"{count:>8}  {outcome}")
    print(f"{sum(outcomes.values()):>8}  in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
