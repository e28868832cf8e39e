"""
Tests for L{dnstls.handler}: how a query becomes a response, EDNS(0) and the
RCODEs every error becomes.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsigkeyring
import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from dnstls.acl import DEFAULT_ALLOW, AccessList
from dnstls.chaos import Chaos
from dnstls.context import QueryContext, Transport
from dnstls.handler import Handler
from dnstls.resolver.cache import Answer, Cache
from dnstls.resolver.recursion import Recursion
from tests.support import ZONES, load_store

UDP = QueryContext(Transport.UDP, ("127.0.0.1", 40000))
TCP = QueryContext(Transport.TCP, ("127.0.0.1", 40000))


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler(load_store(ZONES, []))


def ask(
    handler: Handler, query: dns.message.Message | bytes, context: QueryContext = UDP
) -> dns.message.Message:
    wire = query if isinstance(query, bytes) else query.to_wire()
    reply = handler.handle(wire, context)
    assert reply is not None
    return dns.message.from_wire(reply)


def raw(handler: Handler, query: dns.message.Message, context: QueryContext = UDP) -> bytes:
    reply = handler.handle(query.to_wire(), context)
    assert reply is not None
    return reply


def test_answer_copies_id_rd_cd_and_sets_qr(handler: Handler) -> None:
    """A reply keeps the query's ID, RD and CD, and sets QR."""
    query = dns.message.make_query("www.corner.test.", "A")
    query.flags |= dns.flags.CD
    reply = ask(handler, query)
    assert reply.id == query.id
    assert reply.flags & dns.flags.QR
    assert reply.flags & dns.flags.RD
    assert reply.flags & dns.flags.CD
    assert not reply.flags & dns.flags.RA


def test_rd_clear_stays_clear(handler: Handler) -> None:
    """A query without RD gets a reply without RD."""
    query = dns.message.make_query("www.corner.test.", "A")
    query.flags &= ~dns.flags.RD
    assert not ask(handler, query).flags & dns.flags.RD


def test_question_echoed_with_original_case(handler: Handler) -> None:
    """The question goes back byte for byte in the case the client wrote it."""
    query = dns.message.make_query("WwW.CoRnEr.TeSt.", "A")
    wire = query.to_wire()
    reply = raw(handler, query)
    question_end = 12 + len(dns.name.from_text("WwW.CoRnEr.TeSt.").to_wire()) + 4
    assert reply[12:question_end] == wire[12:question_end]


def test_no_opt_without_edns(handler: Handler) -> None:
    """A query without OPT gets a reply without OPT (RFC 6891 section 7)."""
    reply = ask(handler, dns.message.make_query("www.corner.test.", "A", use_edns=False))
    assert reply.edns == -1


def test_opt_with_edns(handler: Handler) -> None:
    """A query with OPT gets exactly one OPT: version 0, payload 1232, no flags but DO."""
    query = dns.message.make_query("www.corner.test.", "A", use_edns=0, payload=4096)
    query.ednsflags |= 0x4000 | 0x0001  # TO/CO and a Z bit must not be echoed
    reply = ask(handler, query)
    assert reply.edns == 0
    assert reply.payload == 1232
    assert reply.ednsflags == 0


def test_do_echoed(handler: Handler) -> None:
    """The DO bit of the query is copied into the reply's OPT (RFC 3225)."""
    reply = ask(handler, dns.message.make_query("www.corner.test.", "A", want_dnssec=True))
    assert reply.ednsflags & dns.flags.DO


def test_unknown_option_ignored(handler: Handler) -> None:
    """An unknown EDNS option is ignored and not echoed (RFC 6891 6.1.2)."""
    option = dns.edns.GenericOption(65001, b"hello")
    query = dns.message.make_query("www.corner.test.", "A", use_edns=0, options=[option])
    reply = ask(handler, query)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer
    assert reply.options == ()


def test_badvers(handler: Handler) -> None:
    """EDNS version 1 gets BADVERS, split into header RCODE 0 and OPT extended RCODE 1."""
    query = dns.message.make_query("www.corner.test.", "A", use_edns=1)
    wire = raw(handler, query)
    reply = dns.message.from_wire(wire)
    assert reply.rcode() == dns.rcode.BADVERS
    assert wire[3] & 0x0F == 0
    assert reply.edns == 0
    assert (reply.ednsflags >> 24) == 1
    assert not reply.answer


def two_opts(query: dns.message.Message) -> bytes:
    """C{query}'s wire form with a second OPT record appended."""
    wire = bytearray(query.to_wire())
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    wire += opt
    arcount = struct.unpack_from("!H", wire, 10)[0]
    struct.pack_into("!H", wire, 10, arcount + 1)
    return bytes(wire)


def test_two_opts_formerr_with_opt(handler: Handler) -> None:
    """Two OPT records get FORMERR, and the reply still carries an OPT (RFC 6891 6.1.1, 7)."""
    query = dns.message.make_query("www.corner.test.", "A", use_edns=0)
    reply = ask(handler, two_opts(query))
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.edns == 0
    assert reply.id == query.id


def keepalive(data: bytes = b"") -> dns.edns.Option:
    """An edns-tcp-keepalive option (RFC 7828) with C{data} as its value."""
    return dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, data)


def test_keepalive_with_timeout_formerr_on_stream(handler: Handler) -> None:
    """Over TCP, a query whose edns-tcp-keepalive option carries a timeout gets FORMERR (RFC 7828 3.2.2)."""  # noqa: E501
    query = dns.message.make_query(
        "www.corner.test.", "A", use_edns=0, options=[keepalive(b"\x00\x64")]
    )
    reply = ask(handler, query, TCP)
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.edns == 0 and not reply.answer
    assert ask(handler, query, UDP).rcode() == dns.rcode.NOERROR
    empty = dns.message.make_query("www.corner.test.", "A", use_edns=0, options=[keepalive()])
    assert ask(handler, empty, TCP).rcode() == dns.rcode.NOERROR


def test_two_padding_options_formerr(handler: Handler) -> None:
    """A query with two padding options gets FORMERR; with one it is answered."""
    pad = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\x00" * 8)
    twice = dns.message.make_query("www.corner.test.", "A", use_edns=0, options=[pad, pad])
    assert ask(handler, twice, TCP).rcode() == dns.rcode.FORMERR
    assert ask(handler, twice, UDP).rcode() == dns.rcode.FORMERR
    once = dns.message.make_query("www.corner.test.", "A", use_edns=0, options=[pad])
    assert ask(handler, once, TCP).rcode() == dns.rcode.NOERROR


def test_opt_with_non_root_owner_formerr(handler: Handler) -> None:
    """An OPT owned by a name other than the root gets FORMERR (RFC 6891 6.1.2)."""
    query = dns.message.make_query("www.corner.test.", "A", use_edns=False)
    wire = bytearray(query.to_wire())
    wire += b"\x01a\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    struct.pack_into("!H", wire, 10, 1)
    assert ask(handler, bytes(wire)).rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize("count", [0, 2])
def test_qdcount_not_one_formerr(handler: Handler, count: int) -> None:
    """A query with no question, or with two, gets FORMERR."""
    query = dns.message.make_query("www.corner.test.", "A")
    if count == 0:
        query.question = []
    else:
        query.question.append(query.question[0].__class__(
            dns.name.from_text("mail.corner.test."), dns.rdataclass.IN, dns.rdatatype.A
        ))
    reply = ask(handler, query)
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.id == query.id


def test_garbage_after_header_formerr(handler: Handler) -> None:
    """A readable header followed by garbage gets FORMERR with the same ID."""
    wire = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\xff\xfe\xfd"
    reply = ask(handler, wire)
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.id == 0x1234
    assert reply.flags & dns.flags.QR


def test_trailing_junk_formerr(handler: Handler) -> None:
    """Octets after the last record get FORMERR, as Knot DNS answers."""
    wire = dns.message.make_query("www.corner.test.", "A").to_wire() + b"\x00\x01"
    assert ask(handler, wire).rcode() == dns.rcode.FORMERR


def test_short_packet_dropped(handler: Handler) -> None:
    """Fewer than 12 octets are dropped without a reply."""
    assert handler.handle(b"\x12\x34\x01\x00", UDP) is None


def test_response_dropped(handler: Handler) -> None:
    """A message with QR set is never answered, so two servers cannot loop."""
    query = dns.message.make_query("www.corner.test.", "A")
    query.flags |= dns.flags.QR
    assert handler.handle(query.to_wire(), UDP) is None


@pytest.mark.parametrize(
    "opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE, 3, 15]
)
def test_unknown_opcode_notimp(handler: Handler, opcode: int) -> None:
    """Every opcode but QUERY gets NOTIMP with the opcode echoed."""
    query = dns.message.make_query("corner.test.", "SOA")
    query.set_opcode(opcode)
    reply = ask(handler, query)
    assert reply.rcode() == dns.rcode.NOTIMP
    assert reply.opcode() == opcode


#: Every header flag a query can carry (QR would make it a response).
ALL_QUERY_FLAGS = (
    dns.flags.AA | dns.flags.TC | dns.flags.RD | dns.flags.RA | dns.flags.AD | dns.flags.CD | 0x0040
)
#: The header's flag bits, without the opcode and RCODE beside them.
FLAG_BITS = dns.flags.QR | ALL_QUERY_FLAGS


@pytest.mark.parametrize("edns", [-1, 0])
@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.UPDATE, 15])
def test_other_opcode_copies_rd_only(opcode: int, edns: int) -> None:
    """
    A query of another opcode with every header flag set (ISC's EDNS
    compliance test C{opcodeflg}) gets NOTIMP with no flag but QR: RD, CD
    and RA are QUERY's, even for a client that may recurse.
    """
    handler = Handler(
        load_store(ZONES, []),
        recursion=Recursion(AccessList(DEFAULT_ALLOW), Cache(Clock()), RecordingSource()),
    )
    query = dns.message.make_query("corner.test.", "SOA", use_edns=edns)
    query.set_opcode(opcode)
    query.flags |= ALL_QUERY_FLAGS
    reply = ask(handler, query)
    assert reply.rcode() == dns.rcode.NOTIMP and reply.opcode() == opcode
    assert reply.flags & FLAG_BITS == dns.flags.QR


def test_query_error_copies_rd_and_cd() -> None:
    """A QUERY answered with an error (FORMERR) still copies RD and CD and sets RA for a recursion client."""
    handler = Handler(
        load_store(ZONES, []),
        recursion=Recursion(AccessList(DEFAULT_ALLOW), Cache(Clock()), RecordingSource()),
    )
    query = dns.message.make_query("corner.test.", "SOA", flags=dns.flags.RD | dns.flags.CD)
    reply = ask(handler, query.to_wire() + b"junk")
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.flags & FLAG_BITS == dns.flags.QR | dns.flags.RD | dns.flags.CD | dns.flags.RA


def test_outside_our_zones_refused(handler: Handler) -> None:
    """A name in no zone of ours gets REFUSED without AA or RA."""
    reply = ask(handler, dns.message.make_query("www.example.com.", "A"))
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & (dns.flags.AA | dns.flags.RA)


def test_other_class_refused(handler: Handler) -> None:
    """A question in class HS gets REFUSED."""
    query = dns.message.make_query("www.corner.test.", "A", rdclass=dns.rdataclass.HS)
    assert ask(handler, query).rcode() == dns.rcode.REFUSED


def test_tsig_without_key_notauth(handler: Handler) -> None:
    """A TSIG-signed query with a key we do not have gets NOTAUTH."""
    keyring = dns.tsigkeyring.from_text({"key.": "c2VjcmV0c2VjcmV0c2VjcmV0"})
    query = dns.message.make_query("www.corner.test.", "A")
    query.use_tsig(keyring, keyname="key.")
    assert ask(handler, query).rcode() == dns.rcode.NOTAUTH


@pytest.mark.parametrize(
    ("qtype", "context", "rcode"),
    [
        ("AXFR", UDP, dns.rcode.NOTIMP),
        ("AXFR", TCP, dns.rcode.NOTAUTH),
        ("IXFR", UDP, dns.rcode.NOTAUTH),
        ("IXFR", TCP, dns.rcode.NOTAUTH),
    ],
)
def test_zone_transfers_refused_as_knot(
    handler: Handler, qtype: str, context: QueryContext, rcode: int
) -> None:
    """Zone transfers are not served, with the RCODEs Knot DNS gives without an ACL."""
    reply = ask(handler, dns.message.make_query("corner.test.", qtype), context)
    assert reply.rcode() == rcode


def test_nxdomain_and_aa(handler: Handler) -> None:
    """A missing name gets NXDOMAIN, AA and the SOA with the negative TTL."""
    reply = ask(handler, dns.message.make_query("nope.example.test.", "A"))
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.flags & dns.flags.AA
    [soa] = reply.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.ttl == 300


def test_referral_clears_aa(handler: Handler) -> None:
    """A referral is NOERROR without AA, with the child's NS in authority."""
    reply = ask(handler, dns.message.make_query("host.sub.corner.test.", "A"))
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.flags & dns.flags.AA
    assert not reply.answer
    assert [r.rdtype for r in reply.authority] == [dns.rdatatype.NS]


def test_udp_truncation_without_edns(handler: Handler) -> None:
    """Without EDNS a reply over 512 octets becomes header and question with TC=1."""
    wire = raw(handler, dns.message.make_query("big.corner.test.", "TXT", use_edns=False))
    reply = dns.message.from_wire(wire)
    assert len(wire) <= 512
    assert reply.flags & dns.flags.TC
    assert not reply.answer and not reply.authority and not reply.additional
    assert reply.question[0].name == dns.name.from_text("big.corner.test.")


@pytest.mark.parametrize(("payload", "limit"), [(100, 512), (512, 512), (1232, 1232), (4096, 1232)])
def test_udp_truncation_limit_keeps_opt(handler: Handler, payload: int, limit: int) -> None:
    """A truncated EDNS reply fits min(max(client size, 512), 1232) and keeps its OPT."""
    query = dns.message.make_query("big.corner.test.", "TXT", use_edns=0, payload=payload)
    wire = raw(handler, query)
    reply = dns.message.from_wire(wire)
    assert len(wire) <= limit
    assert reply.flags & dns.flags.TC
    assert reply.edns == 0


def test_tcp_never_truncates(handler: Handler) -> None:
    """Over TCP the whole large RRset comes back without TC."""
    query = dns.message.make_query("big.corner.test.", "TXT", use_edns=False)
    wire = raw(handler, query, TCP)
    reply = dns.message.from_wire(wire)
    assert len(wire) > 1232
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 18


def test_udp_answer_that_fits_is_whole(handler: Handler) -> None:
    """An EDNS client with a large buffer gets an RRset up to 1232 octets whole."""
    reply = ask(handler, dns.message.make_query("many.corner.test.", "A", use_edns=0))
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 5


def test_chaos_refused_by_default(handler: Handler) -> None:
    """version.bind CH TXT reveals nothing by default: REFUSED."""
    query = dns.message.make_query("version.bind.", "TXT", rdclass=dns.rdataclass.CH)
    assert ask(handler, query).rcode() == dns.rcode.REFUSED


def test_chaos_identity_when_set() -> None:
    """With an identity set, id.server CH TXT answers it with AA."""
    handler = Handler(load_store(ZONES, []), Chaos(identity='ns1 "east"'))
    query = dns.message.make_query("ID.SERVER.", "TXT", rdclass=dns.rdataclass.CH)
    reply = ask(handler, query)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert reply.answer[0][0].strings == (b'ns1 "east"',)


def test_bug_becomes_servfail(handler: Handler, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception while answering gives SERVFAIL and a logged traceback, never a raise."""
    store = load_store(ZONES, [])
    broken = Handler(store)

    def explode(qname: object, qtype: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(store, "find", explode)
    with capturedLogs() as events:
        reply = ask(broken, dns.message.make_query("www.corner.test.", "A", use_edns=0))
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert reply.edns == 0
    assert [e for e in events if "log_failure" in e]


class RecordingSource:
    """A source of recursive answers that records every question it is asked."""

    def __init__(self) -> None:
        self.asked: list[dns.name.Name] = []

    def query(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
    ) -> Deferred[Answer]:
        self.asked.append(qname)
        rrset = dns.rrset.from_text(qname, 300, "IN", "A", "192.0.2.7")
        return succeed(Answer(dns.rcode.NOERROR, [rrset], [], []))

    def close(self) -> None:
        pass


def test_rd0_answered_from_cache_only() -> None:
    """RD=0 from a client that may recurse is REFUSED with EDE 20 until an RD=1 query fills the cache, and never asks upstream."""  # noqa: E501
    source = RecordingSource()
    handler = Handler(
        load_store(ZONES, []),
        recursion=Recursion(AccessList(DEFAULT_ALLOW), Cache(Clock()), source),
    )
    norec = dns.message.make_query("www.elsewhere.test.", "A", use_edns=0, flags=0)
    refused = ask(handler, norec)
    assert refused.rcode() == dns.rcode.REFUSED and not refused.answer
    assert [e.code for e in refused.extended_errors()] == [dns.edns.EDECode.NOT_AUTHORITATIVE]
    assert refused.flags & dns.flags.RA
    assert source.asked == []
    replies: list[bytes | None] = []
    pending = handler.handle(dns.message.make_query("www.elsewhere.test.", "A").to_wire(), UDP)
    assert isinstance(pending, Deferred)
    pending.addCallback(replies.append)
    assert replies and replies[0] is not None
    cached = ask(handler, norec)
    assert cached.rcode() == dns.rcode.NOERROR
    assert [str(r) for r in cached.answer[0]] == ["192.0.2.7"]
    assert not cached.flags & dns.flags.RD
    assert source.asked == [dns.name.from_text("www.elsewhere.test.")]
