"""Play a generated folder into a running platform over the real transports.

HL7 files go over MLLP (one connection per hospital, each message acknowledged before the
next, as senders do); clinic JSON and CSV, FHIR Bundles and wearable batches go over HTTP:

    POST {http}/ingest/clinics/HZC01      application/json      one clinic document
    POST {http}/ingest/clinics/SHC02      text/csv              one CSV batch
    POST {http}/fhir                      application/fhir+json one transaction Bundle
    POST {http}/ingest/devices/W01        application/json      one reading batch

Sources play concurrently, each in its own order; `rate` caps messages per second overall.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from hs_synth.formats.hl7 import END_BLOCK, START_BLOCK


@dataclass(frozen=True)
class Frame:
    payload: bytes  # exactly the bytes to send
    well_formed: bool  # starts with the start block and ends with the end block


def mllp_frames(stream: bytes) -> Iterator[Frame]:
    """Split a file of MLLP frames into what a sender sends, broken frames included: a frame
    without an end block runs to the next start block; bytes outside any frame (a frame
    without a start block) run to their end block."""
    position = 0
    while position < len(stream):
        framed = stream.startswith(START_BLOCK, position)
        end = stream.find(END_BLOCK, position)
        next_start = stream.find(START_BLOCK, position + 1 if framed else position)
        if end != -1 and (next_start == -1 or end < next_start):
            stop = end + len(END_BLOCK)
            yield Frame(stream[position:stop], framed)
        else:
            stop = len(stream) if next_start == -1 else next_start
            yield Frame(stream[position:stop], False)
        position = stop


@dataclass
class SourceResult:
    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass
class ReplaySummary:
    sources: dict[str, SourceResult]
    seconds: float

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.sources.values())

    def render(self) -> str:
        lines = [f"{'source':<32}{'sent':>8}  outcomes"]
        for name, result in sorted(self.sources.items()):
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items()))
            lines.append(f"{name:<32}{result.sent:>8}  {outcomes}")
        rate = self.sent / self.seconds if self.seconds else 0.0
        lines.append(f"{'total':<32}{self.sent:>8}  in {self.seconds:.1f} s ({rate:,.0f}/s)")
        return "\n".join(lines)


class RateLimiter:
    """Spaces sends evenly across all sources; rate 0 means no limit."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_slot = time.monotonic()
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        await asyncio.sleep(max(0.0, slot - now))


@dataclass(frozen=True)
class Targets:
    mllp: tuple[str, int] | None
    http: str | None
    ack_timeout: float = 10.0
    broken_frame_timeout: float = 1.0
    # `hs-ingestion-tools dev-senders` output: MLLP over TLS with each source's certificate
    # (inst-<code>.crt/.key, ca.pem), HTTP with each source's token (tokens.env)
    senders: Path | None = None

    def tls(self, source: str) -> ssl.SSLContext | None:
        if self.senders is None:
            return None
        context = ssl.create_default_context(cafile=self.senders / "ca.pem")
        principal = self.senders / f"inst-{source}"
        context.load_cert_chain(principal.with_suffix(".crt"), principal.with_suffix(".key"))
        return context

    def token(self, source: str) -> str | None:
        if self.senders is None:
            return None
        lines = (self.senders / "tokens.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line).get(source)


async def _replay_mllp(
    path: Path, targets: Targets, limiter: RateLimiter, result: SourceResult, bar: tqdm[Any]
) -> None:
    assert targets.mllp is not None
    host, port = targets.mllp
    tls = targets.tls(path.stem)  # the file is named by its source

    def connect() -> Any:
        return asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None)

    reader, writer = await connect()
    try:
        for frame in mllp_frames(path.read_bytes()):
            await limiter.wait()
            if writer.is_closing():
                reader, writer = await connect()
            writer.write(frame.payload)
            await writer.drain()
            result.sent += 1
            timeout = targets.ack_timeout if frame.well_formed else targets.broken_frame_timeout
            outcome = await _read_ack(reader, timeout)
            result.outcomes[outcome] += 1
            if outcome == "connection closed":
                writer.close()
                reader, writer = await connect()
            bar.update()
    finally:
        writer.close()


async def _read_ack(reader: asyncio.StreamReader, timeout: float) -> str:
    try:
        ack = await asyncio.wait_for(reader.readuntil(END_BLOCK), timeout)
    except TimeoutError:
        return "no ack"
    except (asyncio.IncompleteReadError, ConnectionError):
        return "connection closed"
    for segment in ack.strip(START_BLOCK + END_BLOCK).replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA"):
            fields = segment.split(segment[3:4] or b"|")
            return fields[1].decode(errors="replace") if len(fields) > 1 else "MSA without code"
    return "ack without MSA"


def _http_requests(folder: Path, base: str) -> dict[str, list[tuple[str, str, bytes]]]:
    """Per source: (url, content type, body) in order. /fhir names its source in X-HS-Source."""
    plays: dict[str, list[tuple[str, str, bytes]]] = {}
    for path, url, content_type in (
        (folder / "clinics" / "HZC01.ndjson", f"{base}/ingest/clinics/HZC01", "application/json"),
        (folder / "fhir" / "F01.ndjson", f"{base}/fhir", "application/fhir+json"),
        (folder / "devices" / "W01.ndjson", f"{base}/ingest/devices/W01", "application/json"),
    ):
        if path.exists():
            lines = path.read_bytes().splitlines()
            plays[str(path.relative_to(folder))] = [
                (url, content_type, line) for line in lines if line
            ]
    batches = sorted((folder / "clinics" / "SHC02").glob("batch-*.csv"))
    if batches:
        plays["clinics/SHC02"] = [
            (f"{base}/ingest/clinics/SHC02", "text/csv; charset=utf-8", p.read_bytes())
            for p in batches
        ]
    return plays


async def _replay_http(
    requests: list[tuple[str, str, bytes]],
    client: httpx.AsyncClient,
    token: str | None,
    limiter: RateLimiter,
    result: SourceResult,
    bar: tqdm[Any],
) -> None:
    for url, content_type, body in requests:
        await limiter.wait()
        result.sent += 1
        try:
            headers = {"content-type": content_type, "x-hs-source": "F01"}
            if token:
                headers["authorization"] = f"Bearer {token}"
            response = await client.post(url, content=body, headers=headers)
            result.outcomes[f"HTTP {response.status_code}"] += 1
        except httpx.HTTPError as exc:
            result.outcomes[type(exc).__name__] += 1
        bar.update()


async def replay(
    folder: Path, targets: Targets, rate: float, progress: bool = True
) -> ReplaySummary:
    limiter = RateLimiter(rate)
    sources: dict[str, SourceResult] = {}
    hl7_files = sorted((folder / "hl7").glob("*.mllp")) if targets.mllp else []
    http_plays = _http_requests(folder, targets.http.rstrip("/")) if targets.http else {}
    total = sum(sum(1 for _ in mllp_frames(p.read_bytes())) for p in hl7_files) + sum(
        len(v) for v in http_plays.values()
    )
    started = time.monotonic()
    with tqdm(total=total, desc="replay", unit="msg", disable=not progress) as bar:
        async with httpx.AsyncClient(timeout=30.0) as client:
            tasks = []
            for path in hl7_files:
                result = sources.setdefault(f"hl7/{path.name}", SourceResult())
                tasks.append(_replay_mllp(path, targets, limiter, result, bar))
            for name, requests in http_plays.items():
                token = targets.token(Path(name).stem)  # clinics/HZC01.ndjson: HZC01
                result = sources.setdefault(name, SourceResult())
                tasks.append(_replay_http(requests, client, token, limiter, result, bar))
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for name, outcome in zip(
        [*[f"hl7/{p.name}" for p in hl7_files], *http_plays], outcomes, strict=True
    ):
        if isinstance(outcome, BaseException):
            sources[name].outcomes[f"aborted: {type(outcome).__name__}"] += 1
    return ReplaySummary(sources, time.monotonic() - started)
