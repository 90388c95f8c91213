"""CPU per ORU^R01 in-process, intake (keep or refuse) and normalization (to encoded canonical
events), this tree against another checkout of the project (the baseline: by default the
commit before issue 13's per-item mapping, UCUM and open terminology), same messages, same
process shape, one after the other in the same run.

    uv run python bench/normalize_cpu_bench.py [--baseline-rev 7aeb5b7] [--messages 5000]

The ORU^R01 is the one bench/ingestion_bench.py sends (5 OBX: glucose and creatinine in
mg/dL, HbA1c, potassium, pulse). Prints the medians of 5 rounds for each tree and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "ingestion", "terminology", "synth")

MEASURE = r"""
import json, statistics, sys, time
sys.path[:0] = [p for p in sys.argv[3:]]
from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.schemas import SchemaCatalogue
from hs_ingestion.intake import Kept, receive_hl7
from hs_ingestion.normalizer import Normalizer
from hs_ingestion.sources import SourceRegistry, default_sources_dir
sys.path.insert(0, sys.argv[2])
from ingestion_bench import oru

class Raw:
    def __init__(self, value, offset): self._value, self._offset = value, offset
    def value(self): return self._value
    def partition(self): return 0
    def offset(self): return self._offset
    def topic(self): return "raw"

root = sys.argv[1]
codec = Codec(SchemaCatalogue.load(__import__("pathlib").Path(root) / "schemas"), Keyring.generate())
sources = SourceRegistry.load(default_sources_dir())
normalizer = Normalizer(codec, sources)
count = int(__import__("os").environ["MESSAGES"])
payloads = [oru(n) for n in range(count)]
intake, normalize, events = [], [], 0
for _ in range(5):
    started = time.process_time()
    kept = [receive_hl7(p, sources, codec.keyring) for p in payloads]
    middle = time.process_time()
    raws = [codec.encode("hs.ingest.RawMessage", k.record) for k in kept if isinstance(k, Kept)]
    encoded = time.process_time()
    events = sum(len(list(normalizer(Raw(r, i)))) for i, r in enumerate(raws))
    ended = time.process_time()
    intake.append((middle - started + encoded - middle) / count * 1e6)
    normalize.append((ended - encoded) / count * 1e6)
print(json.dumps({"intake_us": statistics.median(intake), "normalize_us": statistics.median(normalize),
                  "events_per_message": events / count}))
"""


def measure(tree: Path, messages: int) -> dict[str, float]:
    paths = [
        str(tree / "services" / p / "src")
        for p in PACKAGES
        if (tree / "services" / p / "src").exists()
    ]
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tree), str(ROOT / "bench"), *paths],
        env={**os.environ, "MESSAGES": str(messages), "PYTHONPATH": ""},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline-rev", default="7aeb5b7")
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        baseline = Path(folder) / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline_rev],
            check=True, capture_output=True,
        )  # fmt: skip
        try:
            before = measure(baseline, args.messages)
            now = measure(ROOT, args.messages)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=True
            )
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores; {args.messages} ORU^R01 x 5 rounds, medians"
    )
    print(f"{'':24}{'baseline ' + args.baseline_rev:>20}{'this tree':>14}{'ratio':>8}")
    for key, label in (("intake_us", "intake CPU µs/msg"), ("normalize_us", "normalize CPU µs/msg"),
                       ("events_per_message", "events per message")):  # fmt: skip
        print(f"{label:24}{before[key]:>20.1f}{now[key]:>14.1f}{now[key] / before[key]:>8.2f}")
    total_before = before["intake_us"] + before["normalize_us"]
    total_now = now["intake_us"] + now["normalize_us"]
    print(
        f"{'both, CPU µs/msg':24}{total_before:>20.1f}{total_now:>14.1f}{total_now / total_before:>8.2f}"
    )
    print(
        f"{'one core, msg/s':24}{1e6 / total_before:>20.0f}{1e6 / total_now:>14.0f}{total_before / total_now:>8.2f}"
    )


if __name__ == "__main__":
    main()
