"""
Tests for L{dnstls.resolver.infracache.InfraCache} on a fake clock: TTLs,
ranks, the size bound, names without addresses, and each server's RTT,
EDNS support, lameness and being down.
"""

from __future__ import annotations

import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from twisted.internet.task import Clock

from dnstls.resolver.infracache import DOWN_FOR, MAX_NEGATIVE_TTL, UNKNOWN_RTT, InfraCache, Rank

A = dns.rdatatype.A


def rrset(name: str, ttl: int, address: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(name, ttl, "IN", "A", address)


def test_infra_ttl_counts_down() -> None:
    """Records count down on the injected clock and are gone when their TTL is."""
    clock = Clock()
    infra = InfraCache(clock)
    infra.put(rrset("ns.x.", 10, "192.0.2.1"), Rank.ADDITIONAL)
    clock.advance(4)
    found = infra.get(dns.name.from_text("NS.x."), A)
    assert found is not None and found.ttl == 6
    clock.advance(6)
    assert infra.get(dns.name.from_text("ns.x."), A) is None


def test_infra_ttl_with_the_top_bit_is_zero() -> None:
    """A TTL of 2**31 or more is treated as 0 (RFC 2181 8): not kept, rather than kept for the maximum."""
    infra = InfraCache(Clock())
    assert not infra.put(rrset("ns.x.", 2**31, "192.0.2.1"), Rank.AUTHORITATIVE)
    assert infra.get(dns.name.from_text("ns.x."), A) is None
    assert infra.put(rrset("ns.x.", 2**31 - 1, "192.0.2.1"), Rank.AUTHORITATIVE)
    found = infra.get(dns.name.from_text("ns.x."), A)
    assert found is not None and found.ttl == infra.max_ttl


def test_infra_ranks() -> None:
    """Lower-ranked data never replaces higher-ranked data that is alive (RFC 2181 5.4.1)."""
    clock = Clock()
    infra = InfraCache(clock)
    name = dns.name.from_text("ns.x.")
    assert infra.put(rrset("ns.x.", 100, "192.0.2.1"), Rank.AUTHORITATIVE)
    assert not infra.put(rrset("ns.x.", 100, "192.0.2.66"), Rank.ADDITIONAL)
    assert not infra.put(rrset("ns.x.", 100, "192.0.2.66"), Rank.ANSWER)
    found = infra.get(name, A)
    assert found is not None and [r.address for r in found] == ["192.0.2.1"]
    assert infra.put(rrset("ns.x.", 100, "192.0.2.2"), Rank.AUTHORITATIVE)
    clock.advance(100)
    assert infra.put(rrset("ns.x.", 100, "192.0.2.3"), Rank.ADDITIONAL)
    assert infra.rank(name, A) == Rank.ADDITIONAL
    assert infra.put(rrset("ns.x.", 100, "192.0.2.4"), Rank.AUTHORITY)
    assert infra.rank(name, A) == Rank.AUTHORITY


def test_infra_size_bound() -> None:
    """The cache keeps at most its size, dropping the least recently used."""
    infra = InfraCache(Clock(), size=2)
    for i in range(3):
        infra.put(rrset(f"n{i}.x.", 100, "192.0.2.1"), Rank.ADDITIONAL)
    assert len(infra) == 2
    assert infra.get(dns.name.from_text("n0.x."), A) is None


def test_infra_missing_addresses() -> None:
    """A name without an address is remembered for its negative TTL (capped) or until an address comes."""
    clock = Clock()
    infra = InfraCache(clock)
    name = dns.name.from_text("ns.x.")
    infra.put_missing(name, A, 300)
    assert infra.missing(dns.name.from_text("NS.x."), A)
    assert not infra.missing(name, dns.rdatatype.AAAA)
    clock.advance(300)
    assert not infra.missing(name, A)
    infra.put_missing(name, A, 10 * MAX_NEGATIVE_TTL)
    clock.advance(MAX_NEGATIVE_TTL)
    assert not infra.missing(name, A)
    infra.put_missing(name, A, 300)
    infra.put(rrset("ns.x.", 100, "192.0.2.1"), Rank.AUTHORITATIVE)
    assert not infra.missing(name, A)


def test_infra_server_state() -> None:
    """RTTs are smoothed, timeouts back off, and server state expires."""
    clock = Clock()
    infra = InfraCache(clock)
    assert infra.rtt("192.0.2.1") == UNKNOWN_RTT
    infra.answered("192.0.2.1", 0.1)
    infra.answered("192.0.2.1", 0.2)
    assert infra.rtt("192.0.2.1") == pytest.approx(0.13)
    infra.timed_out("192.0.2.2", 1.5)
    assert infra.rtt("192.0.2.2") == 1.5
    infra.no_edns("192.0.2.1")
    infra.lame(dns.name.from_text("x."), "192.0.2.1")
    assert not infra.edns("192.0.2.1") and infra.is_lame(dns.name.from_text("X."), "192.0.2.1")
    clock.advance(901)
    assert infra.edns("192.0.2.1") and not infra.is_lame(dns.name.from_text("x."), "192.0.2.1")
    assert infra.rtt("192.0.2.1") == UNKNOWN_RTT


def test_infra_server_down_then_probed() -> None:
    """Silent twice in a row, a server is down for DOWN_FOR s; then one probe at a time; an answer ends it."""
    clock = Clock()
    infra = InfraCache(clock)
    address = "192.0.2.7"
    infra.timed_out(address, 1.0)
    assert not infra.is_down(address)  # one timeout may be a lost packet
    infra.answered(address, 0.1)
    infra.timed_out(address, 1.0)
    assert not infra.is_down(address)  # the count starts again after an answer
    infra.timed_out(address, 1.0)
    assert infra.is_down(address)
    clock.advance(DOWN_FOR)
    assert not infra.is_down(address)
    infra.probing(address)  # one question probes it: the others keep away
    assert infra.is_down(address)
    infra.answered(address, 0.2)
    assert not infra.is_down(address)
    infra.probing(address)
    assert not infra.is_down(address)
