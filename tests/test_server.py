"""
Tests for L{dnstls.server}: the running server's periodic work, here the
rotation of TLS session-ticket keys, what it closes when it stops, and the
zones it logs and hands the handler at a reload.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from dnstls.server import ServerService
from dnstls.tap import Options, makeService
from dnstls.testing import start_server
from tests.support import ZONES, DnstlsProcess
from tests.zones.test_zoneset import break_, write

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


#: TCP states in /proc/net/tcp
_ESTABLISHED = "01"


def established_to(port: int) -> list[int]:
    """
    The remote ports of the established IPv4 TCP connections whose local
    port is C{port}: the connections a server on that port holds open.
    """
    ports = []
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == _ESTABLISHED and int(local.rpartition(":")[2], 16) == port:
                ports.append(int(remote.rpartition(":")[2], 16))
    return ports


@pytest_twisted.inlineCallbacks
def test_stop_closes_upstream_connections(tmp_path: Path) -> Generator[Any, Any, None]:
    """When the server stops, its DoT upstream sees the forwarding connection close."""
    with start_server({"www": ["A 192.0.2.80"]}) as upstream:
        host, port = upstream.tls
        options = Options()
        options.parseOptions(
            [
                "--zones", str(tmp_path), "--listen", "127.0.0.1:0",
                "--forward-tls", f"{host}:{port}#{upstream.server_name}",
                "--forward-tls-ca", upstream.ca_path,
            ]
        )
        service = makeService(options, reactor)
        service.startService()
        try:
            assert service.handler.recursion is not None
            answer = yield service.handler.recursion.resolve(
                dns.name.from_text("www.example.test."), dns.rdatatype.A, dns.rdataclass.IN, False
            )
            assert [str(r) for r in answer.answer[0]] == ["192.0.2.80"]
            assert len(established_to(port)) == 1
        finally:
            yield service.stopService()
        deadline = time.monotonic() + 5
        while established_to(port) and time.monotonic() < deadline:
            yield deferLater(reactor, 0.05, lambda: None)
        assert established_to(port) == []


def serving(zones: Path) -> ServerService:
    """
    The server of the zones in C{zones}, on a memory reactor, not started.
    """
    options = Options()
    options.parseOptions(
        ["--zones", str(zones), "--listen", "127.0.0.1:0", "--no-recursion", "--starttls", "off"]
    )
    service = makeService(options, MemoryReactorClock())
    assert isinstance(service, ServerService)
    return service


def reload_logged(service: ServerService) -> tuple[bool, list[tuple[LogLevel, str]]]:
    """
    What C{service.reload()} fires with (at once: a memory reactor has no threads), and the
    level and text of each line it logs.
    """
    results: list[bool] = []
    with capturedLogs() as events:
        service.reload().addCallback(results.append)
    [ok] = results
    return ok, [(event["log_level"], formatEvent(event)) for event in events]


def test_reload_zones(tmp_path: Path) -> None:
    """A reload logs one line per zone and a summary, hands the handler new zones only when one
    changed, and says whether every zone file loaded."""
    changed = write(tmp_path / "changed.test.zone", "changed.test.")
    broken = write(tmp_path / "broken.test.zone", "broken.test.")
    service = serving(tmp_path)
    try:
        first = service.handler.zones
        assert reload_logged(service) == (
            True,
            [
                (LogLevel.info, "reload: zone broken.test.: serial 1, unchanged"),
                (LogLevel.info, "reload: zone changed.test.: serial 1, unchanged"),
                (
                    LogLevel.info,
                    "reload: serving 2 zones: broken.test. (serial 1), changed.test. (serial 1)",
                ),
            ],
        )
        assert service.handler.zones is first
        write(changed, "changed.test.", serial=2)
        break_(broken, "broken.test.")
        ok, lines = reload_logged(service)
        assert not ok
        assert [level for level, _ in lines] == [LogLevel.error, LogLevel.info, LogLevel.info]
        assert lines[0][1].startswith(
            f"reload: zone broken.test.: not reloaded, still serving serial 1: {broken}:6: "
        )
        assert lines[1][1] == f"reload: zone changed.test.: serial 1 -> 2, reloaded from {changed}"
        assert service.handler.zones is not first
        assert sorted(zone.serial for zone in service.handler.zones) == [1, 2]
    finally:
        service.listening.close()


def test_reload_unlistable_directory(tmp_path: Path) -> None:
    """A zones directory gone at a reload keeps every zone served, with one error line."""
    zones = tmp_path / "zones"
    zones.mkdir()
    write(zones / "a.test.zone", "a.test.")
    service = serving(zones)
    try:
        first = service.handler.zones
        (zones / "a.test.zone").unlink()
        zones.rmdir()
        ok, lines = reload_logged(service)
        assert not ok
        assert [level for level, _ in lines] == [LogLevel.error]
        assert lines[0][1].startswith(f"reload: keeping the zones served: {zones}: cannot list")
        assert service.handler.zones is first
    finally:
        service.listening.close()
