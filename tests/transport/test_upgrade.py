"""
Tests for L{dnstls.transport.upgrade} and for the replies the handler builds around
it: which first query upgrades a TCP/53 connection under each policy, the
answer to the probe C{STARTTLS. CH TXT}, and where the TO bit may appear.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from dnstls.context import RESPONSE_PADDING, QueryContext, Transport
from dnstls.handler import Handler
from dnstls.transport.upgrade import TO, UpgradePolicy, asks_upgrade, is_probe, should_upgrade
from tests.support import ZONES, load_store

PEER = ("127.0.0.1", 40000)
UDP = QueryContext(Transport.UDP, PEER)
TCP = QueryContext(Transport.TCP, PEER)
TLS = QueryContext(Transport.TLS, PEER)
#: The first query of a connection that is about to be upgraded.
UPGRADING = QueryContext(Transport.TCP, PEER, keepalive=300, upgrade=True)

#: The probe exactly as the module docstring of dnstls.transport.upgrade spells it
#: (ID 0x1234, RD=0, OPT payload 1232, TO=1), without the length prefix.
PROBE = bytes.fromhex(
    "1234 0000 0001 0000 0000 0001"
    " 08 53 54 41 52 54 54 4c 53 00 0010 0003"
    " 00 0029 04d0 0000 4000 0000"
)
#: The reply dnstls sends to L{PROBE} when it upgrades, byte for byte.
PROBE_REPLY_WILLING = bytes.fromhex(
    "1234 8400 0001 0001 0000 0001"
    " 08 53 54 41 52 54 54 4c 53 00 0010 0003"
    " c00c 0010 0003 00000000 0009 08 53 54 41 52 54 54 4c 53"
    " 00 0029 04d0 0000 4000 0000"
)
#: ... and when it does not: TXT "NO_TLS" and TO=0.
PROBE_REPLY_UNWILLING = bytes.fromhex(
    "1234 8400 0001 0001 0000 0001"
    " 08 53 54 41 52 54 54 4c 53 00 0010 0003"
    " c00c 0010 0003 00000000 0007 06 4e 4f 5f 54 4c 53"
    " 00 0029 04d0 0000 0000 0000"
)

#: The probe of getdns 0.5.1, as a build of it sent it to dnstls (ID 0xa0c7):
#: RD=1, STARTTLS. CH TXT, an OPT with payload 65535 and no flags (no TO).
GETDNS_PROBE = bytes.fromhex(
    "a0c7 0100 0001 0000 0000 0001"
    " 08 53 54 41 52 54 54 4c 53 00 0010 0003"
    " 00 0029 ffff 0000 0000 0000"
)
#: ... and with C{getdns_query -b 512}: no OPT (ID 0xfdff).
GETDNS_PROBE_NO_OPT = bytes.fromhex(
    "fdff 0100 0001 0000 0000 0000"
    " 08 53 54 41 52 54 54 4c 53 00 0010 0003"
)
#: What dnstls answers to L{GETDNS_PROBE} when it upgrades: AA, RD copied,
#: TXT "STARTTLS", TO=1 in its OPT.
GETDNS_REPLY_WILLING = bytes.fromhex(
    "a0c7 8500 0001 0001 0000 0001"
    " 08 53 54 41 52 54 54 4c 53 00 0010 0003"
    " c00c 0010 0003 00000000 0009 08 53 54 41 52 54 54 4c 53"
    " 00 0029 04d0 0000 4000 0000"
)
#: ... and to L{GETDNS_PROBE_NO_OPT}: TXT "STARTTLS" "", no OPT.
GETDNS_REPLY_WILLING_NO_OPT = bytes.fromhex(
    "fdff 8500 0001 0001 0000 0000"
    " 08 53 54 41 52 54 54 4c 53 00 0010 0003"
    " c00c 0010 0003 00000000 000a 08 53 54 41 52 54 54 4c 53 00"
)
#: What it answered (and answers without --starttls-legacy-probe) before.
GETDNS_REPLY_UNWILLING = bytes.fromhex(
    "a0c7 8500 0001 0001 0000 0001"
    " 08 53 54 41 52 54 54 4c 53 00 0010 0003"
    " c00c 0010 0003 00000000 0007 06 4e 4f 5f 54 4c 53"
    " 00 0029 04d0 0000 0000 0000"
)
GETDNS_REPLY_UNWILLING_NO_OPT = bytes.fromhex(
    "fdff 8500 0001 0001 0000 0000"
    " 08 53 54 41 52 54 54 4c 53 00 0010 0003"
    " c00c 0010 0003 00000000 0007 06 4e 4f 5f 54 4c 53"
)


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler(load_store(ZONES, []))


@pytest.fixture(scope="module")
def advertising() -> Handler:
    return Handler(load_store(ZONES, []), advertise_to=True)


def probe(to: bool = True, **kwargs: object) -> dns.message.Message:
    """
    C{STARTTLS. CH TXT} with RD=0 and, by default, an OPT with TO=1.
    """
    kwargs.setdefault("use_edns", 0)
    query = dns.message.make_query("STARTTLS.", "TXT", "CH", **kwargs)  # type: ignore[arg-type]
    query.flags &= ~dns.flags.RD
    if to and query.edns >= 0:
        query.ednsflags |= TO
    return query


def ordinary(
    to: bool = True, name: str = "www.example.test.", qtype: str = "A", **kwargs: object
) -> dns.message.Message:
    """
    An ordinary IN query, with TO (or CO: the same bit) set by default.
    """
    kwargs.setdefault("use_edns", 0)
    query = dns.message.make_query(name, qtype, **kwargs)  # type: ignore[arg-type]
    if to and query.edns >= 0:
        query.ednsflags |= TO
    return query


def with_rd() -> bytes:
    query = probe()
    query.flags |= dns.flags.RD
    return query.to_wire()


def with_qdcount_two() -> bytes:
    query = probe()
    query.question.append(ordinary().question[0])
    return query.to_wire()


def as_notify() -> bytes:
    query = probe()
    query.set_opcode(dns.opcode.NOTIFY)
    return query.to_wire()


def as_response() -> bytes:
    query = probe()
    query.flags |= dns.flags.QR
    return query.to_wire()


def edns_version_one() -> bytes:
    query = probe(use_edns=1)
    query.ednsflags |= TO
    return query.to_wire()


#: First-query shapes and whether each upgrades under off, probe, any.
SHAPES: dict[str, tuple[bytes, tuple[bool, bool, bool]]] = {
    "probe with TO": (probe().to_wire(), (False, True, True)),
    "the docstring's probe bytes": (PROBE, (False, True, True)),
    "probe with TO and DO": (probe(want_dnssec=True).to_wire(), (False, True, True)),
    "probe with TO and RD": (with_rd(), (False, True, True)),
    "probe in lower case": (probe().to_wire().replace(b"STARTTLS", b"starttls"), (False, True, True)),
    "probe without TO": (probe(to=False).to_wire(), (False, False, False)),
    "probe without OPT": (probe(use_edns=False).to_wire(), (False, False, False)),
    "probe with EDNS version 1 and TO": (edns_version_one(), (False, False, False)),
    "probe with QDCOUNT 2": (with_qdcount_two(), (False, False, False)),
    "probe as NOTIFY": (as_notify(), (False, False, False)),
    "probe as a response (QR=1)": (as_response(), (False, False, False)),
    "STARTTLS. IN TXT with TO": (ordinary(name="STARTTLS.", qtype="TXT").to_wire(), (False, False, True)),
    "STARTTLS. CH A with TO": (ordinary(name="STARTTLS.", rdclass="CH").to_wire(), (False, False, True)),
    "ordinary query with TO (CO)": (ordinary().to_wire(), (False, False, True)),
    "ordinary query with DO and CO": (ordinary(want_dnssec=True).to_wire(), (False, False, True)),
    "ordinary query without TO": (ordinary(to=False).to_wire(), (False, False, False)),
    "empty": (b"", (False, False, False)),
    "short header": (PROBE[:11], (False, False, False)),
    "probe cut in its OPT": (PROBE[:-3], (False, False, False)),
    "probe with trailing garbage": (PROBE + b"\x00", (False, False, False)),
    "garbage": (bytes(range(256)) * 2, (False, False, False)),
    "TLS ClientHello start": (bytes.fromhex("16030100f4010000f00303") + bytes(40), (False, False, False)),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(
    "policy", [UpgradePolicy.OFF, UpgradePolicy.PROBE, UpgradePolicy.ANY], ids=lambda p: p.value
)
def test_should_upgrade(policy: UpgradePolicy, shape: str) -> None:
    """
    Only a well-formed single-question QUERY with EDNS 0 and TO=1 upgrades: the probe under probe,
    any such query under any, nothing under off.
    """
    wire, expected = SHAPES[shape]
    index = [UpgradePolicy.OFF, UpgradePolicy.PROBE, UpgradePolicy.ANY].index(policy)
    assert should_upgrade(policy, wire) is expected[index]


#: The shapes that --starttls-legacy-probe adds to those that upgrade,
#: under probe and any (never under off).
LEGACY: dict[str, bytes] = {
    "getdns 0.5.1's probe": GETDNS_PROBE,
    "getdns 0.5.1's probe without OPT": GETDNS_PROBE_NO_OPT,
    "probe without TO": probe(to=False).to_wire(),
    "probe without OPT": probe(use_edns=False).to_wire(),
    "probe without TO, with DO": probe(to=False, want_dnssec=True).to_wire(),
    "probe without TO in lower case": probe(to=False).to_wire().replace(b"STARTTLS", b"starttls"),
}


@pytest.mark.parametrize("shape", list(SHAPES) + list(LEGACY))
@pytest.mark.parametrize(
    "policy", [UpgradePolicy.OFF, UpgradePolicy.PROBE, UpgradePolicy.ANY], ids=lambda p: p.value
)
def test_should_upgrade_legacy_probe(policy: UpgradePolicy, shape: str) -> None:
    """
    With legacy_probe the probe without TO (with or without an OPT of version 0, RD either way)
    upgrades under probe and any too; every other shape upgrades exactly as without it.
    """
    if shape in LEGACY:
        wire, legacy = LEGACY[shape], policy is not UpgradePolicy.OFF
        assert should_upgrade(policy, wire) is False
    else:
        wire, expected = SHAPES[shape]
        index = [UpgradePolicy.OFF, UpgradePolicy.PROBE, UpgradePolicy.ANY].index(policy)
        legacy = expected[index] or (
            shape in ("probe without TO", "probe without OPT") and policy is not UpgradePolicy.OFF
        )
    assert should_upgrade(policy, wire, legacy_probe=True) is legacy


def test_probe_bytes_parse_as_documented() -> None:
    """
    The probe bytes in the module docstring are STARTTLS. CH TXT, RD=0, EDNS 0, payload 1232, TO=1
    and nothing else.
    """
    query = dns.message.from_wire(PROBE)
    assert query.id == 0x1234
    assert query.flags == 0
    assert is_probe(query)
    assert query.edns == 0 and query.payload == 1232
    assert query.ednsflags == TO == 0x4000
    assert query.options == ()
    assert struct.pack("!H", len(PROBE)) == b"\x00\x25"


@pytest.mark.parametrize(
    ("name", "rdclass", "rdtype", "expected"),
    [
        ("STARTTLS.", "CH", "TXT", True),
        ("starttls.", "CH", "TXT", True),
        ("StartTLS.", "CH", "TXT", True),
        ("STARTTLS.example.test.", "CH", "TXT", False),
        ("STARTTLS.", "IN", "TXT", False),
        ("STARTTLS.", "CH", "A", False),
        ("STARTTLS.", "HS", "TXT", False),
        ("version.bind.", "CH", "TXT", False),
    ],
)
def test_is_probe(name: str, rdclass: str, rdtype: str, expected: bool) -> None:
    """Only the question STARTTLS. CH TXT (in any letter case) is the probe."""
    query = dns.message.make_query(name, rdtype, rdclass)
    assert is_probe(query) is expected


def test_is_probe_needs_one_question() -> None:
    """A query with no question, or with the probe and a second question, is not the probe."""
    query = probe()
    query.question = []
    assert not is_probe(query)
    assert not is_probe(dns.message.from_wire(with_qdcount_two()))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (probe(), True),
        (ordinary(), True),
        (probe(want_dnssec=True), True),
        (probe(to=False), False),
        (probe(to=False, want_dnssec=True), False),
        (probe(use_edns=False), False),
        (dns.message.from_wire(edns_version_one()), False),
    ],
    ids=["probe", "ordinary", "TO and DO", "no TO", "DO only", "no OPT", "EDNS 1"],
)
def test_asks_upgrade(query: dns.message.Message, expected: bool) -> None:
    """A query asks for the upgrade exactly when it has an EDNS version 0 OPT with TO (0x4000) set."""
    assert asks_upgrade(query) is expected


# The handler's replies.


def answer(
    handler: Handler, query: dns.message.Message | bytes, context: QueryContext
) -> dns.message.Message:
    wire = query if isinstance(query, bytes) else query.to_wire()
    reply = handler.handle(wire, context)
    assert reply is not None
    return dns.message.from_wire(reply)


def txt(reply: dns.message.Message) -> list[bytes]:
    return [s for rrset in reply.answer for rdata in rrset for s in rdata.strings]


def test_probe_upgrading_says_starttls(handler: Handler) -> None:
    """The probe that starts an upgrade gets RCODE 0, TXT "STARTTLS" owned by STARTTLS. CH, and TO=1."""
    reply = answer(handler, probe(), UPGRADING)
    assert reply.rcode() == dns.rcode.NOERROR
    assert txt(reply) == [b"STARTTLS"]
    assert reply.answer[0].name.to_text() == "STARTTLS."
    assert reply.answer[0].rdclass == dns.rdataclass.CH
    assert reply.answer[0].rdtype == dns.rdatatype.TXT
    assert reply.ednsflags == TO


def test_probe_reply_bytes(handler: Handler) -> None:
    """The reply to the documented probe is, byte for byte, the one a client developer can expect."""
    assert handler.handle(PROBE, QueryContext(Transport.TCP, PEER, upgrade=True)) == PROBE_REPLY_WILLING
    assert handler.handle(PROBE, TCP) == PROBE_REPLY_UNWILLING


def test_getdns_probe_parses_as_documented() -> None:
    """
    getdns 0.5.1's probe, as the dnstls.transport.upgrade docstring spells it, is STARTTLS. CH TXT with RD=1,
    payload 65535 and no EDNS flag.
    """
    query = dns.message.from_wire(GETDNS_PROBE)
    assert query.flags == dns.flags.RD
    assert is_probe(query)
    assert query.edns == 0 and query.payload == 65535 and query.ednsflags == 0
    assert query.options == ()
    assert struct.pack("!H", len(GETDNS_PROBE)) == b"\x00\x25"
    assert struct.pack("!H", len(GETDNS_PROBE_NO_OPT)) == b"\x00\x1a"


def test_getdns_probe_reply_bytes(handler: Handler) -> None:
    """
    getdns 0.5.1's probe gets, byte for byte, TXT "STARTTLS" and TO=1 when it upgrades, and the same
    NO_TLS reply as before otherwise.
    """
    assert handler.handle(GETDNS_PROBE, UPGRADING) == GETDNS_REPLY_WILLING
    assert handler.handle(GETDNS_PROBE, TCP) == GETDNS_REPLY_UNWILLING


def test_getdns_probe_without_opt_reply_bytes(handler: Handler) -> None:
    """
    Upgrading the probe without OPT, the TXT is "STARTTLS" "" (so that getdns's reading of it as a
    name ends inside it) and there is no OPT; declining, it is the NO_TLS reply as before.
    """
    assert handler.handle(GETDNS_PROBE_NO_OPT, UPGRADING) == GETDNS_REPLY_WILLING_NO_OPT
    assert handler.handle(GETDNS_PROBE_NO_OPT, TCP) == GETDNS_REPLY_UNWILLING_NO_OPT


@pytest.mark.parametrize("context", [UDP, TCP, TLS], ids=["udp", "tcp", "tls"])
def test_probe_declined_says_no_tls(handler: Handler, context: QueryContext) -> None:
    """A probe that does not start an upgrade gets RCODE 0, TXT "NO_TLS" and TO=0, on every transport."""
    reply = answer(handler, probe(), context)
    assert reply.rcode() == dns.rcode.NOERROR
    assert txt(reply) == [b"NO_TLS"]
    assert reply.ednsflags & TO == 0


def test_probe_without_opt_gets_no_opt(handler: Handler) -> None:
    """A probe without OPT is answered NO_TLS and its reply has no OPT in which TO could appear."""
    reply = answer(handler, probe(use_edns=False), TCP)
    assert txt(reply) == [b"NO_TLS"]
    assert reply.edns == -1


def test_upgrading_reply_is_never_padded(handler: Handler) -> None:
    """The clear-text reply that grants the upgrade is not padded even when the probe asked for padding."""
    query = probe(options=[dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\x00" * 8)])
    wire = handler.handle(query.to_wire(), UPGRADING)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert all(option.otype != dns.edns.OptionType.PADDING for option in reply.options)
    assert len(wire) % RESPONSE_PADDING != 0


def test_upgrading_ordinary_reply_is_its_normal_answer(handler: Handler) -> None:
    """Under policy any, an ordinary first query gets its normal answer, with TO=1 and DO kept."""
    reply = answer(handler, ordinary(want_dnssec=True), UPGRADING)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rdata.to_text() for rdata in reply.answer[0]] == ["192.0.2.80"]
    assert reply.ednsflags == TO | dns.flags.DO


def test_upgrading_error_reply_has_to(handler: Handler) -> None:
    """Under policy any, a first query the server refuses still says TO=1, since the upgrade follows."""
    reply = answer(handler, ordinary(name="elsewhere.invalid."), UPGRADING)
    assert reply.rcode() == dns.rcode.REFUSED
    assert reply.ednsflags & TO


@pytest.mark.parametrize("context", [UDP, TCP, TLS], ids=["udp", "tcp", "tls"])
@pytest.mark.parametrize(
    "query",
    [
        ordinary(),
        ordinary(want_dnssec=True),
        probe(),
        ordinary(name="elsewhere.invalid."),
        ordinary(name="nothing-here.example.test."),
    ],
    ids=["answer", "answer with DO", "probe", "refused", "nxdomain"],
)
def test_to_never_echoed(handler: Handler, context: QueryContext, query: dns.message.Message) -> None:
    """Without an upgrade or --advertise-to, no reply carries TO, whatever the query's TO (or CO) bit."""
    reply = answer(handler, query, context)
    assert reply.edns == 0
    assert reply.ednsflags & TO == 0


def test_to_not_echoed_in_notimp_or_badvers(handler: Handler) -> None:
    """NOTIMP and BADVERS replies to queries with TO carry TO=0."""
    reply = answer(handler, as_notify(), TCP)
    assert reply.rcode() == dns.rcode.NOTIMP
    assert reply.ednsflags & TO == 0
    reply = answer(handler, edns_version_one(), TCP)
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.ednsflags & TO == 0


@pytest.mark.parametrize("to", [True, False], ids=["query TO", "query no TO"])
def test_advertise_to_on_udp(advertising: Handler, to: bool) -> None:
    """
    With --advertise-to a UDP reply to a query with OPT says TO=1, whether or not the query had TO,
    and answers normally.
    """
    reply = answer(advertising, ordinary(to=to), UDP)
    assert reply.ednsflags & TO
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rdata.to_text() for rdata in reply.answer[0]] == ["192.0.2.80"]


def test_advertise_to_keeps_do(advertising: Handler) -> None:
    """With --advertise-to the UDP reply keeps the query's DO beside TO and sets no other flag."""
    reply = answer(advertising, ordinary(want_dnssec=True), UDP)
    assert reply.ednsflags == TO | dns.flags.DO


def test_advertise_to_errors_on_udp(advertising: Handler) -> None:
    """With --advertise-to a UDP error reply to a query with OPT says TO=1 as well."""
    reply = answer(advertising, ordinary(name="elsewhere.invalid."), UDP)
    assert reply.rcode() == dns.rcode.REFUSED
    assert reply.ednsflags & TO


def test_advertise_to_needs_opt(advertising: Handler) -> None:
    """With --advertise-to a UDP query without OPT still gets a reply without OPT."""
    reply = answer(advertising, ordinary(use_edns=False), UDP)
    assert reply.edns == -1


@pytest.mark.parametrize("context", [TCP, TLS], ids=["tcp", "tls"])
def test_advertise_to_only_on_udp(advertising: Handler, context: QueryContext) -> None:
    """With --advertise-to, replies on TCP and TLS still carry TO=0 unless they grant the upgrade."""
    reply = answer(advertising, ordinary(), context)
    assert reply.ednsflags & TO == 0
    reply = answer(advertising, probe(), context)
    assert txt(reply) == [b"NO_TLS"]
    assert reply.ednsflags & TO == 0


def test_probe_policy_turns_down_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Under probe, a first query that is not the probe is turned down from its question's bytes,
    without a dnspython parse (the handler parses it once), and the probe is still recognised.
    """
    parsed: list[bytes] = []
    from_wire = dns.message.from_wire

    def counting(wire: bytes, *args: object, **kwargs: object) -> dns.message.Message:
        parsed.append(wire)
        return from_wire(wire, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dns.message, "from_wire", counting)
    for wire in (ordinary().to_wire(), ordinary(to=False).to_wire(), b"", bytes(range(40))):
        assert should_upgrade(UpgradePolicy.PROBE, wire) is False
        assert should_upgrade(UpgradePolicy.PROBE, wire, legacy_probe=True) is False
    assert parsed == []
    upper = probe().to_wire()
    lower = upper.replace(b"STARTTLS", b"sTaRtTlS")
    assert should_upgrade(UpgradePolicy.PROBE, upper) is True
    assert should_upgrade(UpgradePolicy.PROBE, lower) is True
    assert parsed == [upper, lower]
