"""Wait until a Kafka broker answers a Metadata request listing at least one broker.

Standard library only, so the broker script needs no virtualenv. Speaks Metadata v4
(a version Kafka 4.x still serves), over mutual TLS with the broker's own certificate
when --tls-dir names the folder holding ca.pem, broker.crt and broker.key. Exits 0 when
ready, 1 on timeout or when the broker process (--pid) dies, printing the end of its log
(--log).
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import struct
import sys
import time
from pathlib import Path

METADATA_API_KEY = 3
METADATA_VERSION = 4


def metadata_request(correlation_id: int) -> bytes:
    client_id = b"healthstream-wait-ready"
    header = struct.pack(
        ">hhih", METADATA_API_KEY, METADATA_VERSION, correlation_id, len(client_id)
    )
    body = struct.pack(">ib", -1, 0)  # all topics, no auto-creation
    payload = header + client_id + body
    return struct.pack(">i", len(payload)) + payload


def read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


def tls_context(tls_dir: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
    context.load_cert_chain(tls_dir / "broker.crt", tls_dir / "broker.key")
    return context


def broker_count(host: str, port: int, timeout: float, tls: ssl.SSLContext | None) -> int:
    with socket.create_connection((host, port), timeout=timeout) as plain:
        sock = tls.wrap_socket(plain, server_hostname=host) if tls else plain
        sock.sendall(metadata_request(correlation_id=7))
        (size,) = struct.unpack(">i", read_exact(sock, 4))
        response = read_exact(sock, size)
    correlation_id, _throttle, brokers = struct.unpack(">iii", response[:12])
    if correlation_id != 7:
        raise ConnectionError("unexpected correlation id in metadata response")
    return int(brokers)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/status").read_text().count("State:\tZ")


def log_tail(path: str | None, lines: int = 40) -> str:
    if not path or not Path(path).exists():
        return ""
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap", help="host:port")
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--pid", type=int)
    parser.add_argument("--log")
    parser.add_argument("--tls-dir", type=Path)
    args = parser.parse_args()
    tls = tls_context(args.tls_dir) if args.tls_dir else None
    host, port = args.bootstrap.rsplit(":", 1)
    deadline = time.monotonic() + args.timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if args.pid and not process_alive(args.pid):
            print(
                f"broker process {args.pid} exited; log tail:\n{log_tail(args.log)}",
                file=sys.stderr,
            )
            return 1
        try:
            if broker_count(host, int(port), timeout=2.0, tls=tls) > 0:
                return 0
            last_error = "metadata lists no broker yet"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.2)
    print(
        f"broker at {args.bootstrap} not ready after {args.timeout:.0f} s ({last_error}); "
        f"log tail:\n{log_tail(args.log)}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
