"""
Tests for L{dnstls.server}: the running server's periodic work, here the
rotation of TLS session-ticket keys.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from pathlib import Path

import dns.message

from tests.support import ZONES, DnstlsProcess

NAME = "dns.example.test"


def start(tmp_path: Path, *extra: str) -> DnstlsProcess:
    return DnstlsProcess(
        [
            "--zones", str(ZONES), "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
            "--state-dir", str(tmp_path), "--tls-name", NAME, *extra,
        ]
    )


def connect(
    server: DnstlsProcess, context: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[bool, ssl.SSLSession | None]:
    """
    One TLS 1.2 connection that asks one question; whether it resumed
    C{session}, and the session to resume next time.
    """
    host, port = server.address("tls")
    with socket.create_connection((host, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=NAME, session=session) as tls:
            wire = dns.message.make_query("www.corner.test.", "A").to_wire()
            tls.sendall(struct.pack("!H", len(wire)) + wire)
            (length,) = struct.unpack("!H", tls.recv(2))
            assert len(tls.recv(length)) > 0
            return tls.session_reused, tls.session


def test_ticket_rotation_forces_one_full_handshake(tmp_path: Path) -> None:
    """After a ticket-key rotation an old ticket no longer resumes; the new one does."""
    server = start(tmp_path, "--tls-ticket-rotation", "1")
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "dnstls-selfsigned.pem"))
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        _, session = connect(server, context, None)
        resumed, session = connect(server, context, session)
        assert resumed
        deadline = time.monotonic() + 10
        while not any("ticket keys rotated" in line for line in server.lines):
            assert time.monotonic() < deadline, "no rotation logged"
            time.sleep(0.05)
        resumed, session = connect(server, context, session)
        assert not resumed
        resumed, _ = connect(server, context, session)
        assert resumed
    finally:
        server.stop()


def test_no_rotation_by_default_within_a_day(tmp_path: Path) -> None:
    """With the default period (a day) a ticket still resumes seconds later."""
    server = start(tmp_path)
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "dnstls-selfsigned.pem"))
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        _, session = connect(server, context, None)
        time.sleep(1.2)
        resumed, _ = connect(server, context, session)
        assert resumed
        assert not any("ticket keys rotated" in line for line in server.lines)
    finally:
        server.stop()
