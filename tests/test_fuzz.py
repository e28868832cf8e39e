"""
Property-based tests (Hypothesis) that throw arbitrary bytes and arbitrary
dnspython-built messages at the handler, the stream protocol and a running
server: nothing raises, every reply is a well-formed response to its query,
and the server keeps answering.
"""

from __future__ import annotations

import functools
import itertools
import socket
import struct
import time
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs

from dnstls.context import QueryContext, Transport
from dnstls.handler import Handler
from dnstls.transport.framing import FrameDecoder, frame
from dnstls.transport.stream import DNSStreamFactory
from dnstls.wire import has_opt
from tests.support import ZONES, DnstlsProcess, load_store

PEER = ("127.0.0.1", 40000)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Labels that reach the interesting parts of the test zones.
ZONE_LABELS = [
    b"www", b"big", b"bigmx", b"corner", b"example", b"test", b"sub", b"child", b"ns1",
    b"*", b"alias", b"loop1", b"wild", b"ent", b"a", b"block", b"dn", b"old", b"new",
    b"version", b"bind", b"server", b"id", b"hostname", b"_dns", b"_tcp", b"WwW", b"TEST",
]
TYPES = [int(t) for t in dns.rdatatype.RdataType] + [0, 41, 250, 251, 252, 255, 65535]


@st.composite
def names(draw: Any) -> dns.name.Name:
    label = st.one_of(st.sampled_from(ZONE_LABELS), st.binary(min_size=1, max_size=63))
    labels = draw(st.lists(label, max_size=6))
    suffix = draw(st.sampled_from([[], [b"corner", b"test"], [b"example", b"test"], [b"org"]]))
    try:
        return dns.name.Name([*labels, *suffix, b""])
    except dns.name.NameTooLong:
        assume(False)
        raise


rdtypes = st.one_of(st.sampled_from(TYPES), st.integers(min_value=0, max_value=0xFFFF))
rdclasses = st.one_of(
    st.sampled_from([1, 1, 1, 3, 4, 254, 255, 0]), st.integers(min_value=0, max_value=0xFFFF)
)


@st.composite
def rrsets(draw: Any) -> dns.rrset.RRset:
    name = draw(names())
    kind = draw(st.sampled_from(["A", "TXT", "NS", "SOA"]))
    text = {
        "A": "192.0.2.1",
        "TXT": '"' + "x" * draw(st.integers(0, 200)) + '"',
        "NS": "ns1.corner.test.",
        "SOA": "ns1 hostmaster 1 2 3 4 5",
    }[kind]
    return dns.rrset.from_text(name, draw(st.integers(0, 2**31 - 1)), "IN", kind, text)


edns_options = st.one_of(
    st.builds(
        dns.edns.GenericOption,
        st.integers(min_value=0, max_value=0xFFFF).filter(lambda t: t not in (8, 9, 10, 12, 15)),
        st.binary(max_size=40),
    ),
    st.builds(dns.edns.ECSOption, st.sampled_from(["192.0.2.0", "2001:db8::"]), st.integers(0, 24)),
    st.builds(dns.edns.CookieOption, st.binary(min_size=8, max_size=8), st.sampled_from([b"", b"s" * 8])),
)


@st.composite
def messages(draw: Any) -> bytes:
    """The wire form of an arbitrary dnspython-built message, mostly query-like."""
    message = dns.message.Message(id=draw(st.integers(0, 0xFFFF)))
    message.flags = draw(
        st.one_of(st.just(dns.flags.RD), st.integers(0, 0xFFFF).map(lambda f: f & ~dns.flags.QR),
                  st.integers(0, 0xFFFF))
    )
    message.set_opcode(draw(st.sampled_from([0, 0, 0, 1, 2, 4, 5, 6, 15])))
    count = draw(st.sampled_from([1, 1, 1, 1, 0, 2]))
    for _ in range(count):
        message.question.append(
            dns.rrset.RRset(draw(names()), draw(rdclasses), draw(rdtypes))
        )
    if draw(st.booleans()):
        message.use_edns(
            draw(st.sampled_from([0, 0, 0, 1, 255])),
            draw(st.integers(0, 0xFFFF)),
            draw(st.integers(0, 0xFFFF)),
            options=draw(st.lists(edns_options, max_size=3)),
        )
    for section in (message.answer, message.authority, message.additional):
        section.extend(draw(st.lists(rrsets(), max_size=2)))
    if draw(st.integers(0, 9)) == 0:
        keyring = dns.tsigkeyring.from_text({"key.example.": "c2VjcmV0c2VjcmV0c2VjcmV0"})
        message.use_tsig(keyring, "key.example.")
    try:
        wire = message.to_wire()
    except (dns.exception.DNSException, ValueError):
        assume(False)
        raise
    mutation = draw(st.sampled_from(["none"] * 4 + ["truncate", "flip", "append"]))
    if mutation == "truncate":
        wire = wire[: draw(st.integers(0, len(wire)))]
    elif mutation == "flip":
        data = bytearray(wire)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        wire = bytes(data)
    elif mutation == "append":
        wire += draw(st.binary(min_size=1, max_size=20))
    return wire


@functools.cache
def handler() -> Handler:
    """One handler over the test zones, loaded on first use."""
    return Handler(load_store(ZONES, []))


def check_reply(wire: bytes, transport: Transport) -> None:
    """Handle C{wire} and check the reply is a well-formed response to it."""
    reply = handler().handle(wire, QueryContext(transport, PEER))
    dropped = len(wire) < 12 or bool(wire[2] & 0x80)
    if dropped:
        assert reply is None
        return
    assert isinstance(reply, bytes)
    response = dns.message.from_wire(reply)
    assert response.id == struct.unpack_from("!H", wire)[0]
    assert response.flags & dns.flags.QR
    assert response.opcode() == (wire[2] >> 3) & 0xF
    if transport is Transport.UDP:
        assert len(reply) <= (1232 if has_opt(wire) else 512)
    assert len(reply) <= 0xFFFF


@FUZZ
@given(wire=st.binary(max_size=300))
def test_handler_arbitrary_bytes(wire: bytes) -> None:
    """Arbitrary bytes over every transport are dropped or get a response with the same ID."""
    for transport in Transport:
        check_reply(wire, transport)


@FUZZ
@given(wire=messages())
def test_handler_arbitrary_messages(wire: bytes) -> None:
    """Arbitrary dnspython-built messages over every transport get a well-formed response."""
    for transport in Transport:
        check_reply(wire, transport)


@FUZZ
@given(
    wire=st.one_of(st.binary(min_size=12, max_size=300), messages()),
)
def test_handler_never_logs_a_bug(wire: bytes) -> None:
    """No arbitrary input makes the handler log a failure (a SERVFAIL from a bug)."""
    with capturedLogs() as events:
        for transport in Transport:
            handler().handle(wire, QueryContext(transport, PEER))
    assert [e["log_format"] for e in events if "log_failure" in e] == []


def feed(chunks: list[bytes]) -> tuple[bytes, bool]:
    """Deliver C{chunks} to a fresh stream protocol; its output and whether it closed."""
    factory = DNSStreamFactory(handler(), Clock())
    protocol = factory.buildProtocol(IPv4Address("TCP", *PEER))
    assert protocol is not None
    transport = StringTransport()
    protocol.makeConnection(transport)
    for chunk in chunks:
        protocol.dataReceived(chunk)
    return transport.value(), transport.disconnecting


frames = st.one_of(
    messages().filter(lambda w: len(w) >= 12).map(frame),
    st.binary(min_size=12, max_size=100).map(frame),
    st.integers(0, 11).map(lambda n: struct.pack("!H", n)),  # a length that closes
    st.binary(max_size=4),  # junk, often a partial length
)


@FUZZ
@given(chunks=st.lists(st.binary(max_size=200), max_size=8))
def test_stream_arbitrary_chunks(chunks: list[bytes]) -> None:
    """Arbitrary byte chunks into the stream protocol never raise and come out as whole frames."""
    with capturedLogs() as events:
        output, _ = feed(chunks)
    decoder = FrameDecoder()
    for reply in decoder.feed(output):
        assert dns.message.from_wire(reply).flags & dns.flags.QR
    assert decoder.pending == 0
    assert [e for e in events if "log_failure" in e] == []


@FUZZ
@given(parts=st.lists(frames, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 2000), max_size=12))
def test_stream_split_does_not_matter(parts: list[bytes], cuts: list[int]) -> None:
    """However a stream of queries and junk is cut into reads, the replies and the close are the same."""
    stream = b"".join(parts)
    whole = feed([stream])
    points = sorted({c for c in cuts if c < len(stream)} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert feed(pieces) == whole
    assert feed([stream[i : i + 1] for i in range(len(stream))]) == whole


def mutated_queries() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=600), messages())


def test_real_server_survives_garbage(dnstls_server: DnstlsProcess) -> None:
    """300 random datagrams and 40 random TCP streams leave the server answering, with no traceback."""
    since = len(dnstls_server.lines)
    udp_address = dnstls_server.address("udp")
    tcp_address = dnstls_server.address("tcp")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(udp_address)
    sent: list[bytes] = []

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(datagram=mutated_queries())
    def throw_datagram(datagram: bytes) -> None:
        udp.send(datagram)
        sent.append(datagram)

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(chunks=st.lists(st.one_of(frames, st.binary(max_size=300)), min_size=1, max_size=6))
    def throw_stream(chunks: list[bytes]) -> None:
        with socket.create_connection(tcp_address, timeout=2) as sock:
            for chunk in chunks:
                try:
                    sock.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return

    try:
        throw_datagram()
        # read back whatever answers came: every one must be a response
        udp.settimeout(0.5)
        answers = 0
        try:
            while True:
                response = dns.message.from_wire(udp.recv(65535))
                assert response.flags & dns.flags.QR
                answers += 1
        except TimeoutError:
            pass
        assert answers > 0
    finally:
        udp.close()
    throw_stream()
    time.sleep(0.2)
    query = dns.message.make_query("www.example.test.", "A")
    for ask, (host, port) in ((dns.query.udp, udp_address), (dns.query.tcp, tcp_address)):
        response = ask(query, host, port=port, timeout=5)
        assert [str(r) for r in response.answer[0]] == ["192.0.2.80"]
    assert [line for line in dnstls_server.lines[since:] if "Traceback" in line] == []


@pytest.mark.parametrize("transport", list(Transport))
def test_handler_tsig_unknown_key(transport: Transport) -> None:
    """A query signed with a key the server lacks is answered (NOTAUTH), not dropped or raised."""
    query = dns.message.make_query("www.corner.test.", "A")
    query.use_tsig(dns.tsigkeyring.from_text({"k.": "c2VjcmV0c2VjcmV0"}), "k.")
    check_reply(query.to_wire(), transport)
