"""
Table-driven tests of L{dnstls.zones.authority}: one test per corner case of
RFC 1034 section 4.3.2, RFC 2181, RFC 2308, RFC 4592, RFC 6604, RFC 6672 and
RFC 8482, asked of the zones in C{tests/data/zones/}.

Records are compared as sorted C{"owner TTL TYPE RDATA"} strings, so every
assertion states exactly what a client would see in that section.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import dns.name
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest

from dnstls.zones.authority import (
    MAX_CHAIN,
    AuthoritativeZone,
    LookupResult,
    Outcome,
)
from dnstls.zones.store import ZoneStore
from tests.support import ZONES, load_store

SOA_CORNER = "corner.test. 300 SOA ns1.corner.test. hostmaster.corner.test. 1 7200 3600 1209600 300"
SOA_EXAMPLE = (
    "example.test. 300 SOA ns1.example.test. hostmaster.example.test. 2026112801 7200 3600 1209600 300"
)
SOA_NEGTTL = "negttl.test. 60 SOA ns.negttl.test. hostmaster.negttl.test. 1 7200 3600 1209600 300"
SUB_NS = [
    "sub.corner.test. 3600 NS ns.sibling.corner.test.",
    "sub.corner.test. 3600 NS ns1.sub.corner.test.",
]
SUB_GLUE_REQUIRED = [
    "ns1.sub.corner.test. 3600 A 192.0.2.153",
    "ns1.sub.corner.test. 3600 AAAA 2001:db8::153",
]
SUB_GLUE_SIBLING = ["ns.sibling.corner.test. 3600 A 192.0.2.154"]


@pytest.fixture(scope="module")
def store() -> ZoneStore:
    """
    Every zone in C{tests/data/zones/}, loaded as C{twistd dnstls --zones} does.
    """
    return load_store(ZONES, [])


def ask(store: ZoneStore, qname: str, qtype: str) -> LookupResult:
    """
    Route C{qname} to its zone and look it up there.
    """
    name = dns.name.from_text(qname)
    rdtype = dns.rdatatype.from_text(qtype)
    zone = store.find(name, rdtype)
    assert zone is not None, f"no zone for {qname}"
    return zone.lookup(name, rdtype)


def rrs(rrsets: list[dns.rrset.RRset]) -> list[str]:
    """
    Every record of C{rrsets} as C{"owner TTL TYPE RDATA"}, sorted.
    """
    return sorted(
        f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
        for rrset in rrsets
        for rdata in rrset
    )


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """
    Fail, rather than hang, if the block runs longer than C{seconds}: a
    lookup that follows a CNAME loop forever must show up as a failure.
    """

    def expired(signum: int, frame: object) -> None:
        raise AssertionError(f"lookup still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def chain(result: LookupResult) -> list[str]:
    """
    The answer section in order, one C{"owner TYPE"} per RRset, to check
    that a CNAME/DNAME chain is told in the order it was followed.
    """
    return [f"{r.name} {dns.rdatatype.to_text(r.rdtype)}" for r in result.answer]


# -- AA (RFC 1035 4.1.1, RFC 1034 4.3.2) ---------------------------------------


def test_answer_is_authoritative(store: ZoneStore) -> None:
    """A positive answer from our data has AA and no authority section."""
    result = ask(store, "www.corner.test.", "A")
    assert result.outcome is Outcome.ANSWER
    assert result.authoritative
    assert rrs(result.answer) == ["www.corner.test. 3600 A 192.0.2.80"]
    assert result.authority == []
    assert result.additional == []


def test_nxdomain_is_authoritative(store: ZoneStore) -> None:
    """NXDOMAIN has AA, an empty answer and the zone's SOA in authority."""
    result = ask(store, "nx.example.test.", "A")
    assert result.outcome is Outcome.NXDOMAIN
    assert result.authoritative
    assert result.answer == []
    assert rrs(result.authority) == [SOA_EXAMPLE]


def test_nodata_is_authoritative(store: ZoneStore) -> None:
    """NODATA (the name exists, the type does not) has AA and the SOA."""
    result = ask(store, "www.corner.test.", "MX")
    assert result.outcome is Outcome.NODATA
    assert result.authoritative
    assert result.answer == []
    assert rrs(result.authority) == [SOA_CORNER]


def test_referral_is_not_authoritative(store: ZoneStore) -> None:
    """A referral clears AA: the child's NS are not our authoritative data."""
    result = ask(store, "host.sub.corner.test.", "A")
    assert result.outcome is Outcome.DELEGATION
    assert not result.authoritative
    assert result.answer == []


def test_cname_into_referral_keeps_aa(store: ZoneStore) -> None:
    """A CNAME of ours that leads into a referral keeps AA, as the CNAME is authoritative."""
    result = ask(store, "to-cut.corner.test.", "A")
    assert result.outcome is Outcome.DELEGATION
    assert result.authoritative
    assert rrs(result.answer) == ["to-cut.corner.test. 3600 CNAME host.sub.corner.test."]
    assert rrs(result.authority) == SUB_NS
    assert rrs(result.additional) == sorted(SUB_GLUE_REQUIRED + SUB_GLUE_SIBLING)


# -- negative answers (RFC 2308) -----------------------------------------------


@pytest.mark.parametrize(
    ("qname", "qtype", "outcome", "soa"),
    [
        pytest.param("x.block.corner.test.", "A", Outcome.NXDOMAIN, SOA_CORNER, id="nxdomain-minimum-lower"),
        pytest.param("www.corner.test.", "MX", Outcome.NODATA, SOA_CORNER, id="nodata-minimum-lower"),
        pytest.param("nx.negttl.test.", "A", Outcome.NXDOMAIN, SOA_NEGTTL, id="nxdomain-soa-ttl-lower"),
        pytest.param("negttl.test.", "MX", Outcome.NODATA, SOA_NEGTTL, id="nodata-soa-ttl-lower"),
    ],
)
def test_negative_ttl(store: ZoneStore, qname: str, qtype: str, outcome: Outcome, soa: str) -> None:
    """The SOA of a negative answer has TTL min(SOA TTL, MINIMUM) (RFC 2308 section 3)."""
    result = ask(store, qname, qtype)
    assert result.outcome is outcome
    assert rrs(result.authority) == [soa]


@pytest.mark.parametrize(
    ("qname", "ttl"), [("corner.test.", 3600), ("negttl.test.", 60)]
)
def test_soa_answer_keeps_its_own_ttl(store: ZoneStore, qname: str, ttl: int) -> None:
    """Asked for directly, the SOA keeps its own TTL; the negative TTL applies only in authority."""
    result = ask(store, qname, "SOA")
    assert result.outcome is Outcome.ANSWER
    [soa] = result.answer
    assert soa.ttl == ttl
    assert result.authority == []


@pytest.mark.parametrize(
    ("qname", "qtype"),
    [
        pytest.param("ent.corner.test.", "A", id="ent"),
        pytest.param("ent.corner.test.", "ANY", id="ent-any"),
        pytest.param("block.corner.test.", "A", id="ent-above-z.block"),
        pytest.param("stars.corner.test.", "MX", id="ent-above-wildcard"),
        pytest.param("new.corner.test.", "A", id="ent-above-a.new"),
        pytest.param("wild.example.test.", "A", id="ent-other-zone"),
    ],
)
def test_empty_non_terminal_is_nodata(store: ZoneStore, qname: str, qtype: str) -> None:
    """A name that exists only because a name below it does is NODATA, not NXDOMAIN (RFC 8020)."""
    result = ask(store, qname, qtype)
    assert result.outcome is Outcome.NODATA
    assert result.answer == []
    assert len(result.authority) == 1 and result.authority[0].rdtype == dns.rdatatype.SOA


def test_complete_rrset(store: ZoneStore) -> None:
    """An RRset is returned whole: all five A records of many.corner.test (RFC 2181 5.1)."""
    result = ask(store, "many.corner.test.", "A")
    assert rrs(result.answer) == [f"many.corner.test. 3600 A 192.0.2.{i}" for i in range(1, 6)]


# -- referrals (RFC 1034 4.3.2 step 3b, RFC 9471) ------------------------------


@pytest.mark.parametrize(
    "qname",
    ["host.sub.corner.test.", "sub.corner.test.", "ns1.sub.corner.test.", "x.y.sub.corner.test."],
)
def test_referral_has_child_ns_and_glue(store: ZoneStore, qname: str) -> None:
    """
    At or below a cut, the child's NS go in authority and the glue in
    additional, in-domain glue first and required.
    """
    result = ask(store, qname, "A")
    assert result.outcome is Outcome.DELEGATION
    assert result.answer == []
    assert rrs(result.authority) == SUB_NS
    assert result.required == 2
    assert rrs(result.additional[: result.required]) == SUB_GLUE_REQUIRED
    assert rrs(result.additional[result.required :]) == SUB_GLUE_SIBLING


def test_referral_for_ns_question_at_cut(store: ZoneStore) -> None:
    """
    An NS question at the cut is a referral, not an answer: the NS belong
    to the child (RFC 2181 6.1).
    """
    result = ask(store, "sub.corner.test.", "NS")
    assert result.outcome is Outcome.DELEGATION
    assert not result.authoritative
    assert result.answer == []
    assert rrs(result.authority) == SUB_NS


def test_referral_with_only_sibling_style_glue(store: ZoneStore) -> None:
    """A delegation whose name servers are all below it gets all their glue as required."""
    result = ask(store, "x.sibling.corner.test.", "A")
    assert result.outcome is Outcome.DELEGATION
    assert rrs(result.authority) == [
        "sibling.corner.test. 3600 NS ns.sibling.corner.test.",
        "sibling.corner.test. 3600 NS ns2.sibling.corner.test.",
    ]
    assert result.required == 2
    assert rrs(result.additional) == [
        "ns.sibling.corner.test. 3600 A 192.0.2.154",
        "ns2.sibling.corner.test. 3600 A 192.0.2.155",
    ]


def test_referral_without_child_loaded(store: ZoneStore) -> None:
    """A delegation to a zone we do not serve is a referral with its glue."""
    result = ask(store, "host.child.example.test.", "A")
    assert result.outcome is Outcome.DELEGATION
    assert rrs(result.authority) == [
        "child.example.test. 3600 NS ns1.child.example.test.",
        "child.example.test. 3600 NS ns2.child.example.test.",
    ]
    assert rrs(result.additional) == [
        "ns1.child.example.test. 3600 A 192.0.2.153",
        "ns1.child.example.test. 3600 AAAA 2001:db8::153",
        "ns2.child.example.test. 3600 A 192.0.2.154",
    ]
    assert result.required == 3


def test_ds_at_cut_answered_by_parent(store: ZoneStore) -> None:
    """DS at a cut is parent-side data: an authoritative answer, not a referral."""
    result = ask(store, "sub.corner.test.", "DS")
    assert result.outcome is Outcome.ANSWER
    assert result.authoritative
    assert rrs(result.answer) == [
        "sub.corner.test. 3600 DS 12345 13 2"
        + " 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    ]


def test_missing_ds_at_cut_is_nodata(store: ZoneStore) -> None:
    """A cut without DS gives the parent's authoritative NODATA for DS."""
    result = ask(store, "sibling.corner.test.", "DS")
    assert result.outcome is Outcome.NODATA
    assert result.authoritative
    assert rrs(result.authority) == [SOA_CORNER]


def test_ds_below_cut_is_referral(store: ZoneStore) -> None:
    """DS for a name below a cut belongs to the child side: a referral."""
    result = ask(store, "host.sub.corner.test.", "DS")
    assert result.outcome is Outcome.DELEGATION
    assert rrs(result.authority) == SUB_NS


# -- CNAME (RFC 1034 4.3.2 step 3a, RFC 2308 2.1, RFC 6604) -------------------


def test_cname_chain_followed(store: ZoneStore) -> None:
    """A CNAME chain inside the zone is followed in order to the data."""
    result = ask(store, "chain1.corner.test.", "A")
    assert result.outcome is Outcome.ANSWER
    assert result.authoritative
    assert chain(result) == [
        "chain1.corner.test. CNAME",
        "chain2.corner.test. CNAME",
        "chain3.corner.test. CNAME",
        "www.corner.test. A",
    ]
    assert rrs(result.answer)[-1] == "www.corner.test. 3600 A 192.0.2.80"
    assert result.authority == []


def test_cname_question_not_chased(store: ZoneStore) -> None:
    """A question for the CNAME type itself gets the CNAME and nothing more."""
    result = ask(store, "chain1.corner.test.", "CNAME")
    assert result.outcome is Outcome.ANSWER
    assert rrs(result.answer) == ["chain1.corner.test. 3600 CNAME chain2.corner.test."]


def test_cname_to_nodata(store: ZoneStore) -> None:
    """A chain ending at a name without the type is NODATA with the CNAMEs in answer and the SOA."""
    result = ask(store, "chain2.corner.test.", "MX")
    assert result.outcome is Outcome.NODATA
    assert result.authoritative
    assert chain(result) == ["chain2.corner.test. CNAME", "chain3.corner.test. CNAME"]
    assert rrs(result.authority) == [SOA_CORNER]


def test_dangling_cname_is_nxdomain(store: ZoneStore) -> None:
    """A CNAME to a missing name gives NXDOMAIN with the CNAME in answer and the SOA (RFC 6604)."""
    result = ask(store, "dangling.corner.test.", "A")
    assert result.outcome is Outcome.NXDOMAIN
    assert result.authoritative
    assert rrs(result.answer) == ["dangling.corner.test. 3600 CNAME missing.block.corner.test."]
    assert rrs(result.authority) == [SOA_CORNER]


def test_cname_out_of_zone_stops(store: ZoneStore) -> None:
    """A CNAME leaving the zone ends the answer there, NOERROR, with nothing in authority."""
    result = ask(store, "outside.corner.test.", "A")
    assert result.outcome is Outcome.ANSWER
    assert rrs(result.answer) == ["outside.corner.test. 3600 CNAME www.example.org."]
    assert result.authority == []
    assert result.additional == []


@pytest.mark.parametrize(
    ("qname", "expected"),
    [
        pytest.param(
            "loop1.corner.test.",
            ["loop1.corner.test. CNAME", "loop2.corner.test. CNAME"],
            id="two-name-loop",
        ),
        pytest.param("self.corner.test.", ["self.corner.test. CNAME"], id="self-loop"),
    ],
)
def test_cname_loop_cut(store: ZoneStore, qname: str, expected: list[str]) -> None:
    """A CNAME loop ends after each name's CNAME appears once, as a NOERROR answer."""
    with deadline(5):
        result = ask(store, qname, "A")
    assert result.outcome is Outcome.ANSWER
    assert chain(result) == expected
    assert result.authority == []


def test_long_cname_chain_cut() -> None:
    """
    A CNAME chain longer than MAX_CHAIN is cut after MAX_CHAIN links
    instead of being followed forever.
    """
    links = MAX_CHAIN + 4
    text = "@ 3600 SOA ns hostmaster 1 7200 3600 1209600 300\n@ 3600 NS ns\nns 3600 A 192.0.2.1\n"
    text += "".join(f"c{i} 3600 CNAME c{i + 1}\n" for i in range(links))
    text += f"c{links} 3600 A 192.0.2.2\n"
    zone = AuthoritativeZone(dns.zone.from_text(text, "long.test.", relativize=False))
    with deadline(5):
        result = zone.lookup(dns.name.from_text("c0.long.test."), dns.rdatatype.A)
    assert result.outcome is Outcome.ANSWER
    assert chain(result) == [f"c{i}.long.test. CNAME" for i in range(MAX_CHAIN)]


def test_cname_into_wildcard(store: ZoneStore) -> None:
    """A CNAME whose target only a wildcard covers gets the synthesised data."""
    result = ask(store, "to-wild.corner.test.", "A")
    assert result.outcome is Outcome.ANSWER
    assert rrs(result.answer) == [
        "missing.corner.test. 3600 A 192.0.2.99",
        "to-wild.corner.test. 3600 CNAME missing.corner.test.",
    ]


# -- wildcards (RFC 4592) ------------------------------------------------------


@pytest.mark.parametrize(
    ("qname", "qtype", "expected"),
    [
        pytest.param("foo.corner.test.", "A", ["foo.corner.test. 3600 A 192.0.2.99"], id="a"),
        pytest.param("foo.corner.test.", "TXT", ['foo.corner.test. 3600 TXT "wildcard"'], id="txt"),
        pytest.param("a.b.c.corner.test.", "A", ["a.b.c.corner.test. 3600 A 192.0.2.99"], id="deep"),
        pytest.param(
            "foo.wild.example.test.",
            "TXT",
            ['foo.wild.example.test. 3600 TXT "wildcard-answer"'],
            id="below-ent",
        ),
    ],
)
def test_wildcard_synthesis(store: ZoneStore, qname: str, qtype: str, expected: list[str]) -> None:
    """A missing name under a wildcard gets its data with owner = QNAME, and AA."""
    result = ask(store, qname, qtype)
    assert result.outcome is Outcome.ANSWER
    assert result.authoritative
    assert rrs(result.answer) == expected
    assert result.authority == []


def test_wildcard_nodata(store: ZoneStore) -> None:
    """A wildcard without the type asked for gives NODATA with the SOA."""
    result = ask(store, "foo.corner.test.", "MX")
    assert result.outcome is Outcome.NODATA
    assert result.answer == []
    assert rrs(result.authority) == [SOA_CORNER]


@pytest.mark.parametrize(
    "qname",
    [
        pytest.param("x.block.corner.test.", id="closest-encloser-is-ent"),
        pytest.param("x.ent.corner.test.", id="closest-encloser-is-ent-2"),
        pytest.param("a.z.block.corner.test.", id="closest-encloser-is-node"),
        pytest.param("x.www.corner.test.", id="closest-encloser-is-www"),
        pytest.param("missing.block.corner.test.", id="dangling-target"),
    ],
)
def test_wildcard_blocked_by_closer_encloser(store: ZoneStore, qname: str) -> None:
    """
    *.corner.test does not cover a name whose closest encloser is an
    existing node or empty non-terminal below the apex: NXDOMAIN.
    """
    result = ask(store, qname, "A")
    assert result.outcome is Outcome.NXDOMAIN
    assert result.answer == []
    assert rrs(result.authority) == [SOA_CORNER]


def test_wildcard_not_used_for_existing_name(store: ZoneStore) -> None:
    """An existing name without the type is NODATA even though the wildcard has that type."""
    result = ask(store, "mail.corner.test.", "TXT")
    assert result.outcome is Outcome.NODATA
    assert result.answer == []


def test_wildcard_not_matched_below_cut(store: ZoneStore) -> None:
    """Below a zone cut the delegation wins over the apex wildcard."""
    result = ask(store, "x.sub.corner.test.", "TXT")
    assert result.outcome is Outcome.DELEGATION
    assert result.answer == []
    assert rrs(result.authority) == SUB_NS


@pytest.mark.parametrize(
    ("qname", "qtype", "expected", "additional"),
    [
        pytest.param("*.corner.test.", "A", ["*.corner.test. 3600 A 192.0.2.99"], [], id="apex-star"),
        pytest.param(
            "*.stars.corner.test.", "MX", ["*.stars.corner.test. 3600 MX 10 mail.corner.test."],
            ["mail.corner.test. 3600 A 192.0.2.25"], id="star-under-ent",
        ),
    ],
)
def test_literal_star_query(
    store: ZoneStore, qname: str, qtype: str, expected: list[str], additional: list[str]
) -> None:
    """A question for the literal * name matches the wildcard node itself, owner unchanged."""
    result = ask(store, qname, qtype)
    assert result.outcome is Outcome.ANSWER
    assert rrs(result.answer) == expected
    assert rrs(result.additional) == additional


def test_wildcard_under_empty_non_terminal(store: ZoneStore) -> None:
    """A wildcard below an empty non-terminal synthesises, and adds the target's address."""
    result = ask(store, "x.stars.corner.test.", "MX")
    assert result.outcome is Outcome.ANSWER
    assert rrs(result.answer) == ["x.stars.corner.test. 3600 MX 10 mail.corner.test."]
    assert rrs(result.additional) == ["mail.corner.test. 3600 A 192.0.2.25"]


def test_wildcard_cname_followed(store: ZoneStore) -> None:
    """A wildcard CNAME is synthesised with owner = QNAME and then followed."""
    result = ask(store, "x.wcname.corner.test.", "AAAA")
    assert result.outcome is Outcome.ANSWER
    assert chain(result) == ["x.wcname.corner.test. CNAME", "www.corner.test. AAAA"]
    assert rrs(result.answer) == [
        "www.corner.test. 3600 AAAA 2001:db8::80",
        "x.wcname.corner.test. 3600 CNAME www.corner.test.",
    ]


# -- DNAME (RFC 6672) ----------------------------------------------------------


def test_dname_synthesis(store: ZoneStore) -> None:
    """A name below a DNAME gets the DNAME, a synthesised CNAME and the target's data."""
    result = ask(store, "a.old.corner.test.", "A")
    assert result.outcome is Outcome.ANSWER
    assert result.authoritative
    assert chain(result) == ["old.corner.test. DNAME", "a.old.corner.test. CNAME", "a.new.corner.test. A"]
    assert rrs(result.answer) == [
        "a.new.corner.test. 3600 A 192.0.2.12",
        "a.old.corner.test. 3600 CNAME a.new.corner.test.",
        "old.corner.test. 3600 DNAME new.corner.test.",
    ]


def test_dname_to_missing_name(store: ZoneStore) -> None:
    """A DNAME leading to a missing name gives NXDOMAIN with DNAME and CNAME in answer."""
    result = ask(store, "b.old.corner.test.", "A")
    assert result.outcome is Outcome.NXDOMAIN
    assert chain(result) == ["old.corner.test. DNAME", "b.old.corner.test. CNAME"]
    assert rrs(result.authority) == [SOA_CORNER]


def test_dname_owner_not_redirected(store: ZoneStore) -> None:
    """The DNAME owner itself is not redirected: its own data, or NODATA."""
    assert rrs(ask(store, "old.corner.test.", "DNAME").answer) == [
        "old.corner.test. 3600 DNAME new.corner.test."
    ]
    result = ask(store, "old.corner.test.", "A")
    assert result.outcome is Outcome.NODATA
    assert result.answer == []


def test_dname_overflow_is_yxdomain(store: ZoneStore) -> None:
    """
    A DNAME substitution longer than 255 octets gives YXDOMAIN with the
    DNAME alone (RFC 6672 2.2).
    """
    prefix = ".".join(["a" * 63] * 3 + ["b" * 46])
    result = ask(store, f"{prefix}.dn.corner.test.", "A")
    assert result.outcome is Outcome.YXDOMAIN
    assert rrs(result.answer) == ["dn.corner.test. 3600 DNAME www.corner.test."]
    # One octet shorter, the substitution fits, and is followed.
    shorter = ask(store, f"{prefix[:-1]}.dn.corner.test.", "A")
    assert shorter.outcome is Outcome.NXDOMAIN
    assert chain(shorter) == ["dn.corner.test. DNAME", f"{prefix[:-1]}.dn.corner.test. CNAME"]


# -- additional section (RFC 1034 4.3.2 step 6) --------------------------------


def test_mx_target_addresses(store: ZoneStore) -> None:
    """An MX answer carries the addresses of in-zone targets, and nothing for targets elsewhere."""
    result = ask(store, "corner.test.", "MX")
    assert rrs(result.additional) == ["mail.corner.test. 3600 A 192.0.2.25"]
    assert result.required == 0


def test_srv_target_addresses(store: ZoneStore) -> None:
    """An SRV answer carries the target's A and AAAA."""
    result = ask(store, "_dns._tcp.corner.test.", "SRV")
    assert rrs(result.additional) == [
        "ns1.corner.test. 3600 A 192.0.2.53",
        "ns1.corner.test. 3600 AAAA 2001:db8::53",
    ]


def test_ns_answer_addresses_with_sibling_glue(store: ZoneStore) -> None:
    """
    The apex NS answer carries its targets' addresses, sibling glue
    included, none of it required.
    """
    result = ask(store, "corner.test.", "NS")
    assert result.outcome is Outcome.ANSWER
    assert result.authoritative
    assert rrs(result.additional) == [
        "ns1.corner.test. 3600 A 192.0.2.53",
        "ns1.corner.test. 3600 AAAA 2001:db8::53",
        "ns2.sibling.corner.test. 3600 A 192.0.2.155",
    ]
    assert result.required == 0


def test_mx_target_below_cut_gets_no_glue(store: ZoneStore) -> None:
    """Glue is not authoritative data, so an MX target below a cut gets no address."""
    result = ask(store, "glue-mx.corner.test.", "MX")
    assert rrs(result.answer) == ["glue-mx.corner.test. 3600 MX 10 ns1.sub.corner.test."]
    assert result.additional == []


def test_many_mx_targets_all_listed(store: ZoneStore) -> None:
    """Every MX target's addresses are offered, none required, so rendering may drop them."""
    result = ask(store, "bigmx.corner.test.", "MX")
    assert len(rrs(result.answer)) == 10
    assert len(rrs(result.additional)) == 20
    assert result.required == 0


# -- zone choice (longest suffix; DS on the parent side) -----------------------


@pytest.mark.parametrize(
    ("qname", "qtype", "origin"),
    [
        pytest.param("host.child.corner.test.", "A", "child.corner.test.", id="child-name"),
        pytest.param("child.corner.test.", "SOA", "child.corner.test.", id="child-apex"),
        pytest.param("child.corner.test.", "NS", "child.corner.test.", id="child-apex-ns"),
        pytest.param("HoSt.ChIlD.CoRnEr.TeSt.", "A", "child.corner.test.", id="mixed-case"),
        pytest.param("www.corner.test.", "A", "corner.test.", id="parent-name"),
        pytest.param("xchild.corner.test.", "A", "corner.test.", id="not-a-label-suffix"),
        pytest.param("child.corner.test.", "DS", "corner.test.", id="ds-at-child-apex"),
        pytest.param("host.child.corner.test.", "DS", "child.corner.test.", id="ds-below-child-apex"),
        pytest.param("corner.test.", "DS", "corner.test.", id="ds-at-apex-parent-not-loaded"),
        pytest.param("negttl.test.", "A", "negttl.test.", id="other-zone"),
    ],
)
def test_zone_choice(store: ZoneStore, qname: str, qtype: str, origin: str) -> None:
    """
    The zone with the longest origin answers, except DS at a child apex,
    which the loaded parent answers.
    """
    zone = store.find(dns.name.from_text(qname), dns.rdatatype.from_text(qtype))
    assert zone is not None
    assert zone.origin == dns.name.from_text(origin)


@pytest.mark.parametrize("qname", ["example.com.", "test.", ".", "corner.test.example."])
def test_zone_choice_outside(store: ZoneStore, qname: str) -> None:
    """A name in none of our zones finds no zone (the handler answers REFUSED)."""
    assert store.find(dns.name.from_text(qname), dns.rdatatype.A) is None


def test_child_answers_below_its_apex(store: ZoneStore) -> None:
    """With parent and child loaded, a child name is answered by the child with AA, not referred."""
    result = ask(store, "host.child.corner.test.", "A")
    assert result.outcome is Outcome.ANSWER
    assert result.authoritative
    assert rrs(result.answer) == ["host.child.corner.test. 600 A 192.0.2.161"]
    missing = ask(store, "nx.child.corner.test.", "A")
    assert missing.outcome is Outcome.NXDOMAIN
    assert rrs(missing.authority) == [
        "child.corner.test. 60 SOA ns1.child.corner.test. hostmaster.child.corner.test."
        + " 7 7200 3600 1209600 60"
    ]


def test_ds_at_child_apex_from_parent(store: ZoneStore) -> None:
    """DS at a loaded child's apex is answered by the parent: NODATA with the parent's SOA."""
    result = ask(store, "child.corner.test.", "DS")
    assert result.outcome is Outcome.NODATA
    assert result.authoritative
    assert rrs(result.authority) == [SOA_CORNER]


def test_parent_zone_alone_refers_to_child(store: ZoneStore) -> None:
    """The parent zone by itself still refers a child name to the child's servers."""
    parent = store.find(dns.name.from_text("corner.test."), dns.rdatatype.A)
    assert parent is not None
    result = parent.lookup(dns.name.from_text("host.child.corner.test."), dns.rdatatype.A)
    assert result.outcome is Outcome.DELEGATION
    assert rrs(result.authority) == ["child.corner.test. 3600 NS ns1.child.corner.test."]
    assert rrs(result.additional) == ["ns1.child.corner.test. 3600 A 192.0.2.160"]


# -- ANY (RFC 8482) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("qname", "expected"),
    [
        pytest.param("www.corner.test.", ["www.corner.test. 3600 A 192.0.2.80"], id="node"),
        pytest.param(
            "corner.test.",
            ["corner.test. 3600 NS ns1.corner.test.", "corner.test. 3600 NS ns2.sibling.corner.test."],
            id="apex",
        ),
        pytest.param("foo.corner.test.", ["foo.corner.test. 3600 A 192.0.2.99"], id="wildcard"),
        pytest.param(
            "alias.corner.test.", ["alias.corner.test. 3600 CNAME www.corner.test."], id="cname-not-chased"
        ),
    ],
)
def test_minimal_any(store: ZoneStore, qname: str, expected: list[str]) -> None:
    """
    ANY is answered with one RRset of the node, the lowest type, as Knot
    DNS does (RFC 8482 4.2).
    """
    result = ask(store, qname, "ANY")
    assert result.outcome is Outcome.ANSWER
    assert len(result.answer) == 1
    assert rrs(result.answer) == expected


def test_same_data() -> None:
    """same_data tells zones with the same records apart from zones whose records or TTLs differ."""
    text = "$ORIGIN s.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n"

    def zone(body: str) -> AuthoritativeZone:
        return AuthoritativeZone(dns.zone.from_text(body, relativize=False))

    assert zone(text).same_data(zone(text))
    assert not zone(text).same_data(zone(text.replace("192.0.2.1", "192.0.2.2")))
    assert not zone(text).same_data(zone(text.replace("$TTL 300", "$TTL 60")))
    assert not zone(text).same_data(zone(text + "www A 192.0.2.3\n"))
