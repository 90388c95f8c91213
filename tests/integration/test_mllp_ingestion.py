"""The MLLP listener against a real broker and real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hs_common import devpki
from hs_common.codec import Codec
from hs_common.kafka import AsyncDurableProducer
from hs_common.settings import RuntimeSettings
from hs_common.testing import LoopThread, TopicFactory, free_port, read_all
from hs_ingestion.mllp import MllpLimits, MllpServer
from hs_ingestion.recent import read_recent
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.store import Store

pytestmark = pytest.mark.integration
VT, FS_CR = b"\x0b", b"\x1c\x0d"


def message(
    control_id: str,
    facility: str = "HZ01",
    extra_msh: str = "",
    pid: str = "PID|1||HZ0001^^^HZ01^MR||王^小明||19870315|F",
) -> bytes:
    charset = "UNICODE UTF-8" if facility == "HZ01" else ""
    header = f"MSH|^~\\&|HIS|{facility}|HEALTHSTREAM|HS|20260101080000+0800||ADT^A04^ADT_A01"
    msh = f"{header}|{control_id}|P|2.5{extra_msh}"
    if not extra_msh:
        msh += f"||||||{charset}" if charset else ""
    codec = "gb18030" if facility == "SH02" else "utf-8"
    return f"{msh}\rEVN|A04|20260101080000\r{pid}\rPV1|1|O|MZ\r".encode(codec)


def framed(payload: bytes) -> bytes:
    return VT + payload + FS_CR


def read_ack(sock: socket.socket) -> dict[str, list[str]]:
    data = b""
    while not data.endswith(FS_CR):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return {line[:3]: line.split("|") for line in data[1:-2].decode().split("\r") if line}


@pytest.fixture
def ingestion(
    runtime_settings: RuntimeSettings, codec: Codec, new_topic: TopicFactory
) -> Iterator[tuple[int, str, str]]:
    raw, dead = new_topic("raw", 3), new_topic("dead", 1)
    loop = LoopThread()
    producer = AsyncDurableProducer(runtime_settings, "mllp-test", timeout=10)
    server_holder: list[asyncio.Server] = []

    async def start() -> int:
        server = MllpServer(
            SourceRegistry.load(default_sources_dir()),
            Store(codec, producer, raw, dead),
            CollectorRegistry(),
            MllpLimits(max_message_bytes=4096, idle_timeout=2.0),
        )
        listening = await server.serve("127.0.0.1", 0)
        server_holder.append(listening)
        return int(listening.sockets[0].getsockname()[1])

    port = loop.run(start())
    yield port, raw, dead

    async def stop() -> None:
        server_holder[0].close()

    loop.run(stop())
    producer.close()
    loop.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    return sock


def test_a_stored_message_is_accepted_and_on_the_raw_topic_byte_for_byte(
    ingestion: tuple[int, str, str], kafka_bootstrap: str, codec: Codec
) -> None:
    port, raw, _ = ingestion
    control_id = uuid.uuid4().hex[:20]
    payload = message(control_id)
    with connect(port) as sock:
        sock.sendall(framed(payload))
        ack = read_ack(sock)
    assert ack["MSA"][1:3] == ["AA", control_id]
    [(key, value)] = read_all(kafka_bootstrap, raw, expected=1)
    record = codec.decode(value, expect="hs.ingest.RawMessage").record
    assert record["payload"] == payload
    assert (record["sender_message_id"], record["charset"], record["transport"]) == (
        control_id,
        "utf-8",
        "MLLP",
    )
    assert record["envelope"]["source"] == {"institution": "HZ01", "system": "HIS"}
    assert key == codec.keyring.pseudonym("HZ01", "HZ0001").encode()
    assert "王".encode() not in value


def test_enhanced_mode_gets_a_commit_accept(ingestion: tuple[int, str, str]) -> None:
    port, _, _ = ingestion
    with connect(port) as sock:
        sock.sendall(framed(message("E1", extra_msh="|||AL|NE||UNICODE UTF-8")))
        assert read_ack(sock)["MSA"][1] == "CA"


def test_a_message_without_msh_is_rejected_and_kept_as_a_dead_letter(
    ingestion: tuple[int, str, str], kafka_bootstrap: str, codec: Codec
) -> None:
    port, raw, dead = ingestion
    payload = b"PID|1||HZ0001^^^HZ01^MR\r"
    with connect(port) as sock:
        sock.sendall(framed(payload))
        ack = read_ack(sock)
    assert ack["MSA"][1] == "AR"
    assert ack["ERR"][3].startswith("100^Segment sequence error")
    [(_, value)] = read_all(kafka_bootstrap, dead, expected=1)
    letter = codec.decode(value).record
    assert (letter["reason_code"], letter["original"], letter["stage"]) == (
        "hl7.msh_missing",
        payload,
        "ingestion.mllp",
    )
    assert read_all(kafka_bootstrap, raw, idle=1) == []


def test_unknown_senders_and_message_types_are_rejected(ingestion: tuple[int, str, str]) -> None:
    port, _, _ = ingestion
    with connect(port) as sock:
        sock.sendall(framed(message("U1", facility="NOPE")))
        assert read_ack(sock)["MSA"][1] == "AR"
        sock.sendall(framed(message("U2").replace(b"ADT^A04^ADT_A01", b"ADT^Z99^ADT_A01")))
        ack = read_ack(sock)
        assert ack["MSA"][1:3] == ["AR", "U2"]
        assert ack["ERR"][3].startswith("200^Unsupported message type")


def test_a_repeated_message_is_acknowledged_again_but_stored_once(
    ingestion: tuple[int, str, str], kafka_bootstrap: str
) -> None:
    port, raw, _ = ingestion
    payload = framed(message("R1"))
    with connect(port) as sock:
        sock.sendall(payload)
        first = read_ack(sock)
        sock.sendall(payload)
        second = read_ack(sock)
    assert first["MSA"] == second["MSA"] == ["MSA", "AA", "R1"]
    assert len(read_all(kafka_bootstrap, raw, idle=2)) == 1


def test_partial_frames_and_several_frames_in_one_read(ingestion: tuple[int, str, str]) -> None:
    port, _, _ = ingestion
    with connect(port) as sock:
        for byte in framed(message("P1")):
            sock.send(bytes([byte]))
        assert read_ack(sock)["MSA"][1:3] == ["AA", "P1"]
        sock.sendall(b"".join(framed(message(f"M{i}")) for i in range(3)))
        assert [read_ack(sock)["MSA"][2] for _ in range(3)] == ["M0", "M1", "M2"]


def test_a_frame_without_end_block_is_dead_lettered_and_the_next_is_accepted(
    ingestion: tuple[int, str, str], kafka_bootstrap: str, codec: Codec
) -> None:
    port, _, dead = ingestion
    with connect(port) as sock:
        sock.sendall(VT + message("B1") + framed(message("B2")))
        assert read_ack(sock)["MSA"][1:3] == ["AA", "B2"]
    [(_, value)] = read_all(kafka_bootstrap, dead, expected=1)
    assert codec.decode(value).record["reason_code"] == "mllp.framing"


def test_the_character_set_comes_from_the_source_file_when_msh18_is_silent(
    ingestion: tuple[int, str, str], kafka_bootstrap: str, codec: Codec
) -> None:
    port, raw, _ = ingestion
    payload = message("G1", facility="SH02", pid="PID|1||0001^^^SH02^MR||马^玲||19670808|F")
    assert "马".encode("gb18030") in payload
    with connect(port) as sock:
        sock.sendall(framed(payload))
        assert read_ack(sock)["MSA"][1] == "AA"
    [(_, value)] = read_all(kafka_bootstrap, raw, expected=1)
    assert codec.decode(value).record["charset"] == "gb18030"


def test_oversized_frames_and_idle_connections_are_closed(ingestion: tuple[int, str, str]) -> None:
    port, _, _ = ingestion
    with connect(port) as sock:
        sock.sendall(VT + b"MSH|" + b"x" * 10_000)
        assert sock.recv(100) == b""
    with connect(port) as sock:
        sock.settimeout(10)
        assert sock.recv(100) == b""  # closed after the 2 s idle timeout


def test_no_accept_when_kafka_cannot_store(codec: Codec, runtime_settings: RuntimeSettings) -> None:
    unreachable = runtime_settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"}
    )
    loop = LoopThread()
    producer = AsyncDurableProducer(unreachable, "mllp-down", timeout=1.0)

    async def start() -> int:
        server = MllpServer(
            SourceRegistry.load(default_sources_dir()), Store(codec, producer), CollectorRegistry()
        )
        listening = await server.serve("127.0.0.1", 0)
        return int(listening.sockets[0].getsockname()[1])

    port = loop.run(start())
    try:
        with connect(port) as sock:
            sock.sendall(framed(message("D1")))
            ack = read_ack(sock)
            sock.sendall(framed(message("D2", extra_msh="|||AL|NE||UNICODE UTF-8")))
            enhanced = read_ack(sock)
    finally:
        producer.close(timeout=1)
        loop.stop()
    assert ack["MSA"][1:3] == ["AE", "D1"]
    assert ack["ERR"][3].startswith("207^Application internal error")
    assert enhanced["MSA"][1] == "CE"


def test_a_message_resent_after_a_restart_is_acknowledged_but_not_stored_again(
    runtime_settings: RuntimeSettings, codec: Codec, new_topic: TopicFactory, kafka_bootstrap: str
) -> None:
    raw, dead = new_topic("raw", 3), new_topic("dead", 1)
    loop = LoopThread()
    producer = AsyncDurableProducer(runtime_settings, "mllp-restart-test", timeout=10)

    async def start(warm: bool) -> tuple[asyncio.Server, int]:
        server = MllpServer(
            SourceRegistry.load(default_sources_dir()),
            Store(codec, producer, raw, dead),
            CollectorRegistry(),
        )
        if warm:
            server.recent.remember(read_recent(runtime_settings, codec.catalogue, 1000, raw))
        listening = await server.serve("127.0.0.1", 0)
        return listening, int(listening.sockets[0].getsockname()[1])

    async def stop(listening: asyncio.Server) -> None:
        listening.close()

    payload = framed(message("RR1"))
    for restarted in (False, True):  # the second listener is a new process's, warmed from Kafka
        listening, port = loop.run(start(warm=restarted))
        with connect(port) as sock:
            sock.sendall(payload)
            assert read_ack(sock)["MSA"][1:3] == ["AA", "RR1"]
        loop.run(stop(listening))
    producer.close()
    loop.stop()
    assert len(read_all(kafka_bootstrap, raw, idle=2)) == 1


def test_bytes_with_no_frame_start_or_end_are_capped_kept_and_the_connection_closed(
    ingestion: tuple[int, str, str], kafka_bootstrap: str, codec: Codec
) -> None:
    """Unframed bytes are not buffered without end: past the message limit (4 KiB here) the
    first 4 KiB are a dead letter and the connection is closed."""
    port, _, dead = ingestion
    sent = 0
    with connect(port) as sock:
        try:
            while sent < 4 << 20:  # 4 MiB, a thousand times the limit
                sock.sendall(b"A" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""  # closed by the server
    assert sent < 4 << 20, "the server read 4 MiB of unframed bytes without closing"
    [(_, value)] = read_all(kafka_bootstrap, dead, expected=1)
    letter = codec.decode(value).record
    assert len(letter["original"]) == 4096 and set(letter["original"]) == {ord("A")}


def test_over_tls_a_sender_is_the_source_its_certificate_names_and_no_other(
    runtime_settings: RuntimeSettings, codec: Codec, new_topic: TopicFactory,
    kafka_state_dir: Path, tmp_path: Path, kafka_bootstrap: str,
) -> None:  # fmt: skip
    """MLLP with client certificates (from the development CA): HZ01's certificate may send
    HZ01's messages; a message naming BJ03 on it is refused, and a client without a certificate
    does not get in."""
    tls_dir = kafka_state_dir / "tls"
    certificate, key = devpki.issue_client_certificate(tls_dir / "ca.pem", "inst-HZ01", tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls_dir / "ca.pem")
    server_tls.load_cert_chain(tls_dir / "broker.crt", tls_dir / "broker.key")  # a CA-signed
    server_tls.verify_mode = ssl.CERT_REQUIRED  # server certificate for 127.0.0.1
    raw, dead = new_topic("raw", 1), new_topic("dead", 1)
    loop = LoopThread()
    producer = AsyncDurableProducer(runtime_settings, "mllp-tls-test", timeout=10)

    async def start() -> int:
        server = MllpServer(SourceRegistry.load(default_sources_dir()),
                            Store(codec, producer, raw, dead), CollectorRegistry())  # fmt: skip
        listening = await server.serve("127.0.0.1", 0, server_tls)
        return int(listening.sockets[0].getsockname()[1])

    port = loop.run(start())
    client = ssl.create_default_context(cafile=tls_dir / "ca.pem")
    client.load_cert_chain(certificate, key)
    anonymous = ssl.create_default_context(cafile=tls_dir / "ca.pem")

    def exchange(context: ssl.SSLContext, *payloads: bytes) -> list[dict[str, list[str]]]:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=15) as plain,
            context.wrap_socket(plain, server_hostname="127.0.0.1") as sock,
        ):
            acks = []
            for payload in payloads:
                sock.sendall(framed(payload))
                acks.append(read_ack(sock))
            return acks

    try:
        own, other = exchange(client, message("TLS-OWN"), message("TLS-OTHER", facility="BJ03"))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            exchange(anonymous, message("TLS-ANON"))
    finally:
        producer.close()
        loop.stop()
    assert own["MSA"][1] == "AA"
    assert other["MSA"][1] == "AR" and "another source" in "|".join(other["ERR"])
    assert len(read_all(kafka_bootstrap, raw, expected=1, idle=2)) == 1
