"""
Tests for L{dnstls.transport.fastpath}: the cache of rendered replies answers byte for
byte as the handler does, only for what it may keep, within its bounds, and
forgets on a zone reload.
"""

from __future__ import annotations

import signal
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from dnstls.acl import AccessList, parse_network
from dnstls.chaos import Chaos
from dnstls.context import QueryContext, Transport
from dnstls.handler import Handler
from dnstls.resolver.cache import Answer, Cache
from dnstls.resolver.recursion import Recursion
from dnstls.testing import start_server
from dnstls.transport.fastpath import FastAnswerer
from dnstls.transport.framing import FrameDecoder, frame
from dnstls.transport.stream import DNSStreamFactory
from dnstls.transport.udp import DNSDatagramProtocol
from tests.support import ZONES, DnstlsProcess, load_store

PEER = ("127.0.0.1", 40000)
OUTSIDER = ("192.0.2.200", 40000)

#: Every kind of context a reply depends on.
CONTEXTS = {
    "udp": QueryContext(Transport.UDP, PEER),
    "udp-outsider": QueryContext(Transport.UDP, OUTSIDER),
    "tcp": QueryContext(Transport.TCP, PEER, keepalive=100),
    "tcp-busy": QueryContext(Transport.TCP, PEER, keepalive=0),
    "tcp-no-keepalive": QueryContext(Transport.TCP, OUTSIDER),
    "tls": QueryContext(Transport.TLS, PEER, keepalive=300),
    "tls-no-padding": QueryContext(Transport.TLS, PEER, keepalive=300, padding=False),
    "tls-upgraded": QueryContext(Transport.TLS, OUTSIDER, keepalive=300, upgraded=True),
}

QUESTIONS = [
    ("www.corner.test.", "A", "IN"),
    ("WwW.CoRnEr.TeSt.", "A", "IN"),
    ("www.corner.test.", "AAAA", "IN"),
    ("www.corner.test.", "MX", "IN"),
    ("many.corner.test.", "A", "IN"),
    ("nothing-here.block.corner.test.", "A", "IN"),
    ("x.block.corner.test.", "A", "IN"),
    ("ent.corner.test.", "A", "IN"),
    ("chain1.corner.test.", "A", "IN"),
    ("anything.corner.test.", "TXT", "IN"),
    ("host.sub.corner.test.", "A", "IN"),
    ("big.corner.test.", "TXT", "IN"),
    ("corner.test.", "SOA", "ANY"),
    ("corner.test.", "AXFR", "IN"),
    ("www.example.test.", "A", "IN"),
    ("www.elsewhere.example.", "A", "IN"),
    ("www.corner.test.", "A", "CH"),
    ("id.server.", "TXT", "CH"),
    ("version.bind.", "TXT", "CH"),
    ("STARTTLS.", "TXT", "CH"),
]


def variants(name: str, rdtype: str, rdclass: str) -> Iterator[dns.message.Message]:
    """The query for one question in every header and EDNS shape the tests try."""
    yield dns.message.make_query(name, rdtype, rdclass)
    yield dns.message.make_query(name, rdtype, rdclass, use_edns=0)
    yield dns.message.make_query(name, rdtype, rdclass, use_edns=0, payload=512)
    yield dns.message.make_query(name, rdtype, rdclass, use_edns=0, payload=4096, want_dnssec=True)
    keepalive = dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, b"")
    yield dns.message.make_query(name, rdtype, rdclass, use_edns=0, options=[keepalive])
    yield dns.message.make_query(name, rdtype, rdclass, use_edns=0, pad=128)
    yield dns.message.make_query(name, rdtype, rdclass, use_edns=1)
    norecurse = dns.message.make_query(name, rdtype, rdclass, use_edns=0)
    norecurse.flags &= ~dns.flags.RD
    norecurse.flags |= dns.flags.CD
    yield norecurse


def odd_queries() -> Iterator[bytes]:
    """Queries the handler answers with an error RCODE, or not at all."""
    query = dns.message.make_query("www.corner.test.", "A", use_edns=0).to_wire()
    yield query[:4] + b"\x00\x00" + query[6:]  # QDCOUNT 0: FORMERR
    yield query[:2] + bytes([query[2] | 0x20]) + query[3:]  # opcode UPDATE... NOTIMP
    yield query[:-3]  # a broken OPT: FORMERR
    yield query[:2] + bytes([query[2] | 0x80]) + query[3:]  # a response: dropped
    yield query[:8]  # shorter than a header: dropped


def with_id(wire: bytes, qid: int) -> bytes:
    return struct.pack("!H", qid) + wire[2:]


class Upstream:
    """A recursion source that answers every question with one address."""

    def __init__(self) -> None:
        self.asked = 0

    def query(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
    ) -> Deferred[Answer]:
        self.asked += 1
        rrset = dns.rrset.from_text(qname, 60, "IN", "A", "198.51.100.1")
        return succeed(Answer(dns.rcode.NOERROR, [rrset], [], []))

    def close(self) -> None:
        pass


def make_handler(recursion: bool = False) -> Handler:
    source = None
    if recursion:
        source = Recursion(
            AccessList([parse_network("127.0.0.0/8")]), Cache(Clock(), 100, 3600), Upstream()
        )
    return Handler(
        load_store(ZONES, []), Chaos("ns1.test", None), recursion=source, advertise_to=True
    )


@pytest.fixture(autouse=True)
def fixed_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """dnspython renders an RRset's records in a random order; the tests compare bytes."""
    monkeypatch.setattr(dns.rdataset.random, "shuffle", lambda items: None)  # type: ignore[attr-defined]


@pytest.fixture
def handler() -> Handler:
    return make_handler()


@pytest.mark.parametrize("recursion", [False, True], ids=["no-recursion", "recursion"])
@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: "/".join(q))
def test_byte_identical(question: tuple[str, str, str], recursion: bool) -> None:
    """For every question, header and EDNS shape and context, a cached reply is byte for byte the
    handler's, with the new query's ID, and each context keeps its own reply."""
    reference = make_handler(recursion)
    fast = FastAnswerer(make_handler(recursion))
    for number, query in enumerate(variants(*question)):
        wire = query.to_wire()
        for name, context in CONTEXTS.items():
            expected = reference.handle(wire, context)
            first = fast.handle(wire, context)
            if isinstance(expected, Deferred):
                # a recursive answer: never kept, the handler is asked again
                assert isinstance(first, Deferred)
                continue
            assert first == expected, (name, number)
            again = with_id(wire, (query.id + 1) % 65536)
            hits = fast.hits
            assert fast.handle(again, context) == reference.handle(again, context), (name, number)
            # RD=0 from a client that may recurse: never kept (see below)
            kept = bool(query.flags & dns.flags.RD) or not reference.may_recurse(context)
            assert fast.hits == hits + kept, (name, number)


def test_odd_queries_identical(handler: Handler) -> None:
    """Queries that get FORMERR or NOTIMP, or no reply at all, get the same from the cache."""
    fast = FastAnswerer(make_handler())
    for wire in odd_queries():
        for context in CONTEXTS.values():
            expected = handler.handle(wire, context)
            assert fast.handle(wire, context) == expected
            assert fast.handle(wire, context) == expected


def test_recursive_answers_never_kept() -> None:
    """A name outside the zones from a client that may recurse goes through recursion each time
    (its TTLs count down there), while a client that may not gets REFUSED from the cache."""
    handler = make_handler(recursion=True)
    assert handler.recursion is not None
    upstream = handler.recursion.source
    assert isinstance(upstream, Upstream)
    fast = FastAnswerer(handler)
    wire = dns.message.make_query("www.elsewhere.example.", "A").to_wire()
    for _ in range(3):
        reply = fast.handle(wire, CONTEXTS["udp"])
        assert isinstance(reply, Deferred)
        answers: list[bytes | None] = []
        reply.addCallback(answers.append)
        assert dns.message.from_wire(answers[0]).answer  # type: ignore[arg-type]
    assert len(fast) == 0
    refused = fast.handle(wire, CONTEXTS["udp-outsider"])
    assert isinstance(refused, bytes)
    assert dns.message.from_wire(refused).rcode() == dns.rcode.REFUSED
    assert len(fast) == 1


def test_rd_clear_follows_recursion_cache() -> None:
    """A client that may recurse asking with RD=0 for a name outside the zones gets what the
    recursion cache holds now: REFUSED while it holds nothing, the answer once it does."""
    handler = make_handler(recursion=True)
    fast = FastAnswerer(handler)
    query = dns.message.make_query("www.elsewhere.example.", "A")
    query.flags &= ~dns.flags.RD
    wire = query.to_wire()
    for _ in range(2):
        refused = fast.handle(wire, CONTEXTS["udp"])
        assert isinstance(refused, bytes)
        assert dns.message.from_wire(refused).rcode() == dns.rcode.REFUSED
    recursive = fast.handle(
        dns.message.make_query("www.elsewhere.example.", "A").to_wire(), CONTEXTS["udp"]
    )
    assert isinstance(recursive, Deferred)
    for _ in range(2):
        cached = fast.handle(wire, CONTEXTS["udp"])
        assert isinstance(cached, bytes)
        assert addresses(dns.message.from_wire(cached)) == ["198.51.100.1"]
        assert cached == handler.handle(wire, CONTEXTS["udp"])


def test_upgrade_reply_never_kept(handler: Handler) -> None:
    """The reply that grants a STARTTLS upgrade (TO=1) is never kept, nor served to a later probe."""
    fast = FastAnswerer(make_handler())
    probe = dns.message.make_query("STARTTLS.", "TXT", "CH", use_edns=0).to_wire()
    upgrade = QueryContext(Transport.TCP, PEER, keepalive=300, upgrade=True)
    granted = fast.handle(probe, upgrade)
    assert granted == handler.handle(probe, upgrade)
    assert len(fast) == 0
    plain = QueryContext(Transport.TCP, PEER, keepalive=300)
    declined = fast.handle(probe, plain)
    assert declined == handler.handle(probe, plain) != granted


def test_reload_forgets(tmp_path: Path) -> None:
    """Once the handler serves a new zone store, the cache answers from it, not from the old one."""
    zone = tmp_path / "reload.test.zone"
    zone.write_text(ZONE_TEXT.format(serial=1, address="192.0.2.1"))
    handler = Handler(load_store(tmp_path, []))
    fast = FastAnswerer(handler)
    wire = dns.message.make_query("www.reload.test.", "A").to_wire()
    before = fast.handle(wire, CONTEXTS["udp"])
    assert fast.handle(wire, CONTEXTS["udp"]) == before
    zone.write_text(ZONE_TEXT.format(serial=2, address="192.0.2.2"))
    handler.zones = load_store(tmp_path, [])
    after = fast.handle(wire, CONTEXTS["udp"])
    assert isinstance(after, bytes)
    assert [str(r) for r in dns.message.from_wire(after).answer[0]] == ["192.0.2.2"]
    assert after == handler.handle(wire, CONTEXTS["udp"])


ZONE_TEXT = """$ORIGIN reload.test.
$TTL 300
@   SOA ns hostmaster {serial} 7200 3600 1209600 300
    NS  ns
ns  A   192.0.2.53
www A   {address}
"""


def test_junk_flood_bounded(handler: Handler) -> None:
    """A flood of unique questions keeps the cache within its entry and octet bounds, and a
    question asked again after being pushed out still gets the right reply."""
    fast = FastAnswerer(handler, max_entries=50, max_bytes=8000)
    wanted = dns.message.make_query("www.corner.test.", "A").to_wire()
    expected = handler.handle(wanted, CONTEXTS["udp"])
    fast.handle(wanted, CONTEXTS["udp"])
    for n in range(600):
        junk = dns.message.make_query(f"junk{n}.nothing.corner.test.", "A").to_wire()
        fast.handle(junk, CONTEXTS["udp"])
        assert len(fast) <= 50
        assert fast.size <= 8000
    assert len(fast) > 10
    assert fast.handle(wanted, CONTEXTS["udp"]) == expected


def test_entry_bound(handler: Handler) -> None:
    """With room for N entries, the (N+1)th question pushes out the oldest one only."""
    fast = FastAnswerer(handler, max_entries=3)
    queries = [dns.message.make_query(f"n{n}.corner.test.", "A").to_wire() for n in range(4)]
    for wire in queries:
        fast.handle(wire, CONTEXTS["udp"])
    assert len(fast) == 3
    hits = fast.hits
    for wire in queries[1:]:
        fast.handle(wire, CONTEXTS["udp"])
    assert fast.hits == hits + 3
    fast.handle(queries[0], CONTEXTS["udp"])
    assert fast.hits == hits + 3


def test_udp_protocol_from_cache(handler: Handler) -> None:
    """Over UDP a repeated question is answered from the cache, to its sender, with its own ID."""
    fast = FastAnswerer(make_handler())
    protocol = DNSDatagramProtocol(fast)
    sent: list[tuple[bytes, object]] = []

    class Transport_:
        def write(self, data: bytes, addr: object) -> None:
            sent.append((data, addr))

    protocol.makeConnection(Transport_())  # type: ignore[arg-type]
    query = dns.message.make_query("www.corner.test.", "A", use_edns=0)
    for qid in (1, 2, 3):
        query.id = qid
        protocol.datagramReceived(query.to_wire(), PEER)
    assert fast.hits == 2
    assert [data for data, _ in sent] == [
        handler.handle(with_id(query.to_wire(), qid), CONTEXTS["udp"]) for qid in (1, 2, 3)
    ]
    assert {addr for _, addr in sent} == {PEER}


def test_udp_miss_looks_up_once(handler: Handler) -> None:
    """Over UDP a question the cache does not hold costs one look-up, then is kept."""
    fast = FastAnswerer(make_handler())
    protocol = DNSDatagramProtocol(fast)

    class Transport_:
        def write(self, data: bytes, addr: object) -> None:
            pass

    protocol.makeConnection(Transport_())  # type: ignore[arg-type]
    query = dns.message.make_query("www.corner.test.", "A", use_edns=0)
    protocol.datagramReceived(query.to_wire(), PEER)
    assert (fast.misses, fast.hits, len(fast)) == (1, 0, 1)


@pytest.mark.parametrize("kind", [Transport.TCP, Transport.TLS])
def test_stream_protocol_from_cache(handler: Handler, kind: Transport) -> None:
    """On a stream, pipelined repeated questions get the handler's replies, in order, with their
    IDs and the connection's keepalive, the repeats from the cache or its templates."""
    fast = FastAnswerer(make_handler())
    factory = DNSStreamFactory(fast, Clock(), kind)
    protocol = factory.buildProtocol(_Address())
    assert protocol is not None
    transport = StringTransport()
    protocol.makeConnection(transport)
    keepalive = dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, b"")
    queries = [
        dns.message.make_query(name, "A", use_edns=0, options=[keepalive])
        for name in ("www.corner.test.", "many.corner.test.") * 3
    ]
    for qid, query in enumerate(queries):
        query.id = qid
    protocol.dataReceived(b"".join(frame(q.to_wire()) for q in queries))
    replies = FrameDecoder().feed(transport.value())
    context = QueryContext(kind, ("192.0.2.7", 40000), keepalive=100)
    assert replies == [handler.handle(q.to_wire(), context) for q in queries]
    # over TLS a query with options may be padded: an answer of another
    # length is not assembled from the first one's frame
    handled = 1 if kind is Transport.TCP else 2
    assert (fast.misses, fast.hits + fast.templates.assembled) == (handled, 6 - handled)


class _Address:
    host = "192.0.2.7"
    port = 40000


def test_control_socket_keeps_faults(tmp_path: Path) -> None:
    """A server with the test kit's control socket applies a fault to a question it answered
    before, however often it was asked: its answers do not come from a cache."""
    with start_server() as server:
        query = dns.message.make_query(f"www.{server.origin}", "A")
        for _ in range(3):
            reply = dns.query.udp(query, server.udp[0], port=server.udp[1], timeout=5)
            assert reply.rcode() == dns.rcode.NOERROR
        server.faults(rcodes={f"www.{server.origin}": "SERVFAIL"})
        reply = dns.query.udp(query, server.udp[0], port=server.udp[1], timeout=5)
        assert reply.rcode() == dns.rcode.SERVFAIL
        reply = dns.query.tcp(query, server.tcp[0], port=server.tcp[1], timeout=5)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert len([q for q in server.queries() if q["name"] == f"www.{server.origin}"]) == 5


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(str(r) for rrset in reply.answer for r in rrset)


def test_sighup_reload_served(tmp_path: Path) -> None:
    """After a SIGHUP reload a real server answers a question it answered (and cached) before with
    the new zone's data, over UDP and TCP."""
    zones = tmp_path / "zones"
    zones.mkdir()
    zone = zones / "reload.test.zone"
    zone.write_text(ZONE_TEXT.format(serial=1, address="192.0.2.1"))
    process = DnstlsProcess(["--zones", str(zones), "--listen", "127.0.0.1:0"])
    try:
        host, port = process.address("udp")
        query = dns.message.make_query("www.reload.test.", "A")
        for _ in range(3):
            assert addresses(dns.query.udp(query, host, port=port, timeout=5)) == ["192.0.2.1"]
            assert addresses(dns.query.tcp(query, host, port=port, timeout=5)) == ["192.0.2.1"]
        zone.write_text(ZONE_TEXT.format(serial=2, address="192.0.2.2"))
        process.process.send_signal(signal.SIGHUP)
        wait_for(lambda: any("reload: serving 1 zone:" in line for line in process.lines))
        assert addresses(dns.query.udp(query, host, port=port, timeout=5)) == ["192.0.2.2"]
        assert addresses(dns.query.tcp(query, host, port=port, timeout=5)) == ["192.0.2.2"]
    finally:
        process.stop()


def test_udp_real_ids(tmp_path: Path) -> None:
    """A real server answers a burst of the same question over UDP with each query's own ID."""
    process = DnstlsProcess(["--zones", str(ZONES), "--listen", "127.0.0.1:0"])
    try:
        host, port = process.address("udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            query = dns.message.make_query("WWW.corner.test.", "A", use_edns=0)
            for qid in range(200, 260):
                query.id = qid
                sock.sendto(query.to_wire(), (host, port))
            ids = set()
            for _ in range(60):
                reply = dns.message.from_wire(sock.recv(4096))
                assert reply.question[0].name.to_text() == "WWW.corner.test."
                assert addresses(reply) == ["192.0.2.80"]
                ids.add(reply.id)
        assert ids == set(range(200, 260))
    finally:
        process.stop()
