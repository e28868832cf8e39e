"""
Differential tests: dnstls and Knot DNS serve the same C{tests/data/zones/} on
loopback, get the same query bytes, and must give the same answer.

"The same" means: RCODE (extended RCODE included), the header flags, the
section counts, the question echoed byte for byte, the answer, authority and
additional sections as sets of records with their TTLs, and the OPT record
(present or not, version, payload size, DO and the other EDNS flags, the
options).  Record order inside an RRset is not compared: dnstls shuffles it.

Where the two differ on purpose the case is kept out of the matrix (not in
QUESTIONS, or dropped by L{_excluded}) and has a test of its own below, which
compares everything else with Knot DNS and checks what dnstls does instead:

  - CD: Knot DNS clears it in every response; dnstls copies it from the query
    as RFC 4035 section 3.2.2 and BIND do.
  - DNAME substitution that overflows 255 octets: both answer YXDOMAIN with
    the DNAME, but Knot DNS also adds the records of the DNAME's target owner,
    which RFC 6672 section 3.2 does not ask for.
  - A UDP reply that does not fit: Knot DNS keeps the RRsets that fitted and
    sets TC; dnstls sends the minimal truncated reply (header, question, OPT),
    as the issue asks.  RFC 2181 section 9 allows both.  The matrix still
    compares every truncation where the first RRset already does not fit.
  - MX/SRV targets below a zone cut: Knot DNS adds the glue as additional
    data; dnstls adds glue for NS targets only, since glue is not
    authoritative data (RFC 1034 4.2.1, RFC 2181 5.4.1).
  - Extended DNS Errors (RFC 8914, optional): Knot DNS adds EDE 20 to
    REFUSED; dnstls adds none, so option 15 is not compared.
  - CHAOS identity questions: dnstls refuses them by default, and the Knot
    DNS in tests/support.py is configured (identity "", version "") to do
    the same, so they are in the matrix.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from tests.support import DnstlsProcess, KnotProcess, recv_exact, require_tool

QUERY_ID = 0x4A2B
TIMEOUT = 3.0

#: A name below dn.corner.test. (DNAME to www.corner.test.) whose
#: substitution is 256 octets: YXDOMAIN.
DNAME_OVERFLOW = ".".join(["a" * 63] * 3 + ["b" * 46]) + ".dn.corner.test."
#: One octet shorter: the substitution is exactly 255 octets and is followed.
#: The reply (about 600 octets) does not fit in 512.
DNAME_LONGEST = ".".join(["a" * 63] * 3 + ["b" * 45]) + ".dn.corner.test."

#: Every answer shape in tests/data/zones/, as "name type [class]".
QUESTIONS = [
    # corner.test. apex and plain answers
    "corner.test. SOA",
    "corner.test. NS",
    "corner.test. MX",
    "corner.test. A",
    "corner.test. ANY",
    "corner.test. DS",
    "www.corner.test. A",
    "www.corner.test. AAAA",
    "www.corner.test. TXT",
    "www.corner.test. MX",
    "www.corner.test. ANY",
    "www.corner.test. RRSIG",
    "www.corner.test. NSEC",
    "www.corner.test. TYPE65280",
    "WwW.CoRnEr.TeSt. TXT",
    "many.corner.test. A",
    "mail.corner.test. TXT",
    # empty non-terminals
    "ent.corner.test. A",
    "ent.corner.test. ANY",
    "a.ent.corner.test. A",
    "x.ent.corner.test. A",
    # CNAME chains, loops, dangling and out-of-zone targets
    "alias.corner.test. A",
    "alias.corner.test. CNAME",
    "alias.corner.test. ANY",
    "chain1.corner.test. A",
    "chain1.corner.test. AAAA",
    "chain1.corner.test. CNAME",
    "chain2.corner.test. MX",
    "dangling.corner.test. A",
    "dangling.corner.test. TXT",
    "to-wild.corner.test. A",
    "to-wild.corner.test. MX",
    "outside.corner.test. A",
    "loop1.corner.test. A",
    "loop2.corner.test. CNAME",
    "self.corner.test. A",
    "self.corner.test. CNAME",
    "to-cut.corner.test. A",
    # wildcards
    "foo.corner.test. A",
    "foo.corner.test. TXT",
    "foo.corner.test. MX",
    "foo.corner.test. ANY",
    "FoO.CoRnEr.TeSt. A",
    "a.b.c.corner.test. A",
    "*.corner.test. A",
    "*.corner.test. TXT",
    "*.corner.test. MX",
    "x.wcname.corner.test. A",
    "x.wcname.corner.test. AAAA",
    "x.wcname.corner.test. CNAME",
    "y.x.wcname.corner.test. A",
    "wcname.corner.test. A",
    "block.corner.test. A",
    "x.block.corner.test. A",
    "a.x.block.corner.test. A",
    "z.block.corner.test. A",
    "z.block.corner.test. TXT",
    "a.z.block.corner.test. A",
    "x.www.corner.test. A",
    "stars.corner.test. MX",
    "x.stars.corner.test. MX",
    "x.stars.corner.test. A",
    "*.stars.corner.test. MX",
    "y.x.stars.corner.test. MX",
    # delegations, glue, DS
    "sub.corner.test. NS",
    "sub.corner.test. A",
    "sub.corner.test. DS",
    "sub.corner.test. ANY",
    "host.sub.corner.test. A",
    "host.sub.corner.test. DS",
    "ns1.sub.corner.test. A",
    "ns1.sub.corner.test. AAAA",
    "x.y.sub.corner.test. TXT",
    "sibling.corner.test. NS",
    "sibling.corner.test. DS",
    "x.sibling.corner.test. A",
    "ns.sibling.corner.test. A",
    # parent and child both loaded
    "child.corner.test. NS",
    "child.corner.test. SOA",
    "child.corner.test. DS",
    "child.corner.test. A",
    "child.corner.test. TYPE65280",
    "ns1.child.corner.test. A",
    "host.child.corner.test. A",
    "host.child.corner.test. AAAA",
    "nx.child.corner.test. A",
    # additional-section addresses
    "_dns._tcp.corner.test. SRV",
    "_tcp.corner.test. SRV",
    "_x._tcp.corner.test. SRV",
    "bigmx.corner.test. MX",
    "mx1.corner.test. A",
    "mx10.corner.test. AAAA",
    # DNAME
    "dn.corner.test. DNAME",
    "dn.corner.test. A",
    "x.dn.corner.test. A",
    "x.dn.corner.test. DNAME",
    "www.dn.corner.test. A",
    "old.corner.test. DNAME",
    "old.corner.test. A",
    "a.old.corner.test. A",
    "a.old.corner.test. AAAA",
    "A.OlD.CoRnEr.TeSt. A",
    "b.old.corner.test. A",
    "x.a.old.corner.test. A",
    "new.corner.test. A",
    "a.new.corner.test. A",
    f"{DNAME_LONGEST} A",
    # big answers
    "big.corner.test. TXT",
    "big.corner.test. A",
    # example.test.
    "example.test. SOA",
    "example.test. NS",
    "example.test. A",
    "example.test. MX",
    "example.test. TXT",
    "example.test. ANY",
    "www.example.test. AAAA",
    "alias.example.test. A",
    "alias.example.test. AAAA",
    "txt.example.test. TXT",
    "nx.example.test. A",
    "nx.example.test. TXT",
    "foo.wild.example.test. A",
    "foo.wild.example.test. TXT",
    "foo.wild.example.test. MX",
    "wild.example.test. A",
    "child.example.test. NS",
    "child.example.test. DS",
    "host.child.example.test. A",
    "ns1.child.example.test. A",
    "dns.example.test. ANY",
    # negttl.test.: SOA TTL below MINIMUM
    "nx.negttl.test. A",
    "negttl.test. MX",
    "negttl.test. SOA",
    "negttl.test. NS",
    "ns.negttl.test. A",
    "ns.negttl.test. AAAA",
    # classes
    "www.corner.test. A ANY",
    "nx.example.test. A ANY",
    "www.corner.test. A CH",
    "www.corner.test. A HS",
    "www.corner.test. A NONE",
    "version.bind. TXT CH",
    "hostname.bind. TXT CH",
    "id.server. TXT CH",
    "version.server. TXT CH",
    # outside our zones, transfers
    "example.com. A",
    "test. SOA",
    ". NS",
    "ExAmPlE.CoM. A",
    "corner.test. AXFR",
    "corner.test. IXFR",
]

#: The EDNS variants every question is asked in, as make_query arguments.
EDNS_VARIANTS: dict[str, dict[str, Any]] = {
    "no-edns": {"use_edns": False},
    "bufsize-100": {"use_edns": 0, "payload": 100},
    "bufsize-512": {"use_edns": 0, "payload": 512},
    "bufsize-1232": {"use_edns": 0, "payload": 1232},
    "bufsize-4096": {"use_edns": 0, "payload": 4096},
    "do": {"use_edns": 0, "payload": 1232, "want_dnssec": True},
    "badvers": {"use_edns": 1, "payload": 1232},
    "badvers-do": {"use_edns": 1, "payload": 1232, "want_dnssec": True},
}
SMALL_UDP = ("no-edns", "bufsize-100", "bufsize-512")

#: Extended DNS Error (RFC 8914): optional, added by Knot DNS only.
EDE = 15


def make_query(question: str, variant: str) -> dns.message.Message:
    """
    The query for C{question} (C{"name type [class]"}) in an EDNS variant,
    with RD set as stub resolvers send it, and a fixed ID.
    """
    name, rdtype, *rdclass = question.split()
    query = dns.message.make_query(
        name, rdtype, rdclass=rdclass[0] if rdclass else "IN", **EDNS_VARIANTS[variant]
    )
    query.id = QUERY_ID
    return query


# -- sending bytes -------------------------------------------------------------


def exchange(wire: bytes, address: tuple[str, int], transport: str) -> bytes:
    """
    Send the query C{wire} to C{address} over C{transport} (C{udp} or
    C{tcp}) and return the raw reply.
    """
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.sendto(wire, address)
            reply, _ = sock.recvfrom(65535)
            return reply
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", recv_exact(sock, 2))
        return recv_exact(sock, length)


@dataclass(frozen=True)
class Servers:
    """
    Where the two servers listen (the same address for UDP and TCP on Knot).
    """

    dnstls: DnstlsProcess
    knot: KnotProcess

    def dnstls_address(self, transport: str) -> tuple[str, int]:
        """
        dnstls's IPv4 listener for C{transport} (C{udp} or C{tcp}).
        """
        return self.dnstls.address(transport)

    def knot_address(self) -> tuple[str, int]:
        """
        Knot DNS's address, the same for UDP and TCP.
        """
        return ("127.0.0.1", self.knot.port)

    def ask_both(self, wire: bytes, transport: str) -> tuple[bytes, bytes]:
        """
        The replies of dnstls and Knot DNS to the same query bytes.
        """
        return (
            exchange(wire, self.dnstls_address(transport), transport),
            exchange(wire, self.knot_address(), transport),
        )


@pytest.fixture(scope="module")
def servers(dnstls_server: DnstlsProcess, knot_server: KnotProcess) -> Servers:
    """
    Both servers, started once for the session.
    """
    return Servers(dnstls_server, knot_server)


# -- what is compared ----------------------------------------------------------


def records(rrsets: list[dns.rrset.RRset]) -> list[tuple[str, int, str, str, dns.rdata.Rdata]]:
    """
    Every record as C{(owner, TTL, class, type, rdata)}, sorted; owners are
    compared without case, rdata by dnspython's canonical comparison.
    """
    return sorted(
        (
            rrset.name.to_text().lower(),
            rrset.ttl,
            dns.rdataclass.to_text(rrset.rdclass),
            dns.rdatatype.to_text(rrset.rdtype),
            rdata,
        )
        for rrset in rrsets
        for rdata in rrset
    )


def question_octets(wire: bytes) -> bytes:
    """
    The question section of a message with one question, as sent.
    """
    end = 12
    while wire[end] != 0:
        if wire[end] & 0xC0:
            end += 1
            break
        end += wire[end] + 1
    return wire[12 : end + 1 + 4]


def shape(wire: bytes, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """
    Everything compared between the two servers' replies, minus the keys in
    C{skip}.
    """
    message = dns.message.from_wire(wire)
    counts = struct.unpack_from("!HHHH", wire, 4)
    opt = None
    if message.edns >= 0:
        opt = {
            "version": message.edns,
            "payload": message.payload,
            "do": bool(message.ednsflags & dns.flags.DO),
            "other-flags": message.ednsflags & 0xFFFF & ~dns.flags.DO,
            "options": sorted(o.otype for o in message.options if o.otype != EDE),
        }
    result = {
        "id": message.id,
        "opcode": dns.opcode.to_text(message.opcode()),
        "rcode": dns.rcode.to_text(message.rcode()),
        "flags": dns.flags.to_text(message.flags),
        "counts": counts,
        "question": question_octets(wire) if counts[0] else b"",
        "answer": records(message.answer),
        "authority": records(message.authority),
        "additional": records(message.additional),
        "opt": opt,
    }
    for key in skip:
        del result[key]
    return result


def udp_limit(variant: str) -> int:
    """
    The largest UDP reply a query of this variant may get from a server that
    advertises 1232 (RFC 6891 6.2.3 and 6.2.5).
    """
    options = EDNS_VARIANTS[variant]
    if options["use_edns"] is False:
        return 512
    return max(512, min(options["payload"], 1232))


# -- the matrix ----------------------------------------------------------------


def _excluded(question: str, transport: str, variant: str) -> str | None:
    """
    Why this case is left out of the matrix, or C{None}.  Each one has its
    own test below.
    """
    if question.startswith(DNAME_LONGEST) and transport == "udp" and variant in SMALL_UDP:
        return "truncation policy differs; see test_truncated_multi_rrset_answer"
    return None


MATRIX = [
    pytest.param(transport, variant, question, id=f"{transport}-{variant}-{question.replace(' ', '-')[:60]}")
    for transport in ("udp", "tcp")
    for variant in EDNS_VARIANTS
    for question in QUESTIONS
    if _excluded(question, transport, variant) is None
]


@pytest.mark.parametrize(("transport", "variant", "question"), MATRIX)
def test_same_answer_as_knot(servers: Servers, transport: str, variant: str, question: str) -> None:
    """dnstls and Knot DNS give the same RCODE, flags, sections and OPT to the same query bytes."""
    wire = make_query(question, variant).to_wire()
    ours, knots = servers.ask_both(wire, transport)
    assert shape(ours) == shape(knots)
    # Both are right, not only equal: the question comes back as sent, and a
    # UDP reply stays within the limit.
    assert question_octets(ours) == question_octets(wire)
    if transport == "udp":
        assert len(ours) <= udp_limit(variant)


# -- truncation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "variant", ["no-edns", "bufsize-100", "bufsize-512", "bufsize-1232", "bufsize-4096", "do"]
)
def test_big_rrset_truncated(servers: Servers, variant: str) -> None:
    """
    An RRset too big for UDP gives TC=1 and a minimal reply that keeps OPT
    (and DO), like Knot DNS; TCP gets it whole.
    """
    wire = make_query("big.corner.test. TXT", variant).to_wire()
    ours, knots = servers.ask_both(wire, "udp")
    assert shape(ours) == shape(knots)
    reply = dns.message.from_wire(ours)
    assert reply.flags & dns.flags.TC
    assert reply.flags & dns.flags.AA
    assert reply.rcode() == dns.rcode.NOERROR
    assert struct.unpack_from("!HHH", ours, 4) == (1, 0, 0)
    query = dns.message.from_wire(wire)
    assert (reply.edns >= 0) == (query.edns >= 0)
    assert bool(reply.ednsflags & dns.flags.DO) == bool(query.ednsflags & dns.flags.DO)
    assert len(ours) <= udp_limit(variant)

    full, knots_full = servers.ask_both(wire, "tcp")
    assert shape(full) == shape(knots_full)
    whole = dns.message.from_wire(full)
    assert not whole.flags & dns.flags.TC
    assert len(records(whole.answer)) == 18
    assert len(full) > 1232


@pytest.mark.parametrize("variant", SMALL_UDP)
def test_additional_dropped_without_tc(servers: Servers, variant: str) -> None:
    """
    When the MX RRset fits in 512 octets but its targets' addresses do not,
    some addresses are left out and TC stays clear, as Knot DNS does.
    """
    wire = make_query("bigmx.corner.test. MX", variant).to_wire()
    ours, knots = servers.ask_both(wire, "udp")
    assert shape(ours) == shape(knots)
    full, _ = servers.ask_both(wire, "tcp")
    # The case is real: everything does not fit in 512, the answer does.
    assert len(full) > 512 >= len(ours)
    reply, whole = dns.message.from_wire(ours), dns.message.from_wire(full)
    assert not reply.flags & dns.flags.TC
    assert records(reply.answer) == records(whole.answer)
    assert len(records(reply.answer)) == 10
    kept, offered = set(records(reply.additional)), set(records(whole.additional))
    assert kept < offered
    assert len(offered) == 20
    assert kept  # what fits is kept


def test_additional_kept_when_it_fits(servers: Servers) -> None:
    """With a 1232-octet buffer the same MX reply carries every target address."""
    wire = make_query("bigmx.corner.test. MX", "bufsize-1232").to_wire()
    ours, knots = servers.ask_both(wire, "udp")
    assert shape(ours) == shape(knots)
    reply = dns.message.from_wire(ours)
    assert not reply.flags & dns.flags.TC
    assert len(records(reply.additional)) == 20


@pytest.mark.parametrize("variant", SMALL_UDP)
def test_truncated_multi_rrset_answer(servers: Servers, variant: str) -> None:
    """
    A DNAME answer too big for 512 octets gives TC=1 from both; dnstls
    sends the minimal reply (Knot keeps the DNAME that fitted).
    """
    wire = make_query(f"{DNAME_LONGEST} A", variant).to_wire()
    ours, knots = servers.ask_both(wire, "udp")
    skip = ("rcode", "counts", "answer")
    assert shape(ours, skip=skip) == shape(knots, skip=skip)
    reply = dns.message.from_wire(ours)
    assert reply.flags & dns.flags.TC
    assert struct.unpack_from("!HHH", ours, 4) == (1, 0, 0)
    assert question_octets(ours) == question_octets(wire)
    # Over TCP the whole answer comes back, the same from both.
    full, knots_full = servers.ask_both(wire, "tcp")
    assert shape(full) == shape(knots_full)
    assert dns.message.from_wire(full).rcode() == dns.rcode.NXDOMAIN


# -- deliberate differences ----------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("flags", ["CD", "RD CD", "RD CD AD"])
def test_cd_copied(servers: Servers, transport: str, flags: str) -> None:
    """
    dnstls copies CD into the reply (RFC 4035 3.2.2); Knot DNS clears it,
    and everything else matches.
    """
    query = make_query("www.corner.test. A", "do")
    query.flags = dns.flags.from_text(flags)
    ours, knots = servers.ask_both(query.to_wire(), transport)
    assert shape(ours, skip=("flags",)) == shape(knots, skip=("flags",))
    ours_flags = dns.message.from_wire(ours).flags
    knots_flags = dns.message.from_wire(knots).flags
    assert ours_flags & dns.flags.CD
    assert ours_flags & ~dns.flags.CD == knots_flags & ~dns.flags.CD
    assert not ours_flags & dns.flags.AD


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_dname_overflow_yxdomain(servers: Servers, transport: str) -> None:
    """
    An overflowing DNAME substitution is YXDOMAIN with the DNAME alone;
    Knot DNS also adds the target owner's A.
    """
    wire = make_query(f"{DNAME_OVERFLOW} A", "bufsize-1232").to_wire()
    ours, knots = servers.ask_both(wire, transport)
    skip = ("counts", "answer")
    assert shape(ours, skip=skip) == shape(knots, skip=skip)
    reply = dns.message.from_wire(ours)
    assert reply.rcode() == dns.rcode.YXDOMAIN
    assert reply.flags & dns.flags.AA
    assert [str(r) for r in reply.answer] == ["dn.corner.test. 3600 IN DNAME www.corner.test."]
    # Knot's answer has the same DNAME (and more, which we leave out).
    assert set(records(reply.answer)) <= set(records(dns.message.from_wire(knots).answer))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_no_glue_for_mx_target(servers: Servers, transport: str) -> None:
    """
    An MX target below a zone cut gets no glue from dnstls; Knot DNS adds
    it, and the rest matches.
    """
    wire = make_query("glue-mx.corner.test. MX", "bufsize-1232").to_wire()
    ours, knots = servers.ask_both(wire, transport)
    skip = ("counts", "additional")
    assert shape(ours, skip=skip) == shape(knots, skip=skip)
    assert dns.message.from_wire(ours).additional == []


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    "question",
    ["example.com. A", "corner.test. AXFR", "corner.test. IXFR", "version.bind. TXT CH"],
)
def test_error_replies_copy_do(servers: Servers, transport: str, question: str) -> None:
    """
    A reply that is only an RCODE still copies DO (RFC 3225 3), as Knot DNS
    does; Knot's EDE option aside, they match.
    """
    wire = make_query(question, "do").to_wire()
    ours, knots = servers.ask_both(wire, transport)
    assert shape(ours) == shape(knots)
    reply = dns.message.from_wire(ours)
    assert reply.rcode() != dns.rcode.NOERROR
    assert reply.ednsflags & dns.flags.DO


def test_notimp_copies_do(servers: Servers) -> None:
    """An unknown OPCODE gets NOTIMP with the question, OPT and DO, like Knot DNS (RD aside: see below)."""
    wire = bytearray(make_query("www.corner.test. A", "do").to_wire())
    wire[2] = (wire[2] & 0x87) | (dns.opcode.STATUS << 3)
    ours, knots = servers.ask_both(bytes(wire), "udp")
    assert shape(ours, skip=("flags",)) == shape(knots, skip=("flags",))
    reply = dns.message.from_wire(ours)
    assert reply.rcode() == dns.rcode.NOTIMP
    assert reply.ednsflags & dns.flags.DO


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("variant", ["no-edns", "do"])
def test_opcode_15_with_every_flag(servers: Servers, transport: str, variant: str) -> None:
    """
    Opcode 15 with every header flag set (ISC's EDNS compliance test
    C{opcodeflg}) gets Knot DNS's reply but for RD: both clear CD, AA, AD
    and RA; Knot copies RD, dnstls (as NSD) does not, since RD is QUERY's.
    """
    wire = bytearray(make_query("www.corner.test. A", variant).to_wire())
    wire[2] = 15 << 3 | 0x07
    wire[3] = 0xF0
    ours, knots = servers.ask_both(bytes(wire), transport)
    assert shape(knots)["flags"] == "QR RD" and shape(ours)["flags"] == "QR"
    assert shape(ours, skip=("flags",)) == shape(knots, skip=("flags",))
    assert dns.message.from_wire(ours).rcode() == dns.rcode.NOTIMP


# -- query case ----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("question", "variant"),
    [
        ("WwW.CoRnEr.TeSt. A", "no-edns"),
        ("nX.ExAmPlE.TeSt. A", "do"),
        ("HoSt.SuB.CoRnEr.TeSt. A", "bufsize-1232"),
        ("FoO.CoRnEr.TeSt. TXT", "no-edns"),
        ("A.OlD.CoRnEr.TeSt. A", "no-edns"),
        ("BiG.CoRnEr.TeSt. TXT", "bufsize-512"),
        ("ExAmPlE.CoM. A", "do"),
        ("CoRnEr.TeSt. AXFR", "no-edns"),
        ("WwW.CoRnEr.TeSt. A", "badvers"),
    ],
)
def test_question_case_echoed(servers: Servers, transport: str, question: str, variant: str) -> None:
    """
    A mixed-case question comes back byte for byte in every kind of reply
    (answer, NXDOMAIN, referral, TC, REFUSED, BADVERS).
    """
    wire = make_query(question, variant).to_wire()
    ours, knots = servers.ask_both(wire, transport)
    assert question_octets(ours) == question_octets(wire)
    assert question_octets(knots) == question_octets(wire)
    assert b"CoRnEr" in question_octets(ours) or b"ExAmPlE" in question_octets(ours)


# -- the command-line tools ----------------------------------------------------


@dataclass(frozen=True)
class ToolReply:
    """
    What a tool printed about one reply, normalised for comparison.
    """

    status: str
    flags: frozenset[str]
    question: str
    answer: tuple[Any, ...]
    authority: tuple[Any, ...]
    additional: tuple[Any, ...]


def _record(name: str, ttl: int, rdclass: str, rdtype: str, rdata: dns.rdata.Rdata) -> tuple[Any, ...]:
    """
    One record as the tools' parsers report it (owner without case).
    """
    return (name.lower(), ttl, rdclass, rdtype, rdata)


def parse_kdig_json(text: str) -> ToolReply:
    """
    kdig's RFC 8427 JSON output.
    """
    data = json.loads(text)

    def section(key: str) -> tuple[Any, ...]:
        found = []
        for rr in data.get(key, []):
            rdclass, rdtype = rr["CLASS"], rr["TYPE"]
            if rdtype == dns.rdatatype.OPT:
                continue
            octets = bytes.fromhex(rr["RDATAHEX"])
            rdata = dns.rdata.from_wire(rdclass, rdtype, octets, 0, len(octets))
            rdclass_text = dns.rdataclass.to_text(rdclass)
            rdtype_text = dns.rdatatype.to_text(rdtype)
            found.append(_record(rr["NAME"], rr["TTL"], rdclass_text, rdtype_text, rdata))
        return tuple(sorted(found))

    flags = frozenset(f for f in ("QR", "AA", "TC", "RD", "RA", "AD", "CD") if data[f])
    return ToolReply(
        status=dns.rcode.to_text(dns.rcode.Rcode(data["RCODE"])),
        flags=flags,
        question=data["QNAME"],
        answer=section("answerRRs"),
        authority=section("authorityRRs"),
        additional=section("additionalRRs"),
    )


_DIG_HEADER = re.compile(r"status: (\w+),")
_DIG_FLAGS = re.compile(r";; flags:([a-z ]*);")


def parse_dig(text: str) -> ToolReply:
    """
    dig's default text output.
    """
    status = _DIG_HEADER.search(text)
    flags = _DIG_FLAGS.search(text)
    assert status and flags, text
    sections: dict[str, list[tuple[Any, ...]]] = {}
    question = ""
    current = None
    for line in text.splitlines():
        if line.startswith(";; ") and line.endswith(" SECTION:"):
            current = line[3:-9]
            sections[current] = []
        elif not line.strip():
            current = None
        elif current == "QUESTION":
            question = line.lstrip(";").split()[0]
        elif current in ("ANSWER", "AUTHORITY", "ADDITIONAL") and not line.startswith(";"):
            name, ttl, rdclass, rdtype, rdata_text = line.split(None, 4)
            rdata = dns.rdata.from_text(rdclass, rdtype, rdata_text)
            sections[current].append(_record(name, int(ttl), rdclass, rdtype, rdata))
    return ToolReply(
        status=status.group(1),
        flags=frozenset(f.upper() for f in flags.group(1).split()),
        question=question,
        answer=tuple(sorted(sections.get("ANSWER", []))),
        authority=tuple(sorted(sections.get("AUTHORITY", []))),
        additional=tuple(sorted(sections.get("ADDITIONAL", []))),
    )


def run_tool(argv: list[str]) -> str:
    """
    Run a command-line tool and return what it printed.
    """
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


TOOL_QUESTIONS = [
    ["www.corner.test.", "A"],
    ["WwW.CoRnEr.TeSt.", "TXT"],
    ["nx.example.test.", "A"],
    ["host.sub.corner.test.", "A"],
    ["chain1.corner.test.", "A"],
    ["dangling.corner.test.", "A"],
    ["foo.corner.test.", "MX"],
    ["a.old.corner.test.", "A"],
    ["corner.test.", "NS"],
    ["example.com.", "A"],
    ["big.corner.test.", "TXT"],
    ["big.corner.test.", "TXT", "+ignore"],
    ["bigmx.corner.test.", "MX", "+bufsize=512"],
]
TOOLS: dict[str, tuple[list[str], Callable[[str], ToolReply]]] = {
    "kdig": (["+json"], parse_kdig_json),
    "dig": ([], parse_dig),
}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("tool", list(TOOLS))
@pytest.mark.parametrize("question", TOOL_QUESTIONS, ids=lambda q: "-".join(q))
def test_tool_sees_the_same_as_knot(
    servers: Servers, tool: str, transport: str, question: list[str]
) -> None:
    """kdig and dig print the same status, flags and sections for dnstls as for Knot DNS."""
    program = require_tool(tool)
    extra, parse = TOOLS[tool]
    options = [*extra, *question, *(["+tcp"] if transport == "tcp" else [])]
    host, port = servers.dnstls_address(transport)
    ours = parse(run_tool([program, f"@{host}", "-p", str(port), *options]))
    knot_host, knot_port = servers.knot_address()
    knots = parse(run_tool([program, f"@{knot_host}", "-p", str(knot_port), *options]))
    assert ours == knots
    assert "QR" in ours.flags
    if tool == "dig":
        # dig prints the question as the reply carried it.
        assert ours.question == question[0]
