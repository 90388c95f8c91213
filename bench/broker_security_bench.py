"""What securing the broker costs: ingestion end to end (bench/ingestion_bench.py) on a broker
with PLAINTEXT listeners and on the secured one (SASL_SSL with SCRAM-SHA-512 over TLS 1.3, ACLs),
started side by side by infra/kafka/kafka.sh in the same run, alternating, ROUNDS times each.

Prints each run's figures, then the medians per broker and the ratio secured/plaintext.
    uv run python bench/broker_security_bench.py [--messages 10000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hs_common.settings import read_env_file
from hs_common.testing import free_port, repository_root

REPO = repository_root()
FIGURES = {
    "ack p50 ms at 1,000 msg/s": r"at 1,000 msg/s .*?: p50 ([\d.]+) ms",
    "ack p99 ms at 1,000 msg/s": r"at 1,000 msg/s .*?p99 ([\d.]+) ms",
    "acknowledged msg/s": r"ORU\^R01: ([\d,]+) msg/s acknowledged",
    "end-to-end msg/s": r"= ([\d,]+) msg/s end to end",
    "broker CPU us/msg": r"CPU kafka broker: ([\d,]+) us/msg",
    "ingestion CPU us/msg": r"CPU hs-ingestion: ([\d,]+) us/msg",
    "normalizer CPU us/msg": r"CPU hs-normalize: ([\d,]+) us/msg",
}


@contextmanager
def broker(plaintext: bool) -> Iterator[dict[str, str]]:
    """A broker of the bench's own; yields the environment its clients need."""
    state = Path(tempfile.mkdtemp(prefix="hs-bench-kafka-"))
    port = free_port()
    env = os.environ | {
        "KAFKA_PORT": str(port), "KAFKA_CERT_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()), "KAFKA_STATE_DIR": str(state),
        "KAFKA_PLAINTEXT": "1" if plaintext else "",
    }  # fmt: skip
    script = str(REPO / "infra" / "kafka" / "kafka.sh")
    subprocess.run([script, "up"], env=env, check=True, capture_output=True)
    try:
        login = (
            {"HS_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "HS_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
            if plaintext
            else read_env_file(state / "admin.env")
        )
        yield env | login
    finally:
        subprocess.run([script, "down"], env=env, check=False, capture_output=True)


def run(env: dict[str, str], messages: int) -> dict[str, float]:
    shown = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ingestion_bench.py"), "--messages", str(messages)],
        env=env, capture_output=True, text=True, check=False, timeout=1800,
    )  # fmt: skip
    print(shown.stdout, flush=True)
    if shown.returncode != 0:
        sys.exit(f"ingestion_bench.py failed:\n{shown.stderr[-3000:]}")
    found = {}
    for name, pattern in FIGURES.items():
        match = re.search(pattern, shown.stdout)
        if match:
            found[name] = float(match.group(1).replace(",", ""))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"plaintext": [], "secured": []}
    with broker(plaintext=True) as plain, broker(plaintext=False) as secured:
        for round_ in range(args.rounds):
            for name, env in (("plaintext", plain), ("secured", secured)):
                print(f"--- round {round_ + 1}, {name} broker", flush=True)
                runs[name].append(run(env, args.messages))
    print(f"medians of {args.rounds} rounds, {args.messages:,} ORU^R01 each:")
    print(f"  {'figure':<28}{'plaintext':>12}{'secured':>12}{'ratio':>8}")
    for figure in FIGURES:
        values = {n: [r[figure] for r in rs if figure in r] for n, rs in runs.items()}
        if not all(values.values()):
            continue
        plain_median = statistics.median(values["plaintext"])
        secured_median = statistics.median(values["secured"])
        ratio = secured_median / plain_median if plain_median else float("nan")
        print(f"  {figure:<28}{plain_median:>12,.1f}{secured_median:>12,.1f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
