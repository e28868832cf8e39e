# -*- test-case-name: tests.resolver.test_cache -*-
"""
The cache of upstream answers.

Answers are kept by question (lower-cased name, type, class and the DO bit)
with the RCODE and the answer, authority and additional sections, never an
OPT.  Each RRset's TTL counts down on the injected clock: what is served is
what remains.  An entry lives as long as its shortest TTL, at most
C{max_ttl} seconds.  Negative answers (NXDOMAIN, and NODATA: NOERROR with
no data of the type asked, after a CNAME chain or not) live for min(SOA
TTL, SOA MINIMUM) of the SOA in their authority section (RFC 2308 section
5), at most an hour and no longer than the chain, and are not kept without
one.  SERVFAIL and
every other RCODE are never kept.  When full, the least recently used entry
goes.

L{Cache.resolve} also coalesces: while one upstream query for a question
is running, others asking the same question wait for its answer instead of
sending their own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

#: Entries kept at most (C{--cache-size}).
DEFAULT_SIZE = 10000
#: The longest an answer is kept, in seconds (C{--cache-max-ttl}).
DEFAULT_MAX_TTL = 86400
#: The longest a negative answer is kept (Unbound's cache-max-negative-ttl;
#: RFC 2308 5 suggests one to three hours).
MAX_NEGATIVE_TTL = 3600

#: (lower-cased qname, qtype, qclass, DO, CD)
CacheKey = tuple[dns.name.Name, int, int, bool, bool]


def cache_key(
    qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
) -> CacheKey:
    """
    The key of a question: the name compared without regard to case; an
    answer fetched with checking disabled (CD) is kept apart.
    """
    return (qname.canonicalize(), int(qtype), int(qclass), bool(do), bool(cd))


@dataclass(frozen=True)
class Answer:
    """
    What an upstream said, without header flags or OPT.
    """

    rcode: dns.rcode.Rcode
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]
    additional: list[dns.rrset.RRset]
    #: the upstream set AD: it validated the data (RFC 4035 3.2.3)
    authenticated: bool = False

    @classmethod
    def from_message(cls, message: dns.message.Message) -> Answer:
        """
        The sections of C{message}; its OPT and TSIG are not among them.
        """
        return cls(
            message.rcode(),
            [_copy(r) for r in message.answer],
            [_copy(r) for r in message.authority],
            [_copy(r) for r in message.additional if r.rdtype != dns.rdatatype.OPT],
            bool(message.flags & dns.flags.AD),
        )

    def copy(self) -> Answer:
        """
        An answer whose RRsets can be changed without changing this one's.
        """
        return Answer(
            self.rcode,
            [_copy(r) for r in self.answer],
            [_copy(r) for r in self.authority],
            [_copy(r) for r in self.additional],
            self.authenticated,
        )


def _copy(rrset: dns.rrset.RRset, ttl: int | None = None) -> dns.rrset.RRset:
    copy: dns.rrset.RRset = rrset.copy()
    if ttl is not None:
        copy.ttl = ttl
    return copy


def lifetime(answer: Answer, max_ttl: int, qtype: int | None = None) -> int | None:
    """
    How many seconds C{answer} to a question of type C{qtype} may be kept,
    or C{None} for not at all.

    An answer is positive when its answer section holds data of the type
    asked (any data when C{qtype} is not given): it lives as long as its
    shortest TTL.  Otherwise it is negative (NXDOMAIN, or NODATA, possibly
    at the end of a CNAME chain): it lives for the SOA's min(TTL, MINIMUM)
    (RFC 2308 5), at most L{MAX_NEGATIVE_TTL}, and no longer than the
    chain's shortest TTL; without an SOA it is not kept.
    """
    if answer.rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return None
    ttls = [int(r.ttl) for r in answer.answer + answer.authority + answer.additional]
    if answer.rcode == dns.rcode.NOERROR and _holds_data(answer, qtype):
        return min([max_ttl, *ttls])
    for rrset in answer.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return min([max_ttl, MAX_NEGATIVE_TTL, int(rrset[0].minimum), *ttls])
    return None


def _holds_data(answer: Answer, qtype: int | None) -> bool:
    if qtype is None or qtype == dns.rdatatype.ANY:
        return bool(answer.answer)
    return any(r.rdtype == qtype for r in answer.answer)


@dataclass
class _Entry:
    answer: Answer
    stored: float
    expires: float


class Cache:
    """
    Upstream answers by question, with their TTLs counting down.

    @ivar clock: what tells the time (C{IReactorTime.seconds}).
    """

    def __init__(
        self, clock: IReactorTime, size: int = DEFAULT_SIZE, max_ttl: int = DEFAULT_MAX_TTL
    ) -> None:
        if size < 1 or max_ttl < 0:
            raise ValueError("the cache needs a size of at least 1 and a max TTL of 0 or more")
        self.clock = clock
        self.size = size
        self.max_ttl = max_ttl
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._pending: dict[CacheKey, list[Deferred[Answer]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> Answer | None:
        """
        The cached answer to C{key} with the TTLs that remain, or C{None}.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self.clock.seconds()
        if now >= entry.expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        elapsed = int(now - entry.stored)
        kept = entry.answer
        limit = int(entry.expires - entry.stored)

        def served(rrsets: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
            return [_copy(r, max(0, min(r.ttl, limit) - elapsed)) for r in rrsets]

        return Answer(
            kept.rcode,
            served(kept.answer),
            served(kept.authority),
            served(kept.additional),
            kept.authenticated,
        )

    def put(self, key: CacheKey, answer: Answer) -> bool:
        """
        Keep C{answer} for as long as its TTLs allow.

        @return: whether it was kept.
        """
        ttl = lifetime(answer, self.max_ttl, key[1])
        if ttl is None or ttl <= 0:
            return False
        now = self.clock.seconds()
        self._entries[key] = _Entry(answer, now, now + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return True

    def resolve(self, key: CacheKey, fetch: Callable[[], Deferred[Answer]]) -> Deferred[Answer]:
        """
        The answer to C{key}: from the cache, else from the one running
        C{fetch} for it, else from a new call of C{fetch}, whose answer is
        cached.
        """
        cached = self.get(key)
        if cached is not None:
            return succeed(cached)
        waiting: Deferred[Answer] = Deferred()
        if key in self._pending:
            self._pending[key].append(waiting)
            return waiting
        self._pending[key] = [waiting]

        def done(answer: Answer) -> None:
            self.put(key, answer)
            for each in self._pending.pop(key, []):
                each.callback(answer.copy())

        def failed(failure: Failure) -> None:
            for each in self._pending.pop(key, []):
                each.errback(failure)

        try:
            fetching = fetch()
        except Exception:
            failed(Failure())
        else:
            fetching.addCallbacks(done, failed)
        return waiting
