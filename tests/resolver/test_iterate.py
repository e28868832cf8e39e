"""
The iterative resolver (L{dnstls.resolver.iterate.Iterator}) against a real DNS tree
on loopback (L{tests.dnstree}: our servers, knotd and crafted responders on
127.53.X.Y port 53), driven in-process on the real reactor; what it sent is
read from the tree servers' query logs.  The root hints loader and the
infrastructure cache are checked in memory.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator as Iterating
from collections.abc import Sequence
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactorClock

from dnstls.acl import DEFAULT_ALLOW, AccessList
from dnstls.resolver.cache import Answer, Cache
from dnstls.resolver.infracache import InfraCache, Rank
from dnstls.resolver.iterate import MAX_NS_PER_ZONE, Iterator
from dnstls.resolver.priming import PRIME_RETRY
from dnstls.resolver.recursion import ForwardError, Recursion
from dnstls.resolver.roothints import load_root_hints, parse_root_hints
from tests import dnstree
from tests.dnstree import Tree, running_tree
from tests.support import require_tool

A = dns.rdatatype.A
IN = 1
#: the priming query (RFC 8109) as a tree server logs it
PRIMING = (".", "NS", "udp")


class FirstChoice(random.Random):
    """
    Picks the first of equally fast servers, so that a test knows which
    server of a zone is asked first (the names' sorted order).
    """

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[0]


class LastChoice(random.Random):
    """
    Picks the last of equally fast servers: of the root's servers after
    priming, the one the hints do not name (b.root-servers.test.).
    """

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[-1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterating[Tree]:
    """The DNS tree of L{tests.dnstree}, for the whole module."""
    require_tool("knotd")
    with running_tree(tmp_path_factory.mktemp("tree")) as running:
        yield running


@pytest.fixture
def fresh(tree: Tree) -> Tree:
    """The tree with its query logs emptied."""
    tree.clear_queries()
    return tree


def iterator(tree: Tree, **options: Any) -> Iterator:
    """A new resolver (empty caches) for the tree."""
    options.setdefault("timeout", 1.0)
    options.setdefault("rng", FirstChoice())
    options.setdefault("query_loopback", True)  # the tree is on 127.53.X.Y
    return Iterator(load_root_hints(tree.hints), reactor, **options)


def resolve(
    resolver: Iterator, name: str, rdtype: int = A, do: bool = False, cd: bool = False
) -> defer.Deferred[Answer]:
    return resolver.query(dns.name.from_text(name), rdtype, IN, do, cd)


def texts(rrsets: Sequence[dns.rrset.RRset]) -> list[str]:
    """The records of C{rrsets} as text, TTLs left out."""
    return [
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
        for rrset in rrsets for rdata in rrset
    ]


async def failure_of(waiting: defer.Deferred[Answer]) -> ForwardError:
    with pytest.raises(ForwardError) as raised:
        await waiting
    return raised.value


# -- resolution through the tree -------------------------------------------


@pytest_twisted.ensureDeferred
async def test_delegation_chain(fresh: Tree) -> None:
    """A name three zones down resolves from the root hints, each server asked once after priming."""
    answer = await resolve(iterator(fresh), "www.leaf.test.")
    assert answer.rcode == dns.rcode.NOERROR
    assert texts(answer.answer) == ["www.leaf.test. A 192.0.2.80"]
    assert fresh.queries(".") == [PRIMING, ("test.", "A", "udp")]
    assert len(fresh.queries("test.")) == 1
    assert fresh.queries("leaf.test.") == [("www.leaf.test.", "A", "udp")]


@pytest_twisted.ensureDeferred
async def test_qname_minimisation(fresh: Tree) -> None:
    """With minimisation the root sees only test., the TLD only leaf.test., the leaf one label at a time."""
    answer = await resolve(iterator(fresh), "deep.a.b.c.d.e.f.leaf.test.")
    assert texts(answer.answer) == ["deep.a.b.c.d.e.f.leaf.test. A 192.0.2.90"]
    assert fresh.queries(".") == [PRIMING, ("test.", "A", "udp")]
    assert fresh.queries("test.") == [("leaf.test.", "A", "udp")]
    assert [name for name, _, _ in fresh.queries("leaf.test.")] == [
        "f.leaf.test.", "e.f.leaf.test.", "d.e.f.leaf.test.", "c.d.e.f.leaf.test.",
        "b.c.d.e.f.leaf.test.", "a.b.c.d.e.f.leaf.test.", "deep.a.b.c.d.e.f.leaf.test.",
    ]


@pytest_twisted.ensureDeferred
async def test_no_minimisation(fresh: Tree) -> None:
    """With minimise=False every server is sent the full name and type."""
    answer = await resolve(iterator(fresh, minimise=False), "www.leaf.test.", dns.rdatatype.TXT)
    assert answer.rcode == dns.rcode.NOERROR and answer.answer == []
    assert fresh.queries(".") == [PRIMING, ("www.leaf.test.", "TXT", "udp")]
    assert fresh.queries("test.") == [("www.leaf.test.", "TXT", "udp")]
    assert fresh.queries("leaf.test.") == [("www.leaf.test.", "TXT", "udp")]


@pytest_twisted.ensureDeferred
async def test_minimisation_falls_back_to_the_full_name(fresh: Tree) -> None:
    """A server that fails a minimised name is asked the full name instead."""
    answer = await resolve(iterator(fresh), "www.x.broken.poison.test.")
    assert texts(answer.answer) == ["www.x.broken.poison.test. A 192.0.2.89"]
    assert fresh.poison is not None
    assert [q.question[0].name.to_text() for q in fresh.poison.queries] == [
        "broken.poison.test.", "x.broken.poison.test.", "www.x.broken.poison.test."
    ]


@pytest_twisted.ensureDeferred
async def test_glueless_delegation(fresh: Tree) -> None:
    """A zone whose servers are named in another TLD resolves through that TLD."""
    answer = await resolve(iterator(fresh), "www.glueless.test.")
    assert texts(answer.answer) == ["www.glueless.test. A 192.0.2.82"]
    assert ("ns1.hosting.example.", "A", "udp") in fresh.queries("example.")


@pytest_twisted.ensureDeferred
async def test_cname_into_another_zone(fresh: Tree) -> None:
    """A CNAME chain from leaf.test. into other.test. (knotd) comes back whole."""
    answer = await resolve(iterator(fresh), "chain.leaf.test.")
    assert texts(answer.answer) == [
        "chain.leaf.test. CNAME alias.leaf.test.",
        "alias.leaf.test. CNAME www.other.test.",
        "www.other.test. A 192.0.2.81",
    ]


@pytest_twisted.ensureDeferred
async def test_dname(fresh: Tree) -> None:
    """A DNAME (knotd) comes back with the CNAME synthesized from it and the target's answer."""
    answer = await resolve(iterator(fresh), "www.old.dname.test.")
    assert texts(answer.answer) == [
        "old.dname.test. DNAME leaf.test.",
        "www.old.dname.test. CNAME www.leaf.test.",
        "www.leaf.test. A 192.0.2.80",
    ]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("rdtype", [dns.rdatatype.CNAME, dns.rdatatype.ANY], ids=["CNAME", "ANY"])
async def test_cname_or_any_question_below_a_dname(fresh: Tree, rdtype: int) -> None:
    """Asked for the CNAME (or ANY) below a DNAME, the client gets the DNAME with the CNAME made from it."""
    answer = await resolve(iterator(fresh), "www.old.dname.test.", rdtype)
    assert texts(answer.answer) == [
        "old.dname.test. DNAME leaf.test.",
        "www.old.dname.test. CNAME www.leaf.test.",
    ]


@pytest_twisted.ensureDeferred
async def test_chain_limit(fresh: Tree) -> None:
    """A CNAME chain longer than max_chain fails with EDE 0 instead of being followed."""
    error = await failure_of(resolve(iterator(fresh, max_chain=1), "chain.leaf.test."))
    assert error.ede == dns.edns.EDECode.OTHER


@pytest_twisted.ensureDeferred
async def test_nxdomain(fresh: Tree) -> None:
    """A name that does not exist is NXDOMAIN with the zone's SOA, for the negative cache."""
    answer = await resolve(iterator(fresh), "nothing.leaf.test.")
    assert answer.rcode == dns.rcode.NXDOMAIN and answer.answer == []
    assert [(r.name.to_text(), r.rdtype) for r in answer.authority] == [
        ("leaf.test.", dns.rdatatype.SOA)
    ]


@pytest_twisted.ensureDeferred
async def test_nxdomain_to_a_minimised_name(fresh: Tree) -> None:
    """NXDOMAIN for a minimised name stops minimising: the full name is asked once, and is NXDOMAIN."""
    answer = await resolve(iterator(fresh), "a.b.nothing.leaf.test.")
    assert answer.rcode == dns.rcode.NXDOMAIN
    assert fresh.queries("leaf.test.") == [
        ("nothing.leaf.test.", "A", "udp"), ("a.b.nothing.leaf.test.", "A", "udp")
    ]


@pytest_twisted.ensureDeferred
async def test_empty_non_terminal_denied_by_a_server(fresh: Tree) -> None:
    """A server that says NXDOMAIN for an empty non-terminal does not hide the names below it."""
    answer = await resolve(iterator(fresh), "www.ent.poison.test.")
    assert texts(answer.answer) == ["www.ent.poison.test. A 192.0.2.94"]
    assert fresh.poison is not None
    assert [q.question[0].name.to_text() for q in fresh.poison.queries] == [
        "ent.poison.test.", "www.ent.poison.test."
    ]


@pytest_twisted.ensureDeferred
async def test_dname_overflow_from_the_server(fresh: Tree) -> None:
    """A server's YXDOMAIN with the DNAME that overflows the name reaches the client, not SERVFAIL."""
    name = "a" * 60 + ".long.poison.test."
    answer = await resolve(iterator(fresh), name)
    assert answer.rcode == dns.rcode.YXDOMAIN
    assert texts(answer.answer) == [f"long.poison.test. DNAME {dnstree.LONG_TARGET}"]


@pytest_twisted.ensureDeferred
async def test_nodata(fresh: Tree) -> None:
    """A name without the type asked is NOERROR, no answer, the SOA in authority."""
    answer = await resolve(iterator(fresh), "www.leaf.test.", dns.rdatatype.AAAA)
    assert answer.rcode == dns.rcode.NOERROR and answer.answer == []
    assert [r.rdtype for r in answer.authority] == [dns.rdatatype.SOA]


@pytest_twisted.ensureDeferred
async def test_lame_server_skipped(fresh: Tree) -> None:
    """A delegated server that refuses the zone is asked, then the next one answers."""
    answer = await resolve(iterator(fresh), "www.lame.test.")
    assert texts(answer.answer) == ["www.lame.test. A 192.0.2.83"]
    # ns1.lame.test. (the leaf server) comes first and refuses
    assert fresh.queries("leaf.test.") == [("www.lame.test.", "A", "udp")]


@pytest_twisted.ensureDeferred
async def test_upward_referral_is_lame(fresh: Tree) -> None:
    """A server that refers upward is skipped for the next, and not asked first again."""
    resolver = iterator(fresh)
    answer = await resolve(resolver, "www.upward.test.")
    assert texts(answer.answer) == ["www.upward.test. A 192.0.2.88"]
    assert fresh.poison is not None
    assert [q.question[0].name.to_text() for q in fresh.poison.queries] == ["www.upward.test."]
    assert resolver.infra.is_lame(dnstree.UPWARD, dnstree.POISON_ADDRESS)
    fresh.poison.queries.clear()
    answer = await resolve(resolver, "nothing.upward.test.")
    assert answer.rcode == dns.rcode.NXDOMAIN
    assert fresh.poison.queries == []


@pytest_twisted.ensureDeferred
async def test_silent_server_skipped(fresh: Tree) -> None:
    """A delegated server that never answers is left after the timeout for the next one."""
    resolver = iterator(fresh, timeout=1.0)
    answer = await resolve(resolver, "www.silent.test.")
    assert texts(answer.answer) == ["www.silent.test. A 192.0.2.84"]
    assert fresh.silent is not None and len(fresh.silent.queries) == 1
    # its RTT is now backed off: the next question goes to the other first
    answer = await resolve(resolver, "nothing.silent.test.")
    assert answer.rcode == dns.rcode.NXDOMAIN
    assert len(fresh.silent.queries) == 1


@pytest_twisted.ensureDeferred
async def test_close_stops_queries_in_flight(fresh: Tree) -> None:
    """close() ends a question waiting on a silent server at once, with SERVFAIL's EDE 22."""
    resolver = iterator(fresh, timeout=30.0)
    waiting = resolve(resolver, "www.dead.test.")
    assert fresh.silent is not None
    for _ in range(1000):
        if fresh.silent.queries:
            break
        await deferLater(reactor, 0.01)
    assert not waiting.called
    resolver.close()
    error = await failure_of(waiting)
    assert error.ede == dns.edns.EDECode.NO_REACHABLE_AUTHORITY


@pytest_twisted.ensureDeferred
async def test_all_silent_is_no_reachable_authority(fresh: Tree) -> None:
    """A zone whose only server is silent fails with EDE 22 (No Reachable Authority)."""
    error = await failure_of(resolve(iterator(fresh, timeout=0.3), "www.dead.test."))
    assert error.ede == dns.edns.EDECode.NO_REACHABLE_AUTHORITY


@pytest_twisted.ensureDeferred
async def test_unreachable_is_network_error(fresh: Tree) -> None:
    """A zone whose only server's port is closed (ICMP unreachable) fails with EDE 23 (Network Error)."""
    error = await failure_of(resolve(iterator(fresh), "www.unreachable.test."))
    assert error.ede == dns.edns.EDECode.NETWORK_ERROR


@pytest_twisted.ensureDeferred
async def test_truncation_forces_tcp(fresh: Tree) -> None:
    """A server that truncates every UDP reply is asked again over TCP, and the answer is complete."""
    answer = await resolve(iterator(fresh), "big.tc.test.", dns.rdatatype.TXT)
    assert len(answer.answer) == 1 and len(answer.answer[0]) == 20
    assert fresh.queries("tc.test.") == [
        ("big.tc.test.", "TXT", "udp"), ("big.tc.test.", "TXT", "tcp")
    ]


@pytest_twisted.ensureDeferred
async def test_out_of_bailiwick_glue_ignored(fresh: Tree) -> None:
    """A referral's addresses for names outside the referring zone are neither used nor cached."""
    resolver = iterator(fresh)
    answer = await resolve(resolver, "www.sub.poison.test.")
    assert texts(answer.answer) == ["www.sub.poison.test. A 192.0.2.85"]
    assert fresh.trap is not None and fresh.trap.queries == []
    # the server's name was resolved through example., its real address kept
    assert ("ns.victim.example.", "A", "udp") in fresh.queries("example.")
    victim = resolver.infra.get(dns.name.from_text("ns.victim.example."), A)
    assert victim is not None and [r.address for r in victim] == [dnstree.KNOT_ADDRESS]
    assert resolver.infra.get(dns.name.from_text("www.leaf.test."), A) is None
    answer = await resolve(resolver, "www.leaf.test.")
    assert texts(answer.answer) == ["www.leaf.test. A 192.0.2.80"]


@pytest_twisted.ensureDeferred
async def test_referral_fan_out_capped(fresh: Tree) -> None:
    """A delegation to ten glueless names that do not exist is given up after MAX_NS_PER_ZONE lookups."""
    error = await failure_of(resolve(iterator(fresh), "www.fan.test."))
    assert error.ede == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
    looked_up = [n for n, _, _ in fresh.queries("example.") if n.startswith("f")]
    assert len(looked_up) == MAX_NS_PER_ZONE


@pytest_twisted.ensureDeferred
async def test_name_server_lookups_capped_per_question(fresh: Tree) -> None:
    """Name-server lookups for one question stop at max_ns_lookups, failing with EDE 0."""
    error = await failure_of(resolve(iterator(fresh, max_ns_lookups=2), "www.fan.test."))
    assert error.ede == dns.edns.EDECode.OTHER
    looked_up = [n for n, _, _ in fresh.queries("example.") if n.startswith("f")]
    assert len(looked_up) == 2


@pytest_twisted.ensureDeferred
async def test_query_limit(fresh: Tree) -> None:
    """A question that needs more upstream queries than max_queries fails with EDE 0 (priming not counted)."""
    error = await failure_of(resolve(iterator(fresh, max_queries=4), "deep.a.b.c.d.e.f.leaf.test."))
    assert error.ede == dns.edns.EDECode.OTHER
    assert fresh.queries(".")[0] == PRIMING
    sent = sum(len(fresh.queries(zone)) for zone in (".", "test.", "leaf.test."))
    assert sent == 1 + 4


@pytest_twisted.ensureDeferred
async def test_edns_fallback(fresh: Tree) -> None:
    """A server that answers FORMERR to EDNS is asked again without it, and remembered."""
    resolver = iterator(fresh)
    answer = await resolve(resolver, "noedns.poison.test.")
    assert texts(answer.answer) == ["noedns.poison.test. A 192.0.2.87"]
    assert fresh.poison is not None
    assert [q.edns for q in fresh.poison.queries] == [0, -1]
    assert resolver.infra.edns(dnstree.POISON_ADDRESS) is False
    fresh.poison.queries.clear()
    await resolve(resolver, "x.poison.test.")
    assert [q.edns for q in fresh.poison.queries] == [-1]


@pytest_twisted.ensureDeferred
async def test_rd_off_do_and_cd_passed_on(fresh: Tree) -> None:
    """Queries to authoritative servers have RD=0, and carry the client's DO and CD; AD is never set."""
    answer = await resolve(iterator(fresh), "www.leaf.test.", do=True, cd=True)
    assert not answer.authenticated
    logged = fresh.servers["leaf.test."].queries()
    assert [(q["rd"], q["do"]) for q in logged] == [(False, True)]
    await resolve(iterator(fresh), "x.poison.test.", do=True, cd=True)
    assert fresh.poison is not None and len(fresh.poison.queries) == 1
    sent = fresh.poison.queries[0]
    assert sent.flags & dns.flags.CD and sent.ednsflags & dns.flags.DO
    assert not sent.flags & dns.flags.RD


@pytest_twisted.ensureDeferred
async def test_concurrent_identical_questions_coalesced(fresh: Tree) -> None:
    """Two identical questions at once send each upstream query, and the priming query, once."""
    resolver = iterator(fresh)
    first, second = await defer.gatherResults(
        [resolve(resolver, "www.leaf.test."), resolve(resolver, "www.leaf.test.")]
    )
    assert texts(first.answer) == texts(second.answer) == ["www.leaf.test. A 192.0.2.80"]
    assert fresh.queries(".") == [PRIMING, ("test.", "A", "udp")]
    assert fresh.queries("leaf.test.") == [("www.leaf.test.", "A", "udp")]


@pytest_twisted.ensureDeferred
async def test_delegations_cached(fresh: Tree) -> None:
    """A second name in a known zone goes straight to that zone's server."""
    resolver = iterator(fresh)
    await resolve(resolver, "www.leaf.test.")
    fresh.clear_queries()
    answer = await resolve(resolver, "nothing.leaf.test.")
    assert answer.rcode == dns.rcode.NXDOMAIN
    assert fresh.queries(".") == [] and fresh.queries("test.") == []
    assert fresh.queries("leaf.test.") == [("nothing.leaf.test.", "A", "udp")]


@pytest_twisted.ensureDeferred
async def test_second_resolution_from_the_cache(fresh: Tree) -> None:
    """Through Recursion and its Cache, the same question again causes no upstream query."""
    recursion = Recursion(AccessList(DEFAULT_ALLOW), Cache(reactor), iterator(fresh))
    for name in ("chain.leaf.test.", "nothing.leaf.test."):
        first = await recursion.resolve(dns.name.from_text(name), A, IN, False)
        fresh.clear_queries()
        again = await recursion.resolve(dns.name.from_text(name), A, IN, False)
        assert (again.rcode, texts(again.answer)) == (first.rcode, texts(first.answer))
        assert all(fresh.queries(zone) == [] for zone in fresh.servers)


def questions(listener: Any) -> list[tuple[str, str]]:
    """What a crafted responder received: (name, type)."""
    return [
        (q.question[0].name.to_text(), dns.rdatatype.to_text(q.question[0].rdtype))
        for q in listener.queries
    ]


@pytest_twisted.ensureDeferred
async def test_priming_finds_root_servers_the_hints_do_not_name(fresh: Tree) -> None:
    """The root's NS set from priming names a server the hints do not, and later names resolve through it."""
    resolver = iterator(fresh, rng=LastChoice())
    answer = await resolve(resolver, "www.leaf.test.")
    assert texts(answer.answer) == ["www.leaf.test. A 192.0.2.80"]
    answer = await resolve(resolver, "ns1.hosting.example.")
    assert texts(answer.answer) == ["ns1.hosting.example. A 127.53.3.1"]
    # the hints' server was only primed from; b.root-servers.test. did the work
    assert fresh.queries(".") == [PRIMING]
    assert fresh.queries(dnstree.PRIMED_ROOT) == [("test.", "A", "udp"), ("example.", "A", "udp")]
    root_ns = resolver.infra.get(dns.name.root, dns.rdatatype.NS)
    assert root_ns is not None and sorted(r.target.to_text() for r in root_ns) == [
        "a.root-servers.test.", "b.root-servers.test."
    ]
    assert resolver.infra.rank(dns.name.root, dns.rdatatype.NS) == Rank.AUTHORITATIVE
    primed = dns.name.from_text("b.root-servers.test.")
    assert resolver.infra.rank(primed, A) == Rank.ADDITIONAL


@pytest_twisted.ensureDeferred
async def test_priming_again_when_the_root_ns_expires(fresh: Tree) -> None:
    """Priming is done once while the root's NS set lives, and again on the first question after."""
    clock = Clock()
    resolver = iterator(fresh, infra=InfraCache(clock))
    await resolve(resolver, "www.leaf.test.")
    await resolve(resolver, "www.other.test.")
    assert fresh.queries(".").count(PRIMING) == 1
    clock.advance(86400)  # the root zone's TTL
    answer = await resolve(resolver, "www.other.test.")
    assert texts(answer.answer) == ["www.other.test. A 192.0.2.81"]
    assert fresh.queries(".").count(PRIMING) == 2


@pytest_twisted.ensureDeferred
async def test_failed_priming_falls_back_to_the_hints(fresh: Tree) -> None:
    """With priming failing (hints: a silent root, one that fails . NS) names resolve from the hints."""
    clock = Clock()
    resolver = Iterator(
        load_root_hints(fresh.unprimed_hints), reactor, timeout=0.3, rng=FirstChoice(),
        infra=InfraCache(clock), query_loopback=True,
    )
    answer = await resolve(resolver, "www.leaf.test.")
    assert texts(answer.answer) == ["www.leaf.test. A 192.0.2.80"]
    assert fresh.silent is not None and fresh.unprimed is not None
    # priming asked the silent hint, then the other, which then referred test.
    assert questions(fresh.silent) == [(".", "NS")]
    assert questions(fresh.unprimed) == [(".", "NS"), ("test.", "A")]
    answer = await resolve(resolver, "www.other.test.")
    assert texts(answer.answer) == ["www.other.test. A 192.0.2.81"]
    assert len(fresh.silent.queries) == 1 and len(fresh.unprimed.queries) == 2
    clock.advance(PRIME_RETRY)
    await resolve(resolver, "www.lame.test.")
    assert questions(fresh.unprimed)[2:] == [(".", "NS")]


@pytest_twisted.ensureDeferred
async def test_answer_records_off_the_chain_not_learnt(fresh: Tree) -> None:
    """An authoritative answer's extra record for another name (here its own server's address) is not used."""
    resolver = iterator(fresh)
    answer = await resolve(resolver, "extra.poison.test.")
    assert texts(answer.answer) == ["extra.poison.test. A 192.0.2.91"]
    server = resolver.infra.get(dns.name.from_text("ns1.poison.test."), A)
    assert server is not None and [r.address for r in server] == [dnstree.POISON_ADDRESS]
    answer = await resolve(resolver, "nothing.poison.test.")
    assert answer.rcode == dns.rcode.NXDOMAIN
    assert fresh.trap is not None and fresh.trap.queries == []


@pytest_twisted.ensureDeferred
async def test_rrsig_question(fresh: Tree) -> None:
    """A question for type RRSIG gets the RRSIG records the server gave."""
    answer = await resolve(iterator(fresh), "signed.poison.test.", dns.rdatatype.RRSIG)
    assert [(r.name, r.rdtype) for r in answer.answer] == [(dnstree.SIGNED, dns.rdatatype.RRSIG)]


@pytest_twisted.ensureDeferred
async def test_reply_in_other_case(fresh: Tree) -> None:
    """A reply whose question and answer are in another case than the query is accepted."""
    answer = await resolve(iterator(fresh), "capitals.poison.test.")
    assert [r.to_text() for rrset in answer.answer for r in rrset] == ["192.0.2.93"]
    assert answer.answer[0].name == dnstree.CAPITALS


@pytest_twisted.ensureDeferred
async def test_glue_with_ttl_0(fresh: Tree) -> None:
    """A delegation whose only glue has TTL 0 is followed with that glue, though it is not cached."""
    resolver = iterator(fresh)
    answer = await resolve(resolver, "www.zero.test.")
    assert texts(answer.answer) == ["www.zero.test. A 192.0.2.92"]


@pytest_twisted.ensureDeferred
async def test_glueless_address_with_ttl_0_kept_for_the_lookup(fresh: Tree) -> None:
    """A glueless server's address of TTL 0 is looked up once for all the minimised steps at its zone."""
    answer = await resolve(iterator(fresh), "deep.a.b.c.d.e.fleeting.test.")
    assert texts(answer.answer) == ["deep.a.b.c.d.e.fleeting.test. A 192.0.2.95"]
    looked_up = [q for q in fresh.queries("example.") if q[0] == "ns1.fleeting.example."]
    assert looked_up == [("ns1.fleeting.example.", "A", "udp")]


@pytest_twisted.ensureDeferred
async def test_missing_name_server_addresses_remembered(fresh: Tree) -> None:
    """Glueless server names found not to exist are not looked up again by the next question."""
    resolver = iterator(fresh)
    await failure_of(resolve(resolver, "www.fan.test."))
    first = [n for n, _, _ in fresh.queries("example.") if n.startswith("f")]
    assert first == ["f0.example.", "f1.example.", "f2.example."]
    fresh.clear_queries()
    await failure_of(resolve(resolver, "nothing.fan.test."))
    second = [n for n, _, _ in fresh.queries("example.") if n.startswith("f")]
    assert second == ["f3.example.", "f4.example.", "f5.example."]


def test_nothing_sent_at_start() -> None:
    """Building the resolver sends nothing and opens no socket (no priming at start-up)."""
    memory = MemoryReactorClock()
    Iterator(load_root_hints(), memory)
    assert memory.tcpClients == [] and memory.getDelayedCalls() == []
    assert memory.getReaders() == []


@pytest_twisted.ensureDeferred
async def test_closed_resolver_fails(fresh: Tree) -> None:
    """After close() a question fails instead of being sent."""
    resolver = iterator(fresh)
    resolver.close()
    error = await failure_of(resolve(resolver, "www.leaf.test."))
    assert error.ede == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
    assert fresh.queries(".") == []


@pytest_twisted.ensureDeferred
async def test_down_server_not_asked_again(fresh: Tree) -> None:
    """A zone whose only server was silent twice fails at once the third time, with nothing sent to it."""
    resolver = iterator(fresh, timeout=0.3)
    for _ in range(2):
        await failure_of(resolve(resolver, "www.dead.test."))
    assert fresh.silent is not None
    sent = len(fresh.silent.queries)
    started = reactor.seconds()
    error = await failure_of(resolve(resolver, "other.dead.test."))
    assert error.ede == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
    assert len(fresh.silent.queries) == sent
    assert reactor.seconds() - started < 0.3


@pytest_twisted.ensureDeferred
async def test_question_out_of_time(fresh: Tree) -> None:
    """No query is sent once a question has run max_time seconds: SERVFAIL with EDE 22."""
    error = await failure_of(resolve(iterator(fresh, max_time=0.0), "www.leaf.test."))
    assert error.ede == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
    assert fresh.queries(".") == [PRIMING]
    assert fresh.queries("test.") == []


@pytest_twisted.ensureDeferred
async def test_hints_used_when_primed_root_servers_are_loopback() -> None:
    """Root servers learnt by priming at loopback addresses give way to the hints' address, not to nothing."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(2)
    try:
        hints = parse_root_hints(". NS lab-root.\nlab-root. A 127.0.0.1\n")
        resolver = Iterator(hints, reactor, timeout=0.2, port=listener.getsockname()[1])
        # what priming would have learnt: the root's NS set, its server on loopback
        resolver.infra.put(dns.rrset.from_text(".", 86400, "IN", "NS", "ns.root."), Rank.AUTHORITATIVE)
        resolver.infra.put(dns.rrset.from_text("ns.root.", 86400, "IN", "A", "127.0.0.1"), Rank.ADDITIONAL)
        error = await failure_of(resolve(resolver, "www.example."))
        assert error.ede == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
        query = dns.message.from_wire(listener.recv(65535))
        assert query.question[0].name == dns.name.from_text("example.")
    finally:
        listener.close()


@pytest_twisted.ensureDeferred
async def test_loopback_glue_not_followed(fresh: Tree) -> None:
    """Glue at 127.0.0.0/8 is not asked by default: the hints' root is, the TLD at 127.53.1.1 never."""
    error = await failure_of(resolve(iterator(fresh, query_loopback=False), "www.leaf.test."))
    assert error.ede == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
    assert fresh.queries(".")
    assert fresh.queries("test.") == []
