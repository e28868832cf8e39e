"""
Tests for L{dnstls.transport.stream} and L{dnstls.transport.udp}, in
memory: the stream protocol over a L{StringTransport} with a L{Clock}, and the UDP protocol over a fake
datagram transport.
"""

from __future__ import annotations

from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from twisted.logger import LogLevel, capturedLogs

from dnstls.context import QueryContext, Transport
from dnstls.handler import Handler
from dnstls.transport.framing import FrameDecoder, frame
from dnstls.transport.limits import DEFAULT_IDLE_TIMEOUT, ConnectionLimits
from dnstls.transport.stream import DNSStreamFactory, DNSStreamProtocol
from dnstls.transport.udp import DNSDatagramProtocol
from tests.support import ZONES, load_store

PEER = IPv4Address("TCP", "192.0.2.7", 40000)


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler(load_store(ZONES, []))


class RecordingTransport(StringTransportWithDisconnection):
    """
    A transport that records each C{write} call separately and whether
    Nagle's algorithm was turned off.
    """

    def __init__(self) -> None:
        super().__init__(peerAddress=PEER)
        self.writes: list[bytes] = []
        self.no_delay: bool | None = None
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled

    def loseConnection(self) -> None:
        self.disconnecting = True
        super().loseConnection()

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


class StuckTransport(StringTransport):
    """
    A transport whose peer never reads: C{loseConnection} never completes,
    only C{abortConnection} ends the connection.
    """

    def __init__(self) -> None:
        super().__init__(peerAddress=PEER)
        self.protocol: Any = None
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnecting = True
        if self.connected:
            self.connected = False
            self.protocol.connectionLost()


class StubHandler:
    """
    A handler that answers each query with a Deferred fired by the test,
    or raises, or answers at once, as told.
    """

    def __init__(self, real: Handler | None = None, mode: str = "defer") -> None:
        self.real = real
        self.mode = mode
        self.pending: list[tuple[bytes, Deferred[bytes | None]]] = []
        self.calls = 0

    def handle(self, wire: bytes, context: QueryContext) -> Any:
        self.calls += 1
        if self.mode == "raise":
            raise RuntimeError("handler bug")
        if self.mode == "now":
            assert self.real is not None
            return self.real.handle(wire, context)
        if self.mode == "fail":
            return fail(RuntimeError("deferred handler bug"))
        d: Deferred[bytes | None] = Deferred()
        self.pending.append((wire, d))
        return d

    def answer(self, index: int) -> None:
        """Fire the C{index}th pending Deferred with the real answer."""
        assert self.real is not None
        wire, d = self.pending[index]
        d.callback(self.real.handle(wire, QueryContext(Transport.TCP, ("192.0.2.7", 40000))))


def connect(
    factory: DNSStreamFactory, transport: StringTransport | None = None
) -> tuple[DNSStreamProtocol, Any]:
    """Build a protocol from C{factory} and connect it to a recording transport."""
    protocol = factory.buildProtocol(PEER)
    assert protocol is not None
    if transport is None:
        transport = RecordingTransport()
    transport.protocol = protocol  # type: ignore[attr-defined]
    protocol.makeConnection(transport)
    return protocol, transport


def query(name: str = "www.example.test.", rdtype: str = "A", qid: int = 1) -> dns.message.Message:
    message = dns.message.make_query(name, rdtype)
    message.id = qid
    return message


def replies(data: bytes) -> list[dns.message.Message]:
    """Every framed response in C{data}, parsed."""
    decoder = FrameDecoder()
    messages = decoder.feed(data)
    assert decoder.pending == 0
    return [dns.message.from_wire(m) for m in messages]


def problems(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The logged events an operator would see as errors or warnings."""
    return [e for e in events if "log_failure" in e or e.get("log_level", LogLevel.info) >= LogLevel.warn]


def test_one_byte_at_a_time(handler: Handler) -> None:
    """A query delivered one byte per dataReceived gets exactly one correct answer."""
    protocol, transport = connect(DNSStreamFactory(handler, Clock()))
    stream = frame(query(qid=4242).to_wire())
    for i in range(len(stream)):
        protocol.dataReceived(stream[i : i + 1])
        if i < len(stream) - 1:
            assert transport.value() == b""
    [reply] = replies(transport.value())
    assert reply.id == 4242
    assert reply.rcode() == dns.rcode.NOERROR
    assert [str(r) for r in reply.answer[0]] == ["192.0.2.80"]
    assert not transport.disconnecting


def test_pipelined_one_write(handler: Handler) -> None:
    """Ten queries in one dataReceived get ten answers, in order, framed whole in one write call."""
    protocol, transport = connect(DNSStreamFactory(handler, Clock()))
    queries = [query(qid=100 + n) for n in range(10)]
    protocol.dataReceived(b"".join(frame(q.to_wire()) for q in queries))
    [written] = transport.writes
    answers = replies(written)
    assert [a.id for a in answers] == [q.id for q in queries]
    assert all(a.rcode() == dns.rcode.NOERROR for a in answers)


def test_stream_context_never_truncates(handler: Handler) -> None:
    """The stream tells the handler it is TCP, so a reply too big for UDP comes whole."""
    protocol, transport = connect(DNSStreamFactory(handler, Clock()))
    protocol.dataReceived(frame(query("big.corner.test.", "TXT").to_wire()))
    [reply] = replies(transport.value())
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 18


def test_context_carries_peer_and_kind() -> None:
    """The handler is told the transport kind, the peer's address and the keepalive to advertise."""
    seen: list[QueryContext] = []

    class Spy:
        def handle(self, wire: bytes, context: QueryContext) -> None:
            seen.append(context)

    factory = DNSStreamFactory(Spy(), Clock(), Transport.TLS)  # type: ignore[arg-type]
    protocol, _ = connect(factory)
    protocol.dataReceived(frame(query().to_wire()))
    assert seen == [QueryContext(Transport.TLS, ("192.0.2.7", 40000), keepalive=100)]


@pytest.mark.parametrize("length", [0, 5, 11])
def test_short_length_closes(handler: Handler, length: int) -> None:
    """A length prefix of 0 or below 12 closes the connection without an answer."""
    protocol, transport = connect(DNSStreamFactory(handler, Clock()))
    protocol.dataReceived(length.to_bytes(2, "big") + b"\0" * length)
    assert transport.disconnecting
    assert transport.value() == b""


def test_good_query_before_bad_length_answered(handler: Handler) -> None:
    """A query pipelined before a zero length in the same read is answered before the close."""
    protocol, transport = connect(DNSStreamFactory(handler, Clock()))
    protocol.dataReceived(frame(query(qid=77).to_wire()) + b"\x00\x00")
    assert [r.id for r in replies(transport.value())] == [77]
    assert transport.disconnecting


def test_data_after_bad_length_ignored(handler: Handler) -> None:
    """Bytes arriving after a bad length was seen are neither answered nor an error."""
    protocol, transport = connect(DNSStreamFactory(handler, Clock()), StuckTransport())
    protocol.dataReceived(b"\x00\x03abc")
    with capturedLogs() as events:
        protocol.dataReceived(frame(query().to_wire()))
    assert transport.value() == b""
    assert problems(events) == []


def test_idle_default_ten_seconds(handler: Handler) -> None:
    """With no option the idle timeout is 10 s: open at 9.9 s, closed at 10 s."""
    assert DEFAULT_IDLE_TIMEOUT == 10
    clock = Clock()
    _, transport = connect(DNSStreamFactory(handler, clock))
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_idle_configured(handler: Handler) -> None:
    """A configured idle timeout of 2 s closes an idle connection after 2 s."""
    clock = Clock()
    _, transport = connect(DNSStreamFactory(handler, clock, idle_timeout=2))
    clock.advance(1.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_complete_message_resets_idle(handler: Handler) -> None:
    """A complete query restarts the idle clock."""
    clock = Clock()
    protocol, transport = connect(DNSStreamFactory(handler, clock))
    clock.advance(6)
    protocol.dataReceived(frame(query().to_wire()))
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_partial_message_does_not_reset_idle(handler: Handler) -> None:
    """Bytes trickled in without completing a message do not keep the connection open (I/O timeout aside)."""
    clock = Clock()
    protocol, transport = connect(DNSStreamFactory(handler, clock, io_timeout=60))
    stream = frame(query().to_wire())
    for i in range(10):
        protocol.dataReceived(stream[i : i + 1])
        clock.advance(0.99)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting
    assert transport.value() == b""


def test_idle_waits_for_owed_answer(handler: Handler) -> None:
    """An answer still owed keeps the connection open; the idle clock starts once it is sent."""
    clock = Clock()
    stub = StubHandler(handler)
    protocol, transport = connect(DNSStreamFactory(stub, clock))  # type: ignore[arg-type]
    protocol.dataReceived(frame(query(qid=9).to_wire()))
    clock.advance(60)
    assert not transport.disconnecting
    stub.answer(0)
    assert [r.id for r in replies(transport.value())] == [9]
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_out_of_order_answers(handler: Handler) -> None:
    """Pipelined answers are written as each is ready, not in query order."""
    stub = StubHandler(handler)
    protocol, transport = connect(DNSStreamFactory(stub, Clock()))  # type: ignore[arg-type]
    protocol.dataReceived(frame(query(qid=1).to_wire()) + frame(query(qid=2).to_wire()))
    stub.answer(1)
    stub.answer(0)
    assert [r.id for r in replies(transport.value())] == [2, 1]
    assert len(transport.writes) == 2


def test_failed_deferred_logged_and_idle_resumes(handler: Handler) -> None:
    """A handler Deferred that fails is logged, and the connection still closes when idle."""
    clock = Clock()
    stub = StubHandler(handler, mode="fail")
    with capturedLogs() as events:
        protocol, transport = connect(DNSStreamFactory(stub, clock))  # type: ignore[arg-type]
        protocol.dataReceived(frame(query().to_wire()))
    assert [e["log_failure"].type for e in events if "log_failure" in e] == [RuntimeError]
    assert transport.value() == b""
    clock.advance(10)
    assert transport.disconnecting


def test_handler_exception_logged_not_raised(handler: Handler) -> None:
    """A handler that raises is logged; dataReceived does not raise and the connection stays."""
    stub = StubHandler(handler, mode="raise")
    protocol, transport = connect(DNSStreamFactory(stub, Clock()))  # type: ignore[arg-type]
    with capturedLogs() as events:
        protocol.dataReceived(frame(query(qid=1).to_wire()) + frame(query(qid=2).to_wire()))
    assert stub.calls == 2
    assert [e["log_failure"].type for e in events if "log_failure" in e] == [RuntimeError] * 2
    assert not transport.disconnecting


def test_answer_already_fired(handler: Handler) -> None:
    """A handler Deferred that has already fired is written at once."""

    class Fired:
        def handle(self, wire: bytes, context: QueryContext) -> Deferred[bytes | None]:
            return succeed(handler.handle(wire, context))

    clock = Clock()
    protocol, transport = connect(DNSStreamFactory(Fired(), clock))  # type: ignore[arg-type]
    protocol.dataReceived(frame(query(qid=5).to_wire()))
    assert [r.id for r in replies(transport.value())] == [5]
    clock.advance(10)
    assert transport.disconnecting


def test_no_write_after_connection_lost(handler: Handler) -> None:
    """An answer that arrives after the peer left is not written and logs no error."""
    stub = StubHandler(handler)
    protocol, transport = connect(DNSStreamFactory(stub, Clock()))  # type: ignore[arg-type]
    protocol.dataReceived(frame(query().to_wire()))
    transport.loseConnection()
    assert protocol.closed
    with capturedLogs() as events:
        stub.answer(0)
    assert transport.writes == []
    assert problems(events) == []


def test_no_write_while_disconnecting(handler: Handler) -> None:
    """An answer that arrives after we started closing is not written."""
    clock = Clock()
    stub = StubHandler(handler)
    transport = StuckTransport()
    protocol, _ = connect(DNSStreamFactory(stub, clock), transport)  # type: ignore[arg-type]
    protocol.dataReceived(frame(query().to_wire()) + b"\x00\x00")
    assert transport.disconnecting
    stub.answer(0)
    assert transport.value() == b""


def test_late_answer_keeps_no_timer(handler: Handler) -> None:
    """After the peer left, a late answer starts no idle timer on the clock."""
    clock = Clock()
    stub = StubHandler(handler)
    protocol, transport = connect(DNSStreamFactory(stub, clock))  # type: ignore[arg-type]
    protocol.dataReceived(frame(query().to_wire()))
    transport.loseConnection()
    stub.answer(0)
    assert clock.getDelayedCalls() == []


def test_stuck_peer_aborted(handler: Handler) -> None:
    """A peer that never reads cannot hold a closing connection open: it is aborted one timeout later."""
    clock = Clock()
    transport = StuckTransport()
    factory = DNSStreamFactory(handler, clock, idle_timeout=2)
    protocol, _ = connect(factory, transport)
    clock.advance(2)
    assert transport.disconnecting and not transport.aborted
    assert protocol in factory.connections
    clock.advance(1.9)
    assert not transport.aborted
    clock.advance(0.1)
    assert transport.aborted
    assert protocol not in factory.connections
    assert clock.getDelayedCalls() == []


def test_nodelay_set(handler: Handler) -> None:
    """Nagle's algorithm is turned off when the transport can do it."""
    _, transport = connect(DNSStreamFactory(handler, Clock()))
    assert transport.no_delay is True


def test_no_nodelay_method_is_fine(handler: Handler) -> None:
    """A transport without setTcpNoDelay (a TLS wrapper, a pipe) still serves queries."""
    transport = StringTransportWithDisconnection(peerAddress=PEER)
    protocol, _ = connect(DNSStreamFactory(handler, Clock()), transport)
    protocol.dataReceived(frame(query(qid=3).to_wire()))
    assert [r.id for r in replies(transport.value())] == [3]


def test_nodelay_error_ignored(handler: Handler) -> None:
    """A setTcpNoDelay that fails with OSError does not stop the connection."""

    class Failing(RecordingTransport):
        def setTcpNoDelay(self, enabled: bool) -> None:
            raise OSError("not a TCP socket")

    protocol, transport = connect(DNSStreamFactory(handler, Clock()), Failing())
    protocol.dataReceived(frame(query(qid=3).to_wire()))
    assert [r.id for r in replies(transport.value())] == [3]


def test_connection_cap(handler: Handler) -> None:
    """
    At the cap, with every connection owing an answer, buildProtocol returns None; a slot frees when
    one closes.
    """
    stub = StubHandler(handler)
    factory = DNSStreamFactory(stub, Clock(), limits=ConnectionLimits(total=2))  # type: ignore[arg-type]
    first_protocol, first = connect(factory)
    second_protocol, _ = connect(factory)
    first_protocol.dataReceived(frame(query(qid=1).to_wire()))
    second_protocol.dataReceived(frame(query(qid=2).to_wire()))
    assert factory.buildProtocol(PEER) is None
    assert factory.buildProtocol(PEER) is None
    first.loseConnection()
    assert len(factory.connections) == 1
    protocol, transport = connect(factory)
    stub.mode = "now"
    protocol.dataReceived(frame(query(qid=8).to_wire()))
    assert [r.id for r in replies(transport.value())] == [8]


def test_full_table_closes_idle_longest(handler: Handler) -> None:
    """At the cap a new connection is let in and served, and the one idle longest is closed to make room."""
    clock = Clock()
    factory = DNSStreamFactory(handler, clock, idle_timeout=100, limits=ConnectionLimits(total=2))
    older, older_transport = connect(factory)
    clock.advance(1)
    newer, newer_transport = connect(factory)
    clock.advance(1)
    protocol, transport = connect(factory)
    assert older_transport.disconnecting and not newer_transport.disconnecting
    assert factory.connections == {newer, protocol}
    protocol.dataReceived(frame(query(qid=8).to_wire()))
    assert [r.id for r in replies(transport.value())] == [8]


def test_closed_connection_stops_its_timer(handler: Handler) -> None:
    """A connection the peer closed leaves nothing scheduled on the clock."""
    clock = Clock()
    protocol, transport = connect(DNSStreamFactory(handler, clock))
    protocol.dataReceived(frame(query().to_wire()) + b"\x00")
    transport.loseConnection()
    assert clock.getDelayedCalls() == []


class DatagramTransport:
    """A UDP transport that records what is sent where."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


def udp(handler: Any) -> tuple[DNSDatagramProtocol, DatagramTransport]:
    protocol = DNSDatagramProtocol(handler)
    transport = DatagramTransport()
    protocol.makeConnection(transport)  # type: ignore[arg-type]
    return protocol, transport


@pytest.mark.parametrize("addr", [("192.0.2.9", 5353), ("2001:db8::9", 5353, 0, 0)])
def test_udp_answers_sender(handler: Handler, addr: tuple[Any, ...]) -> None:
    """A UDP query is answered once, to the address it came from."""
    protocol, transport = udp(handler)
    protocol.datagramReceived(query(qid=31).to_wire(), addr)
    [(data, to)] = transport.sent
    assert to == addr
    reply = dns.message.from_wire(data)
    assert reply.id == 31
    assert [str(r) for r in reply.answer[0]] == ["192.0.2.80"]


def test_udp_truncates(handler: Handler) -> None:
    """The UDP protocol tells the handler it is UDP, so a big answer is truncated to 512."""
    protocol, transport = udp(handler)
    protocol.datagramReceived(query("big.corner.test.", "TXT").to_wire(), ("192.0.2.9", 53))
    [(data, _)] = transport.sent
    assert len(data) <= 512
    assert dns.message.from_wire(data).flags & dns.flags.TC


def test_udp_drops_response(handler: Handler) -> None:
    """A UDP packet with QR=1 gets no reply and logs nothing."""
    protocol, transport = udp(handler)
    packet = query()
    packet.flags |= dns.flags.QR
    with capturedLogs() as events:
        protocol.datagramReceived(packet.to_wire(), ("192.0.2.9", 53))
    assert transport.sent == []
    assert problems(events) == []


@pytest.mark.parametrize("size", [0, 1, 11])
def test_udp_drops_short(handler: Handler, size: int) -> None:
    """A UDP packet shorter than a header gets no reply and logs nothing."""
    protocol, transport = udp(handler)
    with capturedLogs() as events:
        protocol.datagramReceived(query().to_wire()[:size], ("192.0.2.9", 53))
    assert transport.sent == []
    assert problems(events) == []


def test_udp_handler_exception_logged(handler: Handler) -> None:
    """A handler that raises on a UDP query is logged and the next query is still answered."""
    stub = StubHandler(handler, mode="raise")
    protocol, transport = udp(stub)
    with capturedLogs() as events:
        protocol.datagramReceived(query().to_wire(), ("192.0.2.9", 53))
    assert [e["log_failure"].type for e in events if "log_failure" in e] == [RuntimeError]
    assert transport.sent == []
    stub.mode, stub.real = "now", handler
    protocol.datagramReceived(query(qid=2).to_wire(), ("192.0.2.9", 53))
    assert dns.message.from_wire(transport.sent[0][0]).id == 2


def test_udp_write_error_logged(handler: Handler) -> None:
    """A send that fails (e.g. EMSGSIZE) is logged, not raised into the reactor."""

    class Refusing(DatagramTransport):
        def write(self, data: bytes, addr: Any) -> None:
            raise OSError("Message too long")

    protocol = DNSDatagramProtocol(handler)
    protocol.makeConnection(Refusing())  # type: ignore[arg-type]
    with capturedLogs() as events:
        protocol.datagramReceived(query().to_wire(), ("192.0.2.9", 53))
    assert len([e for e in events if "log_failure" in e]) == 1
