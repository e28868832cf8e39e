"""
DNS probes: whether a server answers over UDP, TCP or DoT, and whether a
port is free for it.
"""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from dnsbench.layout import TLS_NAME


def _query(qtype: int = 6, qid: int = 0x1234, qname: str = "example.test", rd: bool = False) -> bytes:
    labels = qname.rstrip(".").encode().split(b".")
    name = b"".join(bytes([len(p)]) + p for p in labels) + b"\0"
    flags = 0x0100 if rd else 0
    return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + name + struct.pack("!HH", qtype, 1)


def probe(
    addr: str,
    port: int,
    transport: str,
    ca: Path | None = None,
    qname: str = "example.test",
    qtype: int = 6,
    timeout: float = 1,
    rd: bool = False,
) -> bool:
    """
    Whether the server at C{addr}:C{port} answers C{qname} C{qtype}
    (example.test SOA unless told) with NOERROR and an answer over
    C{transport} (udp, tcp or dot), within C{timeout} seconds.
    """
    query = _query(qtype, qname=qname, rd=rd)
    try:
        if transport == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.settimeout(timeout)
                udp.sendto(query, (addr, port))
                reply = udp.recv(4096)
        else:
            with socket.create_connection((addr, port), timeout=timeout) as raw:
                s: Any = raw
                if transport == "dot":
                    context = ssl.create_default_context(cafile=str(ca))
                    s = context.wrap_socket(raw, server_hostname=TLS_NAME)
                s.sendall(struct.pack("!H", len(query)) + query)
                head = _read(s, 2)
                reply = _read(s, struct.unpack("!H", head)[0])
    except (OSError, ssl.SSLError, struct.error, ValueError):
        return False
    return (
        len(reply) >= 12
        and reply[:2] == query[:2]
        and reply[3] & 0x0F == 0
        and struct.unpack("!H", reply[6:8])[0] > 0
    )


def _read(s: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ValueError("closed")
        data += chunk
    return data


def wait_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    checks: list[tuple[int, str]],
    addr: str,
    ca: Path,
    limit: float = 30,
    rd: bool = False,
) -> None:
    """
    Wait until every (port, transport) in C{checks} answers, or fail.
    """
    deadline = time.monotonic() + limit
    pending = list(checks)
    while pending:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode} (see its log)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not answering on {pending} after {limit:.0f} s")
        port, transport = pending[0]
        if probe(addr, port, transport, ca, rd=rd):
            pending.pop(0)
        else:
            time.sleep(0.2)


def port_free(addr: str, port: int) -> bool:
    """
    Whether both UDP and TCP C{port} can be bound on C{addr}.
    """
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            # as the servers do: a port with connections in TIME_WAIT is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, port))
            except OSError:
                return False
    return True
