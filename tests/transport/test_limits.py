"""
Tests for L{dnstls.transport.limits} in memory, with a L{Clock}: idle
timeouts and keepalive as the table fills, which connection is closed to
make room, and the caps per address and per prefix.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock

from dnstls.handler import Handler
from dnstls.transport.framing import frame
from dnstls.transport.limits import ConnectionLimits, Pressure, prefix_key
from dnstls.transport.stream import DNSStreamFactory, DNSStreamProtocol
from tests.support import ZONES, load_store
from tests.transport.test_protocol import RecordingTransport, query, replies


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler(load_store(ZONES, []))


def factory(handler: Handler, clock: Clock, total: int, idle_timeout: float = 10.0) -> DNSStreamFactory:
    return DNSStreamFactory(handler, clock, idle_timeout=idle_timeout, limits=ConnectionLimits(total=total))


def connect(factory: DNSStreamFactory, n: int) -> tuple[DNSStreamProtocol, Any]:
    """A connection from 198.51.100.C{n}, its own address."""
    protocol = factory.buildProtocol(IPv4Address("TCP", f"198.51.100.{n}", 40000))
    assert protocol is not None
    transport = RecordingTransport()
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


def test_idle_timeout_cut_past_half(handler: Handler) -> None:
    """
    Once half the table is open, idle clocks already running are cut to a tenth of the timeout (10 s
    to 1 s), and new ones start at it.
    """
    clock = Clock()
    streams = factory(handler, clock, total=10)
    early = [connect(streams, n)[1] for n in range(4)]
    clock.advance(5)
    assert streams.limits.pressure is Pressure.NORMAL
    _, fifth = connect(streams, 4)
    assert streams.limits.pressure is Pressure.SHORT
    clock.advance(0.9)
    assert not any(t.disconnecting for t in [*early, fifth])
    clock.advance(0.1)
    assert all(t.disconnecting for t in [*early, fifth])


def test_idle_timeout_floor(handler: Handler) -> None:
    """Under pressure the idle timeout is never under 1 s, nor over the configured one."""
    limits = ConnectionLimits(total=10)
    limits.pressure = Pressure.SHORT
    assert limits.idle_timeout(30) == 3
    assert limits.idle_timeout(5) == 1
    assert limits.idle_timeout(0.5) == 0.5


def test_keepalive_follows_pressure(handler: Handler) -> None:
    """
    Keepalive advertises the idle timeout (100), a tenth of it past half the table (10), and 0 from
    nine tenths.
    """
    clock = Clock()
    streams = factory(handler, clock, total=10)
    first, _ = connect(streams, 0)
    assert first.keepalive() == 100
    for n in range(1, 5):
        connect(streams, n)
    assert first.keepalive() == 10
    for n in range(5, 9):
        connect(streams, n)
    assert first.keepalive() == 0


def test_told_zero_closed_after_grace(handler: Handler) -> None:
    """
    Near the cap a connection answered with keepalive 0 is closed 0.5 s after its answer; one not
    told so keeps the short timeout.
    """
    clock = Clock()
    streams = factory(handler, clock, total=10, idle_timeout=100)
    conns = [connect(streams, n) for n in range(9)]
    told, told_transport = conns[0]
    told.dataReceived(frame(query(qid=1).to_wire()))
    assert [r.id for r in replies(told_transport.value())] == [1]
    clock.advance(0.5)
    assert told_transport.disconnecting
    assert not any(t.disconnecting for _, t in conns[1:])


def test_room_made_from_told_zero_first(handler: Handler) -> None:
    """
    With the table full, a connection told keepalive 0 is closed for a new one before others idle
    longer; then the one idle longest.
    """
    clock = Clock()
    streams = factory(handler, clock, total=10, idle_timeout=100)
    conns = [connect(streams, n) for n in range(10)]
    clock.advance(0.1)
    told, told_transport = conns[5]
    told.dataReceived(frame(query(qid=1).to_wire()))
    clock.advance(0.1)
    connect(streams, 10)
    assert told_transport.disconnecting
    assert [t.disconnecting for _, t in conns].count(True) == 1
    connect(streams, 11)
    assert conns[0][1].disconnecting
    assert streams.limits.evicted == 2
    assert len(streams.connections) == 10


def test_full_of_connections_owing_refuses(handler: Handler) -> None:
    """With the table full of connections owing answers, a new connection is refused and none is closed."""

    class Later:
        def handle(self, wire: bytes, context: object) -> object:
            from twisted.internet.defer import Deferred

            return Deferred()

    clock = Clock()
    streams = DNSStreamFactory(Later(), clock, limits=ConnectionLimits(total=3))  # type: ignore[arg-type]
    conns = [connect(streams, n) for n in range(3)]
    for protocol, _ in conns:
        protocol.dataReceived(frame(query().to_wire()))
    assert streams.buildProtocol(IPv4Address("TCP", "203.0.113.1", 1)) is None
    assert not any(t.disconnecting for _, t in conns)


def test_pressure_comes_down_below_hysteresis(handler: Handler) -> None:
    """The short timeouts last until the table is a tenth below half, not just below it."""
    clock = Clock()
    streams = factory(handler, clock, total=10)
    conns = [connect(streams, n) for n in range(5)]
    assert streams.limits.pressure is Pressure.SHORT
    conns[0][1].loseConnection()
    assert streams.limits.pressure is Pressure.SHORT
    conns[1][1].loseConnection()
    assert streams.limits.pressure is Pressure.NORMAL


def test_per_prefix_cap() -> None:
    """
    A /24 holds at most per_prefix connections, counted across its addresses, alongside the per-
    address cap; another /24 is let in.
    """
    clock = Clock()
    limits = ConnectionLimits(total=100, per_client=2, per_prefix=3)
    streams = DNSStreamFactory(Handler(load_store(ZONES, [])), clock, limits=limits)

    def build(host: str) -> DNSStreamProtocol | None:
        protocol = streams.buildProtocol(IPv4Address("TCP", host, 40000))
        if protocol is not None:
            transport = RecordingTransport()
            transport.protocol = protocol
            protocol.makeConnection(transport)
        return protocol

    assert build("192.0.2.1") and build("192.0.2.1")
    assert build("192.0.2.1") is None
    assert build("192.0.2.200")
    assert limits.refusal("192.0.2.9") == "3 connections from 192.0.2.0/24"
    assert build("192.0.2.9") is None
    assert build("192.0.3.9")


def test_per_prefix_cap_ipv6() -> None:
    """IPv6 clients are counted by /56: two /64s of one /56 share its cap, the next /56 does not."""
    limits = ConnectionLimits(total=100, per_client=5, per_prefix=2)
    streams = DNSStreamFactory(Handler(load_store(ZONES, [])), Clock(), limits=limits)
    for host in ("2001:db8:0:1::1", "2001:db8:0:ff::1"):
        protocol = streams.buildProtocol(IPv6Address("TCP", host, 40000))
        assert protocol is not None
        transport = RecordingTransport()
        transport.protocol = protocol
        protocol.makeConnection(transport)
    assert streams.buildProtocol(IPv6Address("TCP", "2001:db8:0:2::1", 1)) is None
    assert streams.buildProtocol(IPv6Address("TCP", "2001:db8:0:100::1", 1)) is not None


@pytest.mark.parametrize(
    ("host", "v4", "v6", "key"),
    [
        ("192.0.2.77", 24, 56, "192.0.2.0/24"),
        ("192.0.2.77", 32, 56, "192.0.2.77/32"),
        ("::ffff:192.0.2.77", 24, 56, "192.0.2.0/24"),
        ("2001:db8:1:2:3::4", 24, 56, "2001:db8:1::/56"),
        ("2001:db8:1:2:3::4", 24, 64, "2001:db8:1:2::/64"),
        ("fe80::1%eth0", 24, 64, "fe80::/64"),
        ("not an address", 24, 56, "not an address"),
    ],
)
def test_prefix_key(host: str, v4: int, v6: int, key: str) -> None:
    """A client's network is its address cut to the configured length, an IPv4-mapped address as IPv4."""
    assert prefix_key(host, v4, v6) == key


def test_per_prefix_default() -> None:
    """By default a prefix may hold four times the per-address cap."""
    assert ConnectionLimits(per_client=32).per_prefix == 128
    assert ConnectionLimits(per_client=5).per_prefix == 20
