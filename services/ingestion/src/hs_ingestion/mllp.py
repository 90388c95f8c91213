"""The MLLP listener (asyncio). Frames are <VT> message <FS><CR>; partial frames and several
frames in one read are handled, a frame without an end block is cut at the next start block,
bytes outside a frame are kept as a dead letter, an oversized frame closes the connection,
and an idle connection is closed after `idle_timeout`.

Every message is written to Kafka (acks=all) before it is answered: to the raw topic when it
can be kept, to the dead-letter topic when not. If Kafka does not confirm, the answer is AE
(CE in enhanced mode), never AA. A repeated message (same sender, MSH-10 and bytes) is
answered again without being written again, also after a restart (hs_ingestion.recent).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from hs_common.deadletter import Origin
from hs_common.errors import NotStoredError
from hs_ingestion.ack import (
    Outcome,
    Problem,
    acknowledgement,
    answers,
    batch_acknowledgement,
)
from hs_ingestion.hl7 import Message, is_batch, split_messages
from hs_ingestion.intake import HL7_CONTENT_TYPE, Kept, receive_hl7
from hs_ingestion.recent import RecentMessages
from hs_ingestion.sources import SourceRegistry
from hs_ingestion.store import Store

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"
STAGE = "ingestion.mllp"


@dataclass(frozen=True)
class MllpLimits:
    max_message_bytes: int = 1 << 20
    idle_timeout: float = 300.0
    recent_messages: int = 100_000  # remembered for repeat detection


@dataclass(frozen=True)
class Chunk:
    payload: bytes
    framed: bool  # a whole <VT>…<FS><CR> frame; otherwise broken framing


async def read_chunks(reader: asyncio.StreamReader, limits: MllpLimits) -> AsyncIterator[Chunk]:
    buffer = b""
    while True:
        try:
            async with asyncio.timeout(limits.idle_timeout):
                data = await reader.read(65536)
        except TimeoutError:
            return
        if not data:
            if buffer.strip():
                yield Chunk(buffer, framed=False)
            return
        buffer += data
        while buffer:
            start = buffer.find(START)
            if start == -1:
                end = buffer.find(END)
                if end == -1:
                    if len(buffer) > limits.max_message_bytes:  # no frame start or end at all
                        yield Chunk(buffer[: limits.max_message_bytes], framed=False)
                        raise MessageTooLarge
                    break
                yield Chunk(buffer[:end], framed=False)  # frame without a start block
                buffer = buffer[end + len(END) :]
                continue
            if start > 0:
                if buffer[:start].strip():
                    yield Chunk(buffer[:start].removesuffix(END), framed=False)
                buffer = buffer[start:]
            end = buffer.find(END)
            next_start = buffer.find(START, 1)
            if next_start != -1 and (end == -1 or next_start < end):
                yield Chunk(
                    buffer[1:next_start], framed=False
                )  # no end block before the next frame
                buffer = buffer[next_start:]
                continue
            if end == -1:
                if len(buffer) > limits.max_message_bytes:
                    yield Chunk(buffer[1 : limits.max_message_bytes], framed=False)
                    raise MessageTooLarge
                break
            yield Chunk(buffer[1:end], framed=True)
            buffer = buffer[end + len(END) :]


def certified_source(certificate: object) -> str | None:
    """The source a client certificate names: its common name, `inst-<code>` (as on the
    broker) or the code itself; None without a certificate."""
    if not isinstance(certificate, dict):
        return None
    for attributes in certificate.get("subject", ()):
        for name, value in attributes:
            if name == "commonName":
                return str(value).removeprefix("inst-")
    return None


class MessageTooLarge(Exception):
    pass


class MllpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.answers = Counter(
            "hs_mllp_answers", "Acknowledgements sent by outcome", ["outcome"], registry=registry
        )
        self.framing = Counter(
            "hs_mllp_framing_errors", "Broken MLLP frames kept as dead letters", registry=registry
        )
        self.repeats = Counter(
            "hs_mllp_repeats",
            "Repeated messages answered without a second write",
            registry=registry,
        )
        self.ack_seconds = Histogram(
            "hs_mllp_ack_seconds",
            "From a complete frame to its acknowledgement being sent",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
            registry=registry,
        )


class MllpServer:
    def __init__(
        self,
        sources: SourceRegistry,
        store: Store,
        registry: CollectorRegistry,
        limits: MllpLimits | None = None,
    ) -> None:
        self.sources = sources
        self.store = store
        self.limits = limits or MllpLimits()
        self.metrics = MllpMetrics(registry)
        self.recent = RecentMessages(self.limits.recent_messages)
        self._connections: set[asyncio.Task[None]] = set()

    async def serve(
        self, host: str, port: int, tls: ssl.SSLContext | None = None
    ) -> asyncio.Server:
        """Listen on host:port; with `tls` (which should require client certificates), each
        connection is the source its certificate names, and may send only as that source."""
        server = await asyncio.start_server(
            self._connection, host, port, limit=self.limits.max_message_bytes * 2, ssl=tls
        )
        log.info("mllp listening", extra={"port": server.sockets[0].getsockname()[1]})
        return server

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = "{}:{}".format(*writer.get_extra_info("peername")[:2])
        port = int(writer.get_extra_info("sockname")[1])
        sender = certified_source(writer.get_extra_info("peercert"))
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            async for chunk in read_chunks(reader, self.limits):
                started = time.perf_counter()
                frames = await self.answer(chunk, peer, port, sender)
                if frames:
                    writer.write(b"".join(START + frame + END for frame in frames))
                    await writer.drain()
                    self.metrics.ack_seconds.observe(time.perf_counter() - started)
        except MessageTooLarge:
            log.warning("frame over the size limit; connection closed", extra={"peer": peer})
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def drain(self) -> None:
        """Let connections finish the message in hand (graceful shutdown)."""
        if self._connections:
            await asyncio.wait(self._connections, timeout=10)

    async def answer(
        self, chunk: Chunk, peer: str, port: int | None = None, sender: str | None = None
    ) -> list[bytes]:
        """Store, then answer one frame: the acknowledgements due, one frame each; none for
        broken framing or an enhanced-mode message that asks for none. A batch (FHS/BHS) is
        split into its messages, each kept or refused on its own, and answered with a batch."""
        if not chunk.framed:
            self.metrics.framing.inc()
            problem = Problem(
                "mllp.framing", "frame", "MLLP framing broken: start or end block missing"
            )
            try:
                await self._refuse(chunk.payload, problem, "unknown", None, peer)
            except NotStoredError:
                log.exception("dead letter not stored", extra={"peer": peer})
            return []
        messages = split_messages(chunk.payload) if is_batch(chunk.payload) else []
        if messages:  # (a batch holding no message is answered as what it is: no message)
            due = [a for m in messages for a in await self._message(m, peer, port, sender)]
            return [batch_acknowledgement(due)] if due else []
        return await self._message(chunk.payload, peer, port, sender)

    async def _message(
        self, payload: bytes, peer: str, port: int | None, sender: str | None = None
    ) -> list[bytes]:
        keyring = self.store.codec.keyring
        result = receive_hl7(payload, self.sources, keyring, port=port, authenticated=sender)
        if isinstance(result, Kept):
            return await self._keep(result)
        try:
            await self._refuse(
                payload, result.problem, result.institution, result.sender_message_id, peer
            )
        except NotStoredError:
            return self._not_stored(result.message)
        self.metrics.answers.labels(result.outcome.value).inc()
        log.info("message refused", extra={"peer": peer, "reason_code": result.problem.reason_code})
        return answers(result.message, result.outcome, result.problem)

    async def _keep(self, kept: Kept) -> list[bytes]:
        if kept.dedup_key in self.recent:
            self.metrics.repeats.inc()
            self.recent.first_seen(kept.dedup_key)
            return answers(kept.message, Outcome.ACCEPTED)
        try:
            await self.store.keep(kept.record, kept.key)
        except NotStoredError:
            return self._not_stored(kept.message)
        self.recent.first_seen(kept.dedup_key)
        self.metrics.answers.labels(Outcome.ACCEPTED.value).inc()
        return answers(kept.message, Outcome.ACCEPTED)

    def _not_stored(self, message: Message | None) -> list[bytes]:
        self.metrics.answers.labels("not_stored").inc()
        problem = Problem(
            "not_stored", "message", "not stored: the platform could not write it; resend later"
        )
        return [acknowledgement(message, Outcome.ERROR, problem)]  # always: it must resend

    async def _refuse(
        self,
        payload: bytes,
        problem: Problem,
        institution: str,
        sender_message_id: str | None,
        peer: str,
    ) -> None:
        origin = Origin(
            "MLLP", peer=peer, sender_message_id=sender_message_id, content_type=HL7_CONTENT_TYPE
        )
        await self.store.refuse(
            STAGE,
            problem.reason_code,
            f"{problem.where}: {problem.text}",
            payload,
            origin,
            institution,
        )
