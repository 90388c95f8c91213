"""`hs-synth`: generate seeded synthetic data, replay it into a running platform.

hs-synth generate --out data/demo --people 10000 --seed 7
hs-synth replay data/demo --mllp 127.0.0.1:2575 --http http://127.0.0.1:8080 --rate 500
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path

from hs_synth.defects import DefectConfig
from hs_synth.generate import GeneratorConfig, generate
from hs_synth.replay import Targets, replay

COURSE_OPTIONS = (
    "cgm_patients",
    "cgm_days",
    "cuff_patients",
    "inpatients",
    "outbreaks",
    "infection_scale",
)
DEFECT_RATES = ("implausible_value", "wrong_unit", "duplicate_result", "late_result",
                "missing_birth_date")  # fmt: skip


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hs-synth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser(
        "generate", help="write a seeded synthetic data set with its truth files"
    )
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--people", type=int, default=10_000)
    gen.add_argument("--seed", type=int, default=20260101)
    gen.add_argument(
        "--start",
        type=datetime.fromisoformat,
        default=datetime(2026, 1, 1),
        help="first day (ISO date)",
    )
    gen.add_argument("--days", type=int, default=90)
    gen.add_argument(
        "--noise-scale",
        type=float,
        default=1.0,
        help="multiplies every identity noise rate (2 = high noise)",
    )
    gen.add_argument(
        "--bad-rate", type=float, default=0.01, help="share of messages replaced by malformed ones"
    )
    gen.add_argument("--identity-only", action="store_true", help="people and registrations only")
    for option in COURSE_OPTIONS:
        gen.add_argument(f"--{option.replace('_', '-')}", type=float, default=None)
    for option in DEFECT_RATES:
        gen.add_argument(f"--{option.replace('_', '-')}", type=float, default=0.0,
                         help="data-quality defect rate (truth/quality_defects.csv)")  # fmt: skip
    gen.add_argument("--degrading-source", default="",
                     help="a hospital whose vital-sign codes change mid-run")  # fmt: skip
    gen.add_argument("--degrading-from-day", type=int, default=0)
    gen.add_argument("--quiet", action="store_true")

    play = commands.add_parser("replay", help="send a generated folder to a running platform")
    play.add_argument("folder", type=Path)
    play.add_argument("--mllp", type=_host_port, help="ingestion MLLP listener, HOST:PORT")
    play.add_argument("--http", help="ingestion HTTP base URL")
    play.add_argument(
        "--senders", type=Path,
        help="sender credentials (`hs-ingestion-tools dev-senders`): MLLP over TLS with each "
        "source's certificate, HTTP with each source's token",
    )  # fmt: skip
    play.add_argument(
        "--rate",
        type=float,
        default=0,
        help="messages per second overall (0: as fast as acknowledged)",
    )
    play.add_argument("--ack-timeout", type=float, default=10.0)
    play.add_argument("--quiet", action="store_true")

    args = parser.parse_args(argv)
    if args.command == "generate":
        courses = {k: getattr(args, k) for k in COURSE_OPTIONS if getattr(args, k) is not None}
        config = GeneratorConfig(
            people=args.people,
            seed=args.seed,
            start=args.start,
            days=args.days,
            noise_scale=args.noise_scale,
            bad_rate=args.bad_rate,
            identity_only=args.identity_only,
            courses=courses,
            defects=DefectConfig(
                **{k: getattr(args, k) for k in DEFECT_RATES},
                degrading_source=args.degrading_source,
                degrading_from_day=args.degrading_from_day,
            ),
        )
        manifest = generate(config, args.out, progress=not args.quiet)
        print(
            f"wrote {args.out}: {manifest['people']} people, {manifest['records']} source records, "
            f"{manifest['episodes']} episodes, {manifest['cases']} notifiable cases, "
            f"{manifest['bad_inputs']} malformed inputs, "
            f"{manifest['quality_defects']} quality defects"
        )
        for name, count in sorted(manifest["files"].items()):
            print(f"  {name}: {count}")
        return 0
    if not (args.mllp or args.http):
        parser.error("replay needs --mllp and/or --http")
    targets = Targets(args.mllp, args.http, args.ack_timeout, senders=args.senders)
    summary = asyncio.run(replay(args.folder, targets, args.rate, progress=not args.quiet))
    print(summary.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
