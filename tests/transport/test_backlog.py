"""
Tests for L{dnstls.transport.backlog} and the bounds it sets on a stream
connection, in memory: unsent replies over the per-connection bound pause
reading, the queries read and not answered wait and are answered once the
client has read, a total across connections pauses the biggest holders,
a connection whose replies stay unread is aborted, and a message begun
must be finished within the I/O timeout.
"""

from __future__ import annotations

import struct
from typing import Any

import dns.message
import pytest
from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from dnstls.certs import generate_self_signed
from dnstls.handler import Handler
from dnstls.testing.faults import FaultInjector, Faults
from dnstls.testing.querylog import QueryLog
from dnstls.transport.backlog import Backlog
from dnstls.transport.framing import frame
from dnstls.transport.stream import DNSStreamFactory, DNSStreamProtocol
from dnstls.transport.tls import TLSPolicy
from dnstls.transport.upgrade import Upgrade, UpgradePolicy
from tests.support import ZONES, load_store

PEER = IPv4Address("TCP", "192.0.2.7", 40000)


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler(load_store(ZONES, []))


class FakeTCP(tcp.Connection):
    """
    A Twisted TCP connection with no socket: what is written stays in
    Twisted's buffer until L{take} lets the network have some.
    """

    def __init__(self) -> None:
        FileDescriptor.__init__(self, reactor=Clock())  # type: ignore[arg-type]
        self.connected = 1
        self.socket: Any = None
        self.reading = True
        self.aborted = False
        self.taken = bytearray()
        self._room = 0

    def getPeer(self) -> IPv4Address:
        return PEER

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def startReading(self) -> None:
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startWriting(self) -> None:
        pass

    def stopWriting(self) -> None:
        pass

    def writeSomeData(self, data: bytes) -> int:
        n = min(len(data), self._room)
        self.taken += data[:n]
        self._room -= n
        return n

    def abortConnection(self) -> None:
        self.aborted = True
        self.connected = 0

    def loseConnection(self, reason: Any = None) -> None:
        self.disconnecting = True

    def take(self, octets: int) -> None:
        """Let the network take up to C{octets} of what is buffered."""
        self._room = octets
        while self._room and (len(self.dataBuffer) - self.offset + self._tempDataLen):
            self.doWrite()


def big_query(qid: int) -> bytes:
    query = dns.message.make_query("big.corner.test.", "TXT")
    query.id = qid
    return frame(query.to_wire())


def reply_ids(data: bytes) -> list[int]:
    ids = []
    offset = 0
    while offset + 2 <= len(data):
        (length,) = struct.unpack_from("!H", data, offset)
        ids.append(struct.unpack_from("!H", data, offset + 2)[0])
        offset += 2 + length
    return ids


def connect(factory: DNSStreamFactory, transport: Any) -> DNSStreamProtocol:
    protocol = factory.buildProtocol(PEER)
    assert protocol is not None
    protocol.makeConnection(transport)
    return protocol


def test_over_bound_pauses_and_waiting_queries_answered_later(handler: Handler) -> None:
    """Past 16 kB unsent a connection stops reading; once the client reads, all is answered in order."""
    clock = Clock()
    factory = DNSStreamFactory(handler, clock, backlog=Backlog(per_connection=16384))
    transport = FakeTCP()
    protocol = connect(factory, transport)
    protocol.dataReceived(b"".join(big_query(n) for n in range(100)))
    assert protocol.paused and not transport.reading
    assert transport.producer is not None
    # about 16 kB of answers of 1900 octets each written, the rest waiting
    buffered = bytes(transport.dataBuffer[transport.offset :]) + b"".join(transport._tempDataBuffer)
    assert 8 <= len(reply_ids(buffered)) <= 10
    while protocol.paused:
        transport.take(10**9)
    transport.take(10**9)
    assert reply_ids(bytes(transport.taken)) == list(range(100))
    assert transport.reading and transport.producer is None
    assert protocol.unsent() == 0


def slow_path_factory(handler: Handler, clock: Clock, path: str) -> DNSStreamFactory:
    """
    A factory with a 16 kB bound whose replies go one by one: through the
    test kit's hooks (a C{--control} server), or, on TCP/53 that may be
    upgraded, in the read that brings the first query.
    """
    backlog = Backlog(per_connection=16384)
    if path == "hooks":
        hooks = FaultInjector(Faults(), QueryLog(), clock)
        return DNSStreamFactory(handler, clock, backlog=backlog, hooks=hooks)
    upgrade = Upgrade(UpgradePolicy.PROBE, TLSPolicy([generate_self_signed(("dns.example.test",))]), 30)
    return DNSStreamFactory(handler, clock, backlog=backlog, upgrade=upgrade)


@pytest.mark.parametrize("path", ["hooks", "first-read"])
def test_replies_one_by_one_written_a_bound_at_a_time(handler: Handler, path: str) -> None:
    """Replies written one by one stop at the bound as fast-path ones do; the rest come in order later."""
    clock = Clock()
    factory = slow_path_factory(handler, clock, path)
    transport = FakeTCP()
    protocol = connect(factory, transport)
    protocol.dataReceived(b"".join(big_query(n) for n in range(100)))
    assert protocol.paused and not transport.reading
    buffered = bytes(transport.dataBuffer[transport.offset :]) + b"".join(transport._tempDataBuffer)
    assert 8 <= len(reply_ids(buffered)) <= 10
    while protocol.paused:
        transport.take(10**9)
    transport.take(10**9)
    assert reply_ids(bytes(transport.taken)) == list(range(100))
    assert transport.reading and protocol.unsent() == 0


def test_paused_connection_aborted_after_idle_timeout(handler: Handler) -> None:
    """A connection whose replies stay unread for its idle timeout is aborted, not closed gracefully."""
    clock = Clock()
    factory = DNSStreamFactory(handler, clock, idle_timeout=3, backlog=Backlog(per_connection=4096))
    transport = FakeTCP()
    protocol = connect(factory, transport)
    protocol.dataReceived(b"".join(big_query(n) for n in range(10)))
    assert protocol.paused
    clock.advance(2.9)
    assert not transport.aborted
    clock.advance(0.1)
    assert transport.aborted and not transport.disconnecting


def test_reading_client_resets_stall(handler: Handler) -> None:
    """A client that takes its replies, a batch each 2 s, within the 3 s idle timeout keeps the connection."""
    clock = Clock()
    factory = DNSStreamFactory(handler, clock, idle_timeout=3, backlog=Backlog(per_connection=4096))
    transport = FakeTCP()
    protocol = connect(factory, transport)
    protocol.dataReceived(b"".join(big_query(n) for n in range(10)))
    for _ in range(10):
        clock.advance(2)
        transport.take(10**9)
        if len(reply_ids(bytes(transport.taken))) == 10:
            break
    assert not transport.aborted and not transport.disconnecting
    assert reply_ids(bytes(transport.taken)) == list(range(10))


def test_slow_reader_kept_while_it_drains(handler: Handler) -> None:
    """A client taking 4 kB per 100 ms, pauses outlasting the 1 s idle timeout, keeps it and gets all."""
    clock = Clock()
    factory = DNSStreamFactory(handler, clock, idle_timeout=1, backlog=Backlog(per_connection=65536))
    transport = FakeTCP()
    protocol = connect(factory, transport)
    protocol.dataReceived(b"".join(big_query(n) for n in range(200)))
    assert protocol.paused
    longest = paused_for = 0.0
    for _ in range(200):
        clock.advance(0.1)
        transport.take(4096)
        paused_for = paused_for + 0.1 if protocol.paused else 0.0
        longest = max(longest, paused_for)
        if len(reply_ids(bytes(transport.taken))) == 200:
            break
    assert longest > 1.5  # the client was slower than the idle timeout
    assert not transport.aborted and not transport.disconnecting
    assert reply_ids(bytes(transport.taken)) == list(range(200))


def test_reader_that_stops_aborted_one_idle_timeout_later(handler: Handler) -> None:
    """A paused client that reads a while, then stops, is aborted an idle timeout after its last read."""
    clock = Clock()
    factory = DNSStreamFactory(handler, clock, idle_timeout=1, backlog=Backlog(per_connection=65536))
    transport = FakeTCP()
    protocol = connect(factory, transport)
    protocol.dataReceived(b"".join(big_query(n) for n in range(200)))
    for _ in range(15):
        clock.advance(0.1)
        transport.take(4096)
    assert protocol.paused and not transport.aborted
    clock.advance(0.9)
    assert not transport.aborted
    clock.advance(1.1)
    assert transport.aborted and not transport.disconnecting


class Holding:
    """A connection holding a given number of unsent octets."""

    def __init__(self, unsent: int) -> None:
        self.held = unsent
        self.holds = 0

    def unsent(self) -> int:
        return self.held

    def hold(self) -> None:
        self.holds += 1


def test_total_pauses_the_biggest_holders() -> None:
    """Past the total, connections holding more than an even share stop reading; the others go on."""
    backlog = Backlog(per_connection=1000, total=1000)
    small, big, bigger = Holding(100), Holding(400), Holding(600)
    for holder in (small, big, bigger):
        backlog.wrote(holder, holder.held)
    assert (small.holds, big.holds, bigger.holds) == (0, 1, 1)


def test_total_counts_what_was_sent_since() -> None:
    """Holders that have since sent their replies are counted again before any is paused."""
    backlog = Backlog(per_connection=1000, total=1000)
    early, late = Holding(900), Holding(200)
    backlog.wrote(early, 900)
    early.held = 0
    backlog.wrote(late, 200)
    assert (early.holds, late.holds) == (0, 0)
    assert backlog.held == 200
    backlog.drained(late)
    assert backlog.held == 0


def test_total_passed_holds_connection(handler: Handler) -> None:
    """A connection under its own bound stops reading when all together pass the total."""
    clock = Clock()
    backlog = Backlog(per_connection=10**6, total=4096)
    factory = DNSStreamFactory(handler, clock, backlog=backlog)
    transport = FakeTCP()
    protocol = connect(factory, transport)
    protocol.dataReceived(big_query(1) + big_query(2) + big_query(3))
    assert protocol.paused and not transport.reading
    transport.take(10**9)
    assert not protocol.paused and transport.reading


def in_memory(handler: Handler, io_timeout: float) -> tuple[Clock, StringTransport, DNSStreamProtocol]:
    """A connection over a L{StringTransport}, with its clock, and this I/O timeout."""
    clock = Clock()
    transport = StringTransport(peerAddress=PEER)
    return clock, transport, connect(DNSStreamFactory(handler, clock, io_timeout=io_timeout), transport)


def test_partial_message_closed_after_io_timeout(handler: Handler) -> None:
    """One octet of a length, then nothing, closes the connection after the I/O timeout, before idle."""
    clock, transport, protocol = in_memory(handler, 0.5)
    protocol.dataReceived(big_query(1)[:1])
    clock.advance(0.49)
    assert not transport.disconnecting
    clock.advance(0.01)
    assert transport.disconnecting


def test_io_timeout_counts_from_first_octet(handler: Handler) -> None:
    """Octets trickling in do not restart the I/O clock: the message's first octet starts it."""
    clock, transport, protocol = in_memory(handler, 1)
    message = big_query(1)
    for octet in message[:10]:
        protocol.dataReceived(bytes([octet]))
        clock.advance(0.09)
    clock.advance(0.05)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_each_message_gets_its_own_io_timeout(handler: Handler) -> None:
    """A message finished within the I/O timeout is answered, and the next one starts its own clock."""
    clock, transport, protocol = in_memory(handler, 1)
    first, second = big_query(1), big_query(2)
    protocol.dataReceived(first[:5])
    clock.advance(0.9)
    protocol.dataReceived(first[5:] + second[:5])
    clock.advance(0.9)
    assert not transport.disconnecting
    protocol.dataReceived(second[5:])
    clock.advance(5)
    assert not transport.disconnecting
    assert reply_ids(transport.value()) == [1, 2]
    assert clock.getDelayedCalls()[0].getTime() == pytest.approx(1.8 + 10)


def test_io_clock_stops_while_paused(handler: Handler) -> None:
    """The rest of a message waiting unread while reading is paused does not count against the I/O timeout."""
    clock = Clock()
    factory = DNSStreamFactory(
        handler, clock, io_timeout=0.5, idle_timeout=10, backlog=Backlog(per_connection=4096)
    )
    transport = FakeTCP()
    protocol = connect(factory, transport)
    protocol.dataReceived(b"".join(big_query(n) for n in range(5)) + big_query(5)[:3])
    assert protocol.paused
    clock.advance(5)
    assert not transport.disconnecting and not transport.aborted
    transport.take(10**9)
    transport.take(10**9)
    assert not protocol.paused
    clock.advance(0.5)
    assert transport.disconnecting
