"""Replay over real sockets: an MLLP peer and an HTTP peer on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hs_synth.formats.hl7 import END_BLOCK, START_BLOCK
from hs_synth.generate import GeneratorConfig, generate
from hs_synth.replay import ReplaySummary, Targets, mllp_frames, replay


def test_frames_split_like_a_receiver_would_see_them() -> None:
    good = START_BLOCK + b"MSH|a\r" + END_BLOCK
    no_end = START_BLOCK + b"MSH|b\r"
    no_start = b"MSH|c\r" + END_BLOCK
    frames = list(mllp_frames(good + no_end + good + no_start + good))
    assert [f.payload for f in frames] == [good, no_end, good, no_start, good]
    assert [f.well_formed for f in frames] == [True, False, True, False, True]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    config = GeneratorConfig(
        people=300,
        days=10,
        bad_rate=0.03,
        courses={"cgm_patients": 1, "cgm_days": 1, "cuff_patients": 2, "inpatients": 2},
    )
    generate(config, out, progress=False)
    return out


class Peer:
    """What the platform's edge of the wire does, minimally: ACK by MSA, 202 or 400."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.posts: Counter[str] = Counter()

    async def mllp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        while chunk := await reader.read(65536):
            buffer += chunk
            while END_BLOCK in buffer:
                frame, buffer = buffer.split(END_BLOCK, 1)
                start = frame.rfind(START_BLOCK)
                self.frames.append(frame)
                code = b"AA" if start != -1 and frame[start + 1 :].startswith(b"MSH") else b"AR"
                writer.write(START_BLOCK + b"MSH|^~\\&|HS|HS\rMSA|" + code + b"|1\r" + END_BLOCK)
                await writer.drain()
        writer.close()

    def http_handler(self) -> type[BaseHTTPRequestHandler]:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                peer.posts[self.path] += 1
                ok = True
                if "json" in self.headers["content-type"]:
                    try:
                        json.loads(body)
                    except ValueError:
                        ok = False
                self.send_response(202 if ok else 400)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        return Handler


@pytest.fixture
def http_peer() -> Iterator[tuple[Peer, str]]:
    peer = Peer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), peer.http_handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield peer, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_replay_sends_everything_and_counts_the_answers(
    data: Path, http_peer: tuple[Peer, str]
) -> None:
    peer, base = http_peer

    async def run() -> ReplaySummary:
        server = await asyncio.start_server(peer.mllp, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await replay(
                data,
                Targets(mllp=("127.0.0.1", port), http=base, broken_frame_timeout=0.3),
                rate=0,
                progress=False,
            )

    summary = asyncio.run(run())
    manifest = json.loads((data / "manifest.json").read_text())
    sources = summary.sources
    for name in ("hl7/HZ01.mllp", "hl7/SH02.mllp", "hl7/BJ03.mllp"):
        expected = len(list(mllp_frames((data / name).read_bytes())))
        assert sources[name].sent == expected
        assert sum(sources[name].outcomes.values()) == expected
        assert sources[name].outcomes["AA"] >= 0.9 * expected
    assert sources["clinics/HZC01.ndjson"].sent == manifest["files"]["clinics/HZC01.ndjson"]
    assert sources["devices/W01.ndjson"].sent == manifest["files"]["devices/W01.ndjson"]
    assert sources["clinics/SHC02"].sent == manifest["files"]["clinics/SHC02"]
    assert peer.posts["/ingest/devices/W01"] == manifest["files"]["devices/W01.ndjson"]
    assert peer.posts["/fhir"] == manifest["files"]["fhir/F01.ndjson"]
    truncated = sum(
        1
        for line in (data / "truth" / "bad_inputs.csv").read_text().splitlines()
        if "json_truncated" in line
    )
    assert sources["clinics/HZC01.ndjson"].outcomes["HTTP 400"] == truncated
    assert "total" in summary.render()


def test_rate_limit_spaces_the_sends(data: Path, http_peer: tuple[Peer, str]) -> None:
    _, base = http_peer
    folder = data / "only-fhir"
    (folder / "fhir").mkdir(parents=True, exist_ok=True)
    lines = (data / "fhir" / "F01.ndjson").read_bytes().splitlines()[:20]
    (folder / "fhir" / "F01.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    summary = asyncio.run(replay(folder, Targets(mllp=None, http=base), rate=50, progress=False))
    assert summary.sent == 20
    assert summary.seconds >= 19 / 50 * 0.9
