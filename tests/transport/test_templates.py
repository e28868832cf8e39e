"""
Tests for L{dnstls.transport.templates}: replies assembled from frames for
questions never asked before are byte for byte the handler's, over every
question of the Knot DNS comparison, every header and EDNS shape and every
context, and over a large zone asked names it has and names it has not;
and what is not plain goes to the handler.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import dns.message
import dns.name
import dns.rdataset
import pytest

from dnstls.chaos import Chaos
from dnstls.handler import Handler
from dnstls.transport.fastpath import FastAnswerer
from dnstls.transport.templates import Templates, read_plain
from tests.support import load_store
from tests.test_knot_compare import EDNS_VARIANTS
from tests.test_knot_compare import QUESTIONS as KNOT_QUESTIONS
from tests.transport.test_fastpath import CONTEXTS, make_handler, variants


@pytest.fixture(autouse=True)
def fixed_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """dnspython renders an RRset's records in a random order; the tests compare bytes."""
    monkeypatch.setattr(dns.rdataset.random, "shuffle", lambda items: None)  # type: ignore[attr-defined]


def query_wire(name: str, rdtype: str, qid: int, variant: str = "bufsize-1232") -> bytes:
    query = dns.message.make_query(name, rdtype, **EDNS_VARIANTS[variant])
    query.id = qid
    return query.to_wire()


#: Names the zones have not, of many lengths, some ending in a name of an
#: SOA's RDATA (whose compression differs), some below cuts and DNAMEs.
MISSING = [
    "nx.example.test.",
    "nx2.example.test.",
    "zz.example.test.",
    "a.b.c.example.test.",
    "x.ns1.example.test.",
    "y.ns1.example.test.",
    "q.hostmaster.example.test.",
    "hostmaster.example.test.",
    "HostMaster.Example.Test.",
    "ns3.example.test.",
    "NS4.EXAMPLE.TEST.",
    "x.wild.example.test.",
    "deep.x.wild.example.test.",
    "x.child.example.test.",
    "nx.negttl.test.",
    "nope.negttl.test.",
    "x.ns.negttl.test.",
    "nx.child.corner.test.",
    "gone.child.corner.test.",
    "x.dn.corner.test.",
    "x.sub.corner.test.",
    "nothing.ent.corner.test.",
    "b.ent.corner.test.",
    "x" * 63 + ".example.test.",
    "y" * 63 + ".example.test.",
]

#: Existing names asked for types they have and have not.
EXISTING = [
    "www.example.test. A",
    "WWW.example.test. A",
    "www.EXAMPLE.test. AAAA",
    "mail.example.test. A",
    "mail2.example.test. A",
    "mail.example.test. AAAA",
    "ns1.example.test. AAAA",
    "ns2.example.test. AAAA",
    "txt.example.test. TXT",
    "dns.example.test. A",
    "dns.example.test. TXT",
    "example.test. TXT",
    "example.test. A",
    "ns.negttl.test. A",
    "ns.negttl.test. AAAA",
    "host.child.corner.test. A",
    "host.child.corner.test. TXT",
    "many.corner.test. A",
    "www.corner.test. TXT",
    "big.corner.test. TXT",
    "ent.corner.test. A",
    "a.ent.corner.test. A",
    "a.ent.corner.test. SSHFP",
    "a.new.corner.test. A",
    "ns1.sub.corner.test. A",
]


def test_corpus_byte_identical() -> None:
    """Every question of the Knot DNS comparison and of the miss lists, in every EDNS variant and
    context, asked in a shuffled order so that frames learnt from some answer the others, gets
    exactly the handler's reply, and a good part of them is assembled."""
    reference = make_handler()
    fast = FastAnswerer(make_handler())
    questions = KNOT_QUESTIONS + [f"{name} A" for name in MISSING] + EXISTING
    questions += [f"{name} AAAA" for name in MISSING]
    asked = 0
    for context_name, context in CONTEXTS.items():
        for variant in EDNS_VARIANTS:
            order = list(questions)
            for rounds in range(1):
                random.Random(asked).shuffle(order)
                for number, question in enumerate(order):
                    name, rdtype, *rdclass = question.split()
                    query = dns.message.make_query(
                        name,
                        rdtype,
                        rdclass=rdclass[0] if rdclass else "IN",
                        **EDNS_VARIANTS[variant],
                    )
                    query.id = number
                    # a new ID and case each time: no reply cache hit
                    wire = _recase(query.to_wire(), number + rounds)
                    assert fast.handle(wire, context) == reference.handle(wire, context), (
                        context_name,
                        variant,
                        question,
                    )
                    asked += 1
    assert fast.templates.assembled > asked // 10, (fast.templates.assembled, asked)


def _recase(wire: bytes, seed: int) -> bytes:
    """C{wire} with the letters of its question's name in a case chosen by C{seed}."""
    plain = read_plain(wire)
    if plain is None:
        return wire
    chooser = random.Random(seed)
    name = bytes(
        c ^ 0x20 if (0x61 <= c <= 0x7A or 0x41 <= c <= 0x5A) and chooser.random() < 0.5 else c
        for c in wire[12 : plain.end]
    )
    return wire[:12] + name + wire[plain.end :]


def test_header_and_edns_shapes_byte_identical() -> None:
    """For new names in each header and EDNS shape of the reply cache's tests (no EDNS, payload
    sizes, DO, keepalive, padding, EDNS version 1, RD=0 with CD), assembled replies are the
    handler's."""
    reference = make_handler(recursion=True)
    fast = FastAnswerer(make_handler(recursion=True))
    asked = 0
    for context in CONTEXTS.values():
        for index in range(40):
            name = f"n{index}.example.test." if index % 2 else f"www{'x' * (index % 3)}.example.test."
            for query in variants(name, "A", "IN"):
                query.id = index
                wire = query.to_wire()
                assert fast.handle(wire, context) == reference.handle(wire, context), (name, query)
                asked += 1
    assert fast.templates.assembled > asked // 4, (fast.templates.assembled, asked)


def write_large_zone(path: Path, names: int) -> list[str]:
    """A zone like the benchmark's large one: an A for each name, an AAAA for every tenth, TXT for
    every hundredth; returns the names."""
    hosts = [f"h{i:x}-{(i * 2654435761) % 1000003:05x}.large.test." for i in range(names)]
    lines = [
        "$ORIGIN large.test.",
        "$TTL 3600",
        "@ SOA ns1 hostmaster 1 7200 3600 1209600 300",
        "@ NS ns1",
        "@ NS ns2.large.test.",
        "ns1 A 192.0.2.53",
        "ns2 A 192.0.2.54",
    ]
    for i, host in enumerate(hosts):
        lines.append(f"{host} A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
        if i % 10 == 0:
            lines.append(f"{host} AAAA 2001:db8::{i:x}")
        if i % 100 == 0:
            lines.append(f'{host} TXT "host {i}" "second"')
            lines.append(f"{host} A 10.255.{(i >> 8) & 255}.{i & 255}")
    path.write_text("\n".join(lines) + "\n")
    return hosts


def test_large_zone_miss_mix_byte_identical(tmp_path: Path) -> None:
    """On a 3,000-name zone, a miss mix (A, AAAA and TXT of existing names, random names that do
    not exist, random case) in every context gets exactly the handler's replies, nearly all of them
    assembled."""
    hosts = write_large_zone(tmp_path / "large.test.zone", 3000)
    store = load_store(None, [str(tmp_path / "large.test.zone")])
    reference = Handler(store, Chaos("ns1.test", None))
    fast = FastAnswerer(Handler(store, Chaos("ns1.test", None)))
    chooser = random.Random(14)
    asked = 0
    for context in CONTEXTS.values():
        for number in range(1500):
            draw = chooser.random()
            if draw < 0.3:
                label = "".join(
                    chooser.choice("abcdefghijklmnopqrstuvwxyz0123456789-")
                    for _ in range(chooser.randint(1, 20))
                )
                name, rdtype = f"{label}.large.test.", "A"
            else:
                name = chooser.choice(hosts)
                rdtype = "A" if draw < 0.8 else ("AAAA" if draw < 0.95 else "TXT")
            variant = chooser.choice(["no-edns", "bufsize-1232", "bufsize-4096", "do"])
            wire = _recase(query_wire(name, rdtype, number, variant), number)
            assert fast.handle(wire, context) == reference.handle(wire, context), (name, rdtype)
            asked += 1
    assert fast.templates.assembled > 0.9 * asked, (fast.templates.assembled, asked)


def test_reload_forgets_frames(tmp_path: Path) -> None:
    """Once the handler serves reloaded zones, a name that now exists gets its new answer, not the
    NXDOMAIN frame of the old data."""
    zone = tmp_path / "large.test.zone"
    write_large_zone(zone, 10)
    handler = Handler(load_store(None, [str(zone)]), Chaos("ns1.test", None))
    fast = FastAnswerer(handler)
    context = CONTEXTS["udp"]
    for index in range(5):
        fast.handle(query_wire(f"new{index}.large.test.", "A", index), context)
    assert fast.templates.assembled >= 3
    with zone.open("a") as out:
        out.write("new4 A 192.0.2.4\n")
    handler.zones = load_store(None, [str(zone)])
    reply = dns.message.from_wire(fast.handle(query_wire("new4.large.test.", "A", 9), context))  # type: ignore[arg-type]
    assert [str(rrset) for rrset in reply.answer] == ["new4.large.test. 3600 IN A 192.0.2.4"]


@pytest.mark.parametrize(
    "change",
    [
        lambda w: w[:2] + bytes([w[2] | 0x80]) + w[3:],  # a response
        lambda w: w[:2] + bytes([w[2] | 0x28]) + w[3:],  # opcode 5 (UPDATE)
        lambda w: w[:4] + b"\x00\x02" + w[6:],  # QDCOUNT 2
        lambda w: w[:6] + b"\x00\x01" + w[8:],  # ANCOUNT 1
        lambda w: w + b"\x00",  # a trailing octet
        lambda w: w[:-1],  # an OPT shorter than it says
        lambda w: w[:-11] + b"\x00\x00\x29\x04\xd0\x00\x01\x00\x00\x00\x00",  # EDNS version 1
        lambda w: w[:-11] + b"\x00\x00\x30" + w[-8:],  # not an OPT
        lambda w: w[:-13] + b"\x00\x03" + w[-11:],  # class CH
        lambda w: w[:-15] + b"\x00\xfc" + w[-13:],  # AXFR
        lambda w: w[:-15] + b"\x00\xff" + w[-13:],  # ANY
        lambda w: w[:-15] + b"\x00\x2b" + w[-13:],  # DS
        lambda w: w[:12] + b"\x40" + w[13:],  # a label of 64 octets
        lambda w: w[:12] + b"\xc0\x0c" + w[-15:],  # a compressed name
        lambda w: w[:12] + b"\x03abc",  # a name that runs off the end
    ],
)
def test_not_plain(change: object) -> None:
    """Queries that are not in the plain form (a response, another opcode, other counts, trailing
    octets, a broken or later-version OPT, another class, a transfer, ANY or DS, a bad or
    compressed name) are not read as plain, so the handler answers them."""
    wire = query_wire("www.example.test.", "A", 7)
    assert read_plain(wire) is not None
    assert read_plain(change(wire)) is None  # type: ignore[operator]


def test_plain_reading() -> None:
    """A plain query is read as its name in lower case, its type, its OPT record's octets and the
    offsets of its labels."""
    wire = query_wire("WwW.Example.TEST.", "AAAA", 7)
    plain = read_plain(wire)
    assert plain is not None
    assert plain.qkey == b"\x03www\x07example\x04test\x00"
    assert plain.qtype == 28
    assert plain.rest == wire[-11:]
    assert plain.starts == [0, 4, 12, 17]
    no_edns = read_plain(query_wire("www.example.test.", "A", 7, "no-edns"))
    assert no_edns is not None and no_edns.rest == b""


def test_frames_bounded() -> None:
    """The frames kept never pass their bound: past it they are forgotten and learnt again."""
    templates = Templates(max_frames=8)
    handler = make_handler()
    context = CONTEXTS["udp"]
    for length in range(1, 40):
        wire = query_wire("x" * length + ".example.test.", "A", length)
        reply = handler.handle(wire, context)
        assert isinstance(reply, bytes)
        templates.learn(wire, ("udp", False, None, False, False), handler.zones, reply)
        assert len(templates) <= 8
    assert templates.learnt == 39


def test_foreign_reply_not_learnt() -> None:
    """A reply that is not what the frame and the zone would assemble (another name's records) is
    not learnt as a frame."""
    templates = Templates()
    handler = make_handler()
    context = CONTEXTS["udp"]
    shape = ("udp", False, None, False, False)
    www = query_wire("www.example.test.", "A", 1)
    mail = query_wire("mail.example.test.", "A", 1)
    mail_reply = handler.handle(mail, context)
    assert isinstance(mail_reply, bytes)
    templates.learn(www, shape, handler.zones, mail_reply)
    nx = query_wire("nx.example.test.", "A", 1)
    templates.learn(nx, shape, handler.zones, mail_reply)
    assert templates.learnt == 0
    assert templates.reply(www, shape, handler.zones) is None
    assert struct.unpack("!H", www[:2]) == (1,)
