"""
The cache of forwarded answers, on a fake clock: TTLs that count down,
expiry, negative caching (RFC 2308), the maximum TTL, eviction and
coalescing of identical questions.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from dnstls.resolver.cache import Answer, Cache, cache_key

WWW = dns.name.from_text("www.example.test.")
KEY = cache_key(WWW, dns.rdatatype.A, dns.rdataclass.IN, False)
SOA = "ns1.example.test. hostmaster.example.test. 1 7200 3600 1209600 {minimum}"


def positive(ttl: int = 300) -> Answer:
    rrset = dns.rrset.from_text(WWW, ttl, "IN", "A", "192.0.2.80")
    return Answer(dns.rcode.NOERROR, [rrset], [], [])


def negative(rcode: dns.rcode.Rcode, soa_ttl: int, minimum: int) -> Answer:
    soa = dns.rrset.from_text("example.test.", soa_ttl, "IN", "SOA", SOA.format(minimum=minimum))
    return Answer(rcode, [], [soa], [])


def test_ttl_counts_down() -> None:
    """A cached answer is served with the TTL that remains, in whole seconds."""
    clock = Clock()
    cache = Cache(clock)
    assert cache.put(KEY, positive(300))
    clock.advance(10.5)
    served = cache.get(KEY)
    assert served is not None
    assert served.answer[0].ttl == 290
    assert str(served.answer[0][0]) == "192.0.2.80"


def test_expires_after_ttl() -> None:
    """Once its TTL has run out an answer is gone from the cache."""
    clock = Clock()
    cache = Cache(clock)
    cache.put(KEY, positive(300))
    clock.advance(299.9)
    assert cache.get(KEY) is not None
    clock.advance(0.1)
    assert cache.get(KEY) is None
    assert len(cache) == 0


def test_key_ignores_case_but_not_do() -> None:
    """The same question in another case finds the answer; with DO set it does not."""
    cache = Cache(Clock())
    cache.put(KEY, positive())
    mixed = dns.name.from_text("WwW.ExAmPlE.tEsT.")
    assert cache.get(cache_key(mixed, dns.rdatatype.A, dns.rdataclass.IN, False)) is not None
    assert cache.get(cache_key(WWW, dns.rdatatype.A, dns.rdataclass.IN, True)) is None
    assert cache.get(cache_key(WWW, dns.rdatatype.AAAA, dns.rdataclass.IN, False)) is None


@pytest.mark.parametrize(("soa_ttl", "minimum", "expected"), [(3600, 300, 300), (60, 300, 60)])
@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.NOERROR])
def test_negative_ttl(rcode: dns.rcode.Rcode, soa_ttl: int, minimum: int, expected: int) -> None:
    """NXDOMAIN and NODATA are cached for min(SOA TTL, SOA MINIMUM), the SOA TTL counting down."""
    clock = Clock()
    cache = Cache(clock)
    assert cache.put(KEY, negative(rcode, soa_ttl, minimum))
    clock.advance(expected - 1)
    served = cache.get(KEY)
    assert served is not None and served.rcode == rcode
    assert served.authority[0].ttl == 1
    clock.advance(1)
    assert cache.get(KEY) is None


def test_negative_without_soa_not_cached() -> None:
    """A negative answer without an SOA has no negative TTL and is not cached."""
    cache = Cache(Clock())
    assert not cache.put(KEY, Answer(dns.rcode.NXDOMAIN, [], [], []))
    assert cache.get(KEY) is None


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.FORMERR])
def test_failures_not_cached(rcode: dns.rcode.Rcode) -> None:
    """SERVFAIL and other failures are never cached, SOA or not."""
    cache = Cache(Clock())
    assert not cache.put(KEY, negative(rcode, 300, 300))
    assert cache.get(KEY) is None


def test_max_ttl() -> None:
    """No answer is kept longer than the maximum TTL, and none is served with a larger TTL."""
    clock = Clock()
    cache = Cache(clock, max_ttl=100)
    cache.put(KEY, positive(604800))
    served = cache.get(KEY)
    assert served is not None and served.answer[0].ttl == 100
    clock.advance(100)
    assert cache.get(KEY) is None


def test_zero_ttl_not_cached() -> None:
    """An answer with TTL 0 is passed on but not kept."""
    cache = Cache(Clock())
    assert not cache.put(KEY, positive(0))


def test_lru_eviction() -> None:
    """A full cache drops the least recently used answer first."""
    cache = Cache(Clock(), size=2)
    keys = [cache_key(dns.name.from_text(f"n{i}.test."), 1, 1, False) for i in range(3)]
    cache.put(keys[0], positive())
    cache.put(keys[1], positive())
    assert cache.get(keys[0]) is not None  # keys[1] is now the least recently used
    cache.put(keys[2], positive())
    assert len(cache) == 2
    assert cache.get(keys[1]) is None
    assert cache.get(keys[0]) is not None
    assert cache.get(keys[2]) is not None


def test_served_copies_are_independent() -> None:
    """Changing a served answer does not change what the cache serves next."""
    cache = Cache(Clock())
    cache.put(KEY, positive(300))
    first = cache.get(KEY)
    assert first is not None
    first.answer[0].ttl = 1
    first.answer.clear()
    second = cache.get(KEY)
    assert second is not None and second.answer[0].ttl == 300


def test_coalescing() -> None:
    """Many identical questions at once cause one upstream query, and each gets the answer."""
    clock = Clock()
    cache = Cache(clock)
    upstream: list[Deferred[Answer]] = []

    def fetch() -> Deferred[Answer]:
        upstream.append(Deferred())
        return upstream[-1]

    waiting = [cache.resolve(KEY, fetch) for _ in range(5)]
    assert len(upstream) == 1
    results: list[Answer] = []
    for each in waiting:
        each.addCallback(results.append)
    upstream[0].callback(positive(300))
    assert len(results) == 5
    assert all(r.answer[0].ttl == 300 for r in results)
    assert results[0].answer[0] is not results[1].answer[0]
    cache.resolve(KEY, fetch).addCallback(results.append)
    assert len(upstream) == 1 and len(results) == 6


def test_coalesced_failure_reaches_everyone_and_is_not_cached() -> None:
    """When the upstream query fails every waiting question fails, and the next one asks again."""
    cache = Cache(Clock())
    upstream: list[Deferred[Answer]] = []

    def fetch() -> Deferred[Answer]:
        upstream.append(Deferred())
        return upstream[-1]

    failures: list[object] = []
    for _ in range(3):
        cache.resolve(KEY, fetch).addErrback(failures.append)
    upstream[0].errback(RuntimeError("no upstream"))
    assert len(failures) == 3
    cache.resolve(KEY, fetch).addErrback(failures.append)
    assert len(upstream) == 2
    upstream[1].callback(positive())


def test_upstream_message_loses_opt() -> None:
    """An upstream reply's OPT record is never part of a cached answer."""
    query = dns.message.make_query(WWW, "A", use_edns=0)
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text(WWW, 60, "IN", "A", "192.0.2.80"))
    wire = dns.message.from_wire(reply.to_wire())
    answer = Answer.from_message(wire)
    assert answer.additional == []
    assert [r.rdtype for r in answer.answer] == [dns.rdatatype.A]


def test_checking_disabled_answers_kept_apart() -> None:
    """An answer fetched with CD set is not served to a question without CD, and vice versa."""
    plain = cache_key(WWW, dns.rdatatype.A, dns.rdataclass.IN, False)
    unchecked = cache_key(WWW, dns.rdatatype.A, dns.rdataclass.IN, False, cd=True)
    assert plain != unchecked
    assert cache_key(WWW, dns.rdatatype.A, dns.rdataclass.IN, False, cd=False) == plain


def test_authenticated_flag_survives_the_cache() -> None:
    """An upstream's AD is remembered with the answer and served from the cache."""
    message = dns.message.make_response(dns.message.make_query(WWW, "A"))
    message.flags |= dns.flags.AD
    message.answer.append(dns.rrset.from_text(WWW, 300, "IN", "A", "192.0.2.1"))
    cache = Cache(Clock())
    cache.put(KEY, Answer.from_message(message))
    served = cache.get(KEY)
    assert served is not None and served.authenticated
    assert served.copy().authenticated


def cname_to(target: str, ttl: int) -> dns.rrset.RRset:
    return dns.rrset.from_text(WWW, ttl, "IN", "CNAME", target)


def test_nxdomain_after_cname_lives_no_longer_than_the_cname() -> None:
    """A CNAME (TTL 10) to a name that does not exist (negative TTL 300) is kept 10 s, not 300."""
    clock = Clock()
    cache = Cache(clock)
    soa = negative(dns.rcode.NXDOMAIN, 300, 300).authority
    assert cache.put(KEY, Answer(dns.rcode.NXDOMAIN, [cname_to("gone.other.test.", 10)], soa, []))
    clock.advance(9)
    served = cache.get(KEY)
    assert served is not None and served.answer[0].ttl == 1
    clock.advance(1)
    assert cache.get(KEY) is None


def test_nodata_after_cname_uses_soa_minimum() -> None:
    """A CNAME (TTL 3600) to a name without the type, SOA TTL 86400 and MINIMUM 300: kept 300 s."""
    clock = Clock()
    cache = Cache(clock)
    soa = negative(dns.rcode.NOERROR, 86400, 300).authority
    assert cache.put(KEY, Answer(dns.rcode.NOERROR, [cname_to("bare.other.test.", 3600)], soa, []))
    clock.advance(299)
    assert cache.get(KEY) is not None
    clock.advance(1)
    assert cache.get(KEY) is None


def test_nodata_after_cname_without_soa_not_cached() -> None:
    """A CNAME chain that ends without data and without an SOA is not kept as if it were an answer."""
    cache = Cache(Clock())
    assert not cache.put(KEY, Answer(dns.rcode.NOERROR, [cname_to("bare.other.test.", 3600)], [], []))
    assert cache.get(KEY) is None


def test_cname_question_answered_by_the_cname_is_positive() -> None:
    """Asked for the CNAME itself, the CNAME is the data: kept for its TTL."""
    clock = Clock()
    cache = Cache(clock)
    key = cache_key(WWW, dns.rdatatype.CNAME, dns.rdataclass.IN, False)
    assert cache.put(key, Answer(dns.rcode.NOERROR, [cname_to("a.other.test.", 500)], [], []))
    clock.advance(499)
    assert cache.get(key) is not None


def test_negative_answers_kept_an_hour_at_most() -> None:
    """A negative TTL of a day is cut to an hour (as Unbound's cache-max-negative-ttl)."""
    clock = Clock()
    cache = Cache(clock)
    assert cache.put(KEY, negative(dns.rcode.NXDOMAIN, 86400, 86400))
    clock.advance(3599)
    assert cache.get(KEY) is not None
    clock.advance(1)
    assert cache.get(KEY) is None
