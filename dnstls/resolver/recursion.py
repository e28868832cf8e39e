# -*- test-case-name: tests.test_handler -*-
"""
The resolver's front door: what the handler (L{dnstls.handler}) asks for
names outside our zones, through L{Recursion}: who may recurse, and the
answer cache in front of a L{Source} of answers, the forwarder
(L{dnstls.resolver.forward}) or the iterator (L{dnstls.resolver.iterate}).

A source that finds no answer fails with L{ForwardError}, which the handler
turns into SERVFAIL with its Extended DNS Error.  Nothing here reaches the
network, so the answer core does not pull in the upstream clients.
"""

from __future__ import annotations

from typing import Protocol as Interface

import dns.edns
import dns.name
from twisted.internet.defer import Deferred

from dnstls.acl import AccessList
from dnstls.resolver.cache import Answer, Cache, cache_key


class ForwardError(Exception):
    """
    No upstream gave an answer.

    @ivar ede: the Extended DNS Error code (RFC 8914) that says why: 22 (No
        Reachable Authority) when every upstream was silent, else 23
        (Network Error).
    """

    def __init__(self, reason: str, ede: dns.edns.EDECode) -> None:
        super().__init__(reason)
        self.ede = ede


class Source(Interface):
    """
    Where answers for names outside our zones come from: a
    L{dnstls.resolver.forward.Forwarder}, or the iterative resolver
    (L{dnstls.resolver.iterate.Iterator}).
    """

    def query(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
    ) -> Deferred[Answer]:
        """
        The answer to one question.

        @return: fires with the L{Answer}, or fails with L{ForwardError}.
        """

    def close(self) -> None:
        """
        Close every upstream connection (at shutdown).
        """


class Recursion:
    """
    What the handler asks for names outside our zones: who may, and the
    cache in front of the source of answers.

    @ivar source: the forwarder or iterator asked on a cache miss.
    """

    def __init__(self, acl: AccessList, cache: Cache, source: Source) -> None:
        self.acl = acl
        self.cache = cache
        self.source = source

    def allows(self, host: str) -> bool:
        """
        Whether the client at C{host} may recurse.
        """
        return self.acl.allows(host)

    def resolve(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
    ) -> Deferred[Answer]:
        """
        The answer to a question, from the cache or the upstreams; CD is
        passed on, so a validating client can see data its resolver would
        reject.
        """
        key = cache_key(qname, qtype, qclass, do, cd)
        return self.cache.resolve(
            key, lambda: self.source.query(key[0], qtype, qclass, do, cd)
        )

    def cached(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
    ) -> Answer | None:
        """
        The answer to a question if the cache holds it, without asking
        upstream: what a query with RD=0 gets.
        """
        return self.cache.get(cache_key(qname, qtype, qclass, do, cd))

    def close(self) -> None:
        """
        Close the source's upstream connections (at shutdown).
        """
        self.source.close()
