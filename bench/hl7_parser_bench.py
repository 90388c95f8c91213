"""HL7 v2 parser speed: hs_ingestion.hl7 against python-hl7 on the same corpus, same run.

Corpus: every message of a generated data set (ADT, ORU labs and vital signs from three
hospitals). Three figures per parser, medians of 5 rounds:
- parse: what each parser does by itself (python-hl7 splits every level eagerly; ours splits
  segments and fields, and the rest on access);
- parse + every value: ours also splits every field down to subcomponents, i.e. the same
  work python-hl7 does, so the ratio compares equal output;
- parse + what ingestion reads: the fields normalization uses (MSH, PID, OBX values).

    uv run python bench/hl7_parser_bench.py [--people 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import hl7

from hs_ingestion.hl7 import decode, parse
from hs_synth.generate import GeneratorConfig, generate
from hs_synth.replay import mllp_frames


def corpus(people: int) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        generate(
            GeneratorConfig(people=people, days=30, bad_rate=0.0), Path(folder), progress=False
        )
        texts = []
        for path in sorted(Path(folder, "hl7").glob("*.mllp")):
            for frame in mllp_frames(path.read_bytes()):
                text, _ = decode(
                    frame.payload[1:-2], override="gb18030" if path.stem == "SH02" else None
                )
                texts.append(text.replace("\r\n", "\r").replace("\n", "\r"))  # python-hl7 needs CR
    return texts


def rate(texts: list[str], work: Callable[[str], object], rounds: int) -> float:
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        for text in texts:
            work(text)
        rates.append(len(texts) / (time.perf_counter() - started))
    return statistics.median(rates)


def ours_every_value(text: str) -> int:
    count = 0
    for segment in parse(text).segments:
        for position in range(1, len(segment)):
            count += len(segment.tree(position))
    return count


def ours_ingestion_reads(text: str) -> int:
    message = parse(text)
    values = [message.control_id, *message.message_type]
    pid = message.segment("PID")
    if pid is not None:
        values += [
            pid.value(3),
            pid.value(5),
            pid.value(5, 2),
            pid.value(7),
            pid.value(8),
            pid.value(11),
        ]
    for obx in message.all("OBX"):
        values += [
            obx.value(3),
            obx.value(5),
            obx.value(6),
            obx.value(7),
            obx.value(8),
            obx.value(14),
        ]
    return len(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    texts = corpus(args.people)
    oru = [t for t in texts if "|ORU^R01" in t]
    print(
        f"machine: {platform.machine()}, python {platform.python_version()}, hl7 {hl7.__version__}"
    )
    for name, sample in (("all messages", texts), ("ORU^R01 only", oru)):
        reference = rate(sample, hl7.parse, args.rounds)
        print(f"\n{name}: {len(sample):,} messages; python-hl7 parse {reference:,.0f} msg/s")
        for label, work in (
            ("parse", parse),
            ("parse + every value", ours_every_value),
            ("parse + what ingestion reads", ours_ingestion_reads),
        ):
            ours = rate(sample, work, args.rounds)
            print(f"  hs_ingestion {label:<30}{ours:>12,.0f} msg/s  ratio {ours / reference:6.1f}x")


if __name__ == "__main__":
    main()
