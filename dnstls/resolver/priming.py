# -*- test-case-name: tests.resolver.test_iterate -*-
"""
Priming (RFC 8109), for the iterative resolver (L{dnstls.resolver.iterate}):
learning the root's servers from a root server rather than trusting the
hints file's list for ever.

Nothing is sent until a client asks.  Before the first question is
iterated, one root server from the hints is asked C{. NS} (RD=0, EDNS; the
next hint on silence or an error, at most L{PRIME_QUERIES} queries), and
the root's NS set (rank authoritative answer) and the addresses of its
servers in the additional section (rank additional) are used instead of
the hints until they expire; then the next question primes again.
Concurrent questions wait for one priming.  When priming fails the hints
are used, and priming is not tried again for L{PRIME_RETRY} seconds.
"""

from __future__ import annotations

import dns.name
import dns.rdatatype
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from dnstls.resolver.classify import Kind
from dnstls.resolver.infracache import Rank
from dnstls.resolver.question import MAX_NESTING, Budget, Limit, Question, Resolving, Unreachable

#: Seconds between priming attempts (RFC 8109): after one fails, the root
#: hints are used until this has passed.
PRIME_RETRY = 60.0
#: Queries one priming attempt may send (each to another root server).
PRIME_QUERIES = 3


class Priming:
    """
    When the resolver primes, and the priming itself.
    """

    log = Logger()

    def __init__(self, resolver: Resolving) -> None:
        self.resolver = resolver
        #: no priming before this time (on the infrastructure cache's clock)
        self._after = float("-inf")
        #: the questions waiting for the priming in flight, if one is
        self._waiting: list[Deferred[None]] | None = None

    def primed(self) -> bool:
        """
        Whether the cache holds the root's NS set and an address for one
        of its servers.
        """
        ns = self.resolver.infra.get(dns.name.root, dns.rdatatype.NS)
        known = self.resolver.delegations.known_addresses
        return ns is not None and any(known(r.target) for r in ns)

    async def prime(self) -> None:
        """
        Learn the root's NS set from a root server named by the hints,
        unless it is known or priming was tried in the last L{PRIME_RETRY}
        seconds; wait for a priming already in flight.  Never fails: on
        failure the hints are used.
        """
        clock = self.resolver.infra.clock
        if self.resolver.closed or self.primed() or clock.seconds() < self._after:
            return
        if self._waiting is not None:
            waiting: Deferred[None] = Deferred()
            self._waiting.append(waiting)
            await waiting
            return
        self._waiting = []
        try:
            primed = await self._send()
        finally:
            self._after = clock.seconds() + PRIME_RETRY
            waiters, self._waiting = self._waiting, None
            for each in waiters:
                each.callback(None)
        if not primed:
            self.log.info(
                "priming failed; using the root hints, and priming again in {after:g} s",
                after=PRIME_RETRY,
            )

    async def _send(self) -> bool:
        """
        Ask the hints' root servers C{. NS}; keep the NS set and the
        addresses of its servers from the additional section.

        @return: whether that gave the root's servers with an address.
        """
        delegations = self.resolver.delegations
        budget = Budget(PRIME_QUERIES, 0, self.resolver.reactor, float("inf"))
        try:
            reply, kind = await Question(self.resolver, budget).ask(
                delegations.hinted(), dns.name.root, dns.rdatatype.NS, False, False, MAX_NESTING
            )
        except (Limit, Unreachable) as e:
            self.log.info("priming: {error}", error=e)
            return False
        ns = next(
            (r for r in reply.answer if r.name == dns.name.root and r.rdtype == dns.rdatatype.NS),
            None,
        )
        if kind != Kind.ANSWER or ns is None:
            self.log.info("priming: the reply has no NS set for the root")
            return False
        names = {r.target for r in ns}
        glue = [
            r for r in reply.additional
            if r.rdtype in delegations.address_types and r.name in names
        ]
        if not glue:
            self.log.info("priming: the reply has no address for the root's servers")
            return False
        # everything is in the root's bailiwick
        infra = self.resolver.infra
        infra.put(ns, Rank.AUTHORITATIVE)
        for rrset in glue:
            infra.put(rrset, Rank.ADDITIONAL)
        self.log.info(
            "primed: {count} root servers, for {ttl} s", count=len(names), ttl=ns.ttl
        )
        return True
