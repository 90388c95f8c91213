"""hs-edge: finding a person in a read model of PERSONS golden records, at a paced rate.

    uv run --frozen python bench/edge_search_bench.py [--persons 1000000] [--rates 200 100]
        [--seconds 20] [--rounds 3]

Figures (p50, p99, answered share), at each constant rate (requests/s) for SECONDS, ROUNDS
times interleaved, medians:
- baseline: `GET /persons/{id}`, the plain person read (golden record decoded, masked);
- `GET /persons?identifier=<resident ID>`;
- `GET /persons?identifier=<institution>|<patient number>`;
- `GET /persons?name=<Han name>&birthdate=` (candidates by name and birth date keys, each
  scored by the EMPI's model).
Every request names another person, drawn at random. Each is the real path: bearer token
verified (ES256), rate limit taken, read model read (SQLite, as `hs-edge serve` uses by
default), events opened, audit entries hash-chained and written to Kafka (acks=all) on the
project's secured broker. The read model is built through the edge's own projector from Person
events as the EMPI writes them (sealed, MACed). The edge serves in its own process (uvicorn);
the load comes from this one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from hs_common import admin, control
from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.settings import Environment, RuntimeSettings, read_env_file
from hs_common.testing import free_port, golden_example, repository_root
from hs_edge.projector import Consumed, Projector
from hs_edge.store import Store
from hs_empi.standardize import check_digit, given_pinyin, surname_pinyin

REPO = repository_root()
ISSUER, AUDIENCE = "https://bench.hs", "hs-edge"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国文红玉梅志斌辉鹏飞宇浩晨欣怡"
INSTITUTIONS = ("HZ01", "BJ03", "SH02")
KINDS = ("person read", "resident ID", "patient number", "name + birth date")


def person(rng: random.Random, n: int) -> dict[str, Any]:
    """Person n's golden facts: a Han name, birth date, sex, a valid resident ID, a number."""
    family = SURNAMES[rng.randrange(len(SURNAMES))]
    given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    born = date(1930, 1, 1) + timedelta(days=rng.randrange(90 * 365))
    sex = rng.choice("MF")
    sequence = rng.randrange(1, 500) * 2 + (1 if sex == "M" else 0)
    first17 = f"330102{born:%Y%m%d}{sequence % 1000:03d}"
    return {
        "person_id": f"P{n:08d}", "family_han": family, "given_han": given,
        "family": surname_pinyin(family), "given": given_pinyin(given), "born": born,
        "sex": sex, "id_number": first17 + check_digit(first17),
        "institution": INSTITUTIONS[n % 3], "number": f"MRN{n:09d}",
    }  # fmt: skip


def build_read_model(database: Path, codec: Codec, persons: int, seed: int) -> None:
    """PERSONS golden records through the edge's projector, as the EMPI writes them."""
    template = golden_example(codec.catalogue.get("hs.identity.Person"), default_schema_root())
    store = Store.sqlite(database)
    projector = Projector(store, codec)
    rng = random.Random(seed)
    started, batch = time.monotonic(), []
    for n in range(persons):
        p = person(rng, n)
        record = template | {
            "envelope": template["envelope"] | {"event_id": str(uuid.UUID(int=n))},
            "person_id": p["person_id"],
            "record_keys": [codec.keyring.pseudonym(p["institution"], p["number"])],
            "golden": template["golden"] | {
                "family_han": p["family_han"], "given_han": p["given_han"],
                "family": p["family"], "given": p["given"], "id_number": p["id_number"],
                "birth_date": p["born"], "sex": p["sex"],
            },
        }  # fmt: skip
        value = codec.encode("hs.identity.Person", record)
        headers = tuple(control.mac_headers(codec.keyring, "hs.identity.Person", value))
        batch.append(Consumed("bench-persons", 0, n, p["person_id"], value, headers))
        if len(batch) == 5_000:
            projector.apply(batch)
            batch = []
            if n % 100_000 < 5_000:
                print(f"  {n + 1:>9,} persons projected ({time.monotonic() - started:.0f} s)")
    projector.apply(batch)
    print(f"read model: {persons:,} persons in {time.monotonic() - started:.0f} s")


# --- the edge, in its own process ---------------------------------------------------------


def serve(database: str, port: int, jwks: str, audit_topic: str) -> None:
    """The edge app over the read model (`--serve`): what `hs-edge serve` runs, on plain
    HTTP on loopback (TLS costs the same for every kind of request measured)."""
    import uvicorn

    from hs_common.kafka import AsyncDurableProducer
    from hs_edge import audit
    from hs_edge.api import create_app
    from hs_edge.auth import TokenValidator
    from hs_edge.operations import AuditTrail, Edge
    from hs_edge.ratelimit import RateLimiter

    settings = RuntimeSettings()
    keyring = Keyring.from_file(settings.keyring_file)
    codec = Codec(SchemaCatalogue.load(default_schema_root()), keyring)
    store = Store.sqlite(database)
    producer = AsyncDurableProducer(settings, "bench-edge-search")
    chain = audit.Chain(f"bench@{time.time_ns()}", keyring)
    trail = AuditTrail(producer, codec, audit_topic, chain, anchors=store)
    tokens = TokenValidator(KeySet.import_key_set(json.loads(jwks)), ISSUER, AUDIENCE)
    edge = Edge(store, codec, tokens, RateLimiter(1e9, 10**9), trail)
    uvicorn.run(create_app(edge), host="127.0.0.1", port=port, log_level="warning")


# --- the load --------------------------------------------------------------------------------


def target(kind: str, p: dict[str, Any]) -> tuple[str, dict[str, str]]:
    if kind == "person read":
        return f"/persons/{p['person_id']}", {}
    if kind == "resident ID":
        return "/persons", {"identifier": p["id_number"]}
    if kind == "patient number":
        return "/persons", {"identifier": f"{p['institution']}|{p['number']}"}
    return "/persons", {
        "name": p["family_han"] + p["given_han"],
        "birthdate": p["born"].isoformat(),
    }


async def paced(
    base: str, token: str, kind: str, people: list[dict[str, Any]], rate: float, seconds: float,
    rng: random.Random,
) -> tuple[list[float], int, int]:  # fmt: skip
    """(latencies in ms of the answers that found the person, requests sent, failures)."""
    latencies: list[float] = []
    failures = 0
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)

    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=30
    ) as client:

        async def one(p: dict[str, Any]) -> None:
            nonlocal failures
            path, params = target(kind, p)
            sent = time.perf_counter()
            try:
                answer = await client.get(path, params=params)
            except httpx.HTTPError:
                failures += 1
                return
            elapsed = (time.perf_counter() - sent) * 1000
            found = answer.status_code == 200 and (
                kind == "person read"
                or p["person_id"] in {i["person_id"] for i in answer.json()["items"][:1]}
            )
            if found:
                latencies.append(elapsed)
            else:
                failures += 1

        tasks, start, count = [], time.perf_counter(), int(rate * seconds)
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(rng.choice(people))))
        await asyncio.gather(*tasks)
    return latencies, count, failures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


@contextmanager
def project_broker(folder: Path) -> Iterator[dict[str, str]]:
    """The project's secured broker (infra/kafka/kafka.sh) for the run: its admin login."""
    env = os.environ | {
        "KAFKA_PORT": str(free_port()), "KAFKA_CERT_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()), "KAFKA_STATE_DIR": str(folder / "kafka"),
    }  # fmt: skip
    script = str(REPO / "infra" / "kafka" / "kafka.sh")
    subprocess.run([script, "up"], env=env, check=True, capture_output=True)
    try:
        yield read_env_file(folder / "kafka" / "admin.env")
    finally:
        subprocess.run([script, "down"], env=env, check=False, capture_output=True)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--rates", type=float, nargs="+", default=[200.0, 100.0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--serve", nargs=4, metavar=("DATABASE", "PORT", "JWKS", "TOPIC"))
    args = parser.parse_args()
    if args.serve:
        database, port, jwks, topic = args.serve
        serve(database, int(port), jwks, topic)
        return 0
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="hs-edge-search-") as work:
        folder = Path(work)
        with project_broker(folder) as login:
            os.environ.update(login)
            keyring_file = folder / "keyring.json"
            Keyring.generate().to_file(keyring_file)
            os.environ["HS_KEYRING_FILE"] = str(keyring_file)
            settings = RuntimeSettings(HS_ENV=Environment.TEST)
            admin.create_topics(settings)
            codec = Codec(
                SchemaCatalogue.load(default_schema_root()), Keyring.from_file(keyring_file)
            )
            database = folder / "read-model.db"
            build_read_model(database, codec, args.persons, args.seed)
            rng = random.Random(args.seed)
            people = [person(rng, n) for n in range(args.persons)]
            key = ECKey.generate_key("P-256", parameters={"kid": "bench"})
            jwks = json.dumps(KeySet([key]).as_dict(private=False))
            port = free_port()
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(database), str(port), jwks,
                 "hs.edge.audit.v1"], env=os.environ | {"HS_LOG_LEVEL": "WARNING"},
            )  # fmt: skip
            try:
                return asyncio.run(measure(args, people, port, key))
            finally:
                server.terminate()
                server.wait(30)


async def measure(
    args: argparse.Namespace, people: list[dict[str, Any]], port: int, key: ECKey
) -> int:
    base = f"http://127.0.0.1:{port}"
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3500, "sub": "bench",
              "client_id": "bench", "role": "clinician", "scope": "user/Patient.read"}  # fmt: skip
    token = jwt.encode({"alg": "ES256", "kid": "bench"}, claims, key)
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(600):
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    rng = random.Random(args.seed + 1)
    for kind in KINDS:  # warm up: the broker's coordinators, the caches, the connections
        await paced(base, token, kind, people, 50, 4, rng)
    for rate in args.rates:
        await measure_at(args, rate, people, base, token, rng)
    return 0


async def measure_at(
    args: argparse.Namespace, rate: float, people: list[dict[str, Any]], base: str, token: str,
    rng: random.Random,
) -> None:  # fmt: skip
    results: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in KINDS}
    for round_ in range(args.rounds):
        for kind in KINDS:
            latencies, sent, failed = await paced(
                base, token, kind, people, rate, args.seconds, rng
            )
            answered = len(latencies) / sent
            results[kind].append(
                (percentile(latencies, 0.5), percentile(latencies, 0.99), answered)
            )
            print(f"  {rate:.0f}/s round {round_ + 1} {kind:<18} p50 {results[kind][-1][0]:7.1f} ms"
                  f"  p99 {results[kind][-1][1]:7.1f} ms  found {answered:.3f} ({failed} not)")  # fmt: skip
            await asyncio.sleep(2)  # what is queued drains before the next kind
    base_p50 = statistics.median(r[0] for r in results["person read"])
    base_p99 = statistics.median(r[1] for r in results["person read"])
    print(f"\n{args.persons:,} persons, {rate:.0f} requests/s, {args.seconds:.0f} s x "
          f"{args.rounds} rounds (medians)")  # fmt: skip
    print("| request | p50 ms | p99 ms | found | p50 / read | p99 / read |")
    print("|---|---|---|---|---|---|")
    for kind in KINDS:
        p50 = statistics.median(r[0] for r in results[kind])
        p99 = statistics.median(r[1] for r in results[kind])
        found = statistics.median(r[2] for r in results[kind])
        print(f"| {kind} | {p50:.1f} | {p99:.1f} | {found:.3f} | {p50 / base_p50:.2f} | "
              f"{p99 / base_p99:.2f} |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
