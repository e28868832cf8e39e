"""
Tests for L{dnstls.resolver.udpsocket.ConnectedUDP} on real loopback sockets: one
exchange with one server, its refusals reported, and nothing logged.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import globalLogPublisher

from dnstls.resolver.udpsocket import ConnectedUDP


class Recorder(DatagramProtocol):
    """Sends C{greeting} when started; records what comes back and how it ended."""

    noisy = False  # as the resolver's exchanges: Twisted's own start and stop lines off

    def __init__(self, greeting: bytes = b"hello") -> None:
        self.greeting = greeting
        self.received: list[tuple[bytes, Any]] = []
        self.refused = 0
        self.stopped = 0
        self.arrived: defer.Deferred[None] = defer.Deferred()

    def startProtocol(self) -> None:
        assert self.transport is not None
        self.transport.write(self.greeting)  # type: ignore[call-arg]

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((datagram, addr))
        if not self.arrived.called:
            self.arrived.callback(None)

    def connectionRefused(self) -> None:
        self.refused += 1
        if not self.arrived.called:
            self.arrived.callback(None)

    def stopProtocol(self) -> None:
        self.stopped += 1


@pytest.fixture
def echo() -> Iterator[socket.socket]:
    """A blocking UDP socket on loopback that the test answers from by hand."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    yield server
    server.close()


def closed_port() -> int:
    """A loopback UDP port nothing listens on (bound, then closed)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


async def arrival(protocol: Recorder) -> None:
    """Wait (five seconds at most) for the protocol's first datagram or refusal."""
    await protocol.arrived.addTimeout(5, reactor)


@pytest_twisted.ensureDeferred
async def test_exchange_with_the_server(echo: socket.socket) -> None:
    """The greeting reaches the server from a port of its own, and the server's reply reaches the protocol."""
    protocol = Recorder()
    host, port = echo.getsockname()
    transport = ConnectedUDP(reactor, protocol, host, port)
    try:
        greeting, source = echo.recvfrom(512)
        assert greeting == b"hello"
        assert source == transport.getHost()
        echo.sendto(b"reply", source)
        await arrival(protocol)
        assert protocol.received == [(b"reply", (host, port))]
    finally:
        transport.stopListening()


@pytest_twisted.ensureDeferred
async def test_other_senders_ignored(echo: socket.socket) -> None:
    """A datagram from another address than the server's never reaches the protocol."""
    protocol = Recorder()
    host, port = echo.getsockname()
    transport = ConnectedUDP(reactor, protocol, host, port)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        _, source = echo.recvfrom(512)
        stranger.sendto(b"spoofed", source)
        echo.sendto(b"genuine", source)
        await arrival(protocol)
        await task.deferLater(reactor, 0.1, lambda: None)
        assert [datagram for datagram, _ in protocol.received] == [b"genuine"]
    finally:
        stranger.close()
        transport.stopListening()


@pytest_twisted.ensureDeferred
async def test_port_unreachable_reported() -> None:
    """A server port nothing listens on is reported as a refusal (ICMP port unreachable)."""
    protocol = Recorder()
    transport = ConnectedUDP(reactor, protocol, "127.0.0.1", closed_port())
    try:
        await arrival(protocol)
        assert protocol.refused == 1
        assert protocol.received == []
    finally:
        transport.stopListening()


def test_source_ports_differ(echo: socket.socket) -> None:
    """Each exchange gets a port of its own from the kernel."""
    host, port = echo.getsockname()
    transports = [ConnectedUDP(reactor, Recorder(), host, port) for _ in range(20)]
    try:
        assert len({t.getHost()[1] for t in transports}) == 20
    finally:
        for transport in transports:
            transport.stopListening()


def test_stop_closes_and_stops_once(echo: socket.socket) -> None:
    """Stopping closes the socket, leaves the reactor and stops the protocol, once however often called."""
    protocol = Recorder()
    host, port = echo.getsockname()
    transport = ConnectedUDP(reactor, protocol, host, port)
    assert transport in reactor.getReaders()
    transport.stopListening()
    transport.stopListening()
    assert transport not in reactor.getReaders()
    assert transport.fileno() == -1
    assert protocol.stopped == 1
    transport.write(b"after the end")  # nothing raised, nothing sent


def test_nothing_logged(echo: socket.socket) -> None:
    """Opening and closing an exchange writes nothing to the log (Twisted's UDP port writes two lines)."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        host, port = echo.getsockname()
        ConnectedUDP(reactor, Recorder(), host, port).stopListening()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert events == []


def test_protocol_failing_to_start_leaves_nothing(echo: socket.socket) -> None:
    """A protocol whose start raises gets the error to its caller, and no reader or socket stays open."""

    class Failing(Recorder):
        def startProtocol(self) -> None:
            raise RuntimeError("cannot start")

    readers = set(reactor.getReaders())
    opened: list[socket.socket] = []
    real_socket = socket.socket

    def recording(*args: Any) -> socket.socket:
        sock = real_socket(*args)
        opened.append(sock)
        return sock

    host, port = echo.getsockname()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "socket", recording)
        with pytest.raises(RuntimeError, match="cannot start"):
            ConnectedUDP(reactor, Failing(), host, port)
    assert set(reactor.getReaders()) == readers
    assert len(opened) == 1 and opened[0].fileno() == -1
