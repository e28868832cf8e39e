# -*- test-case-name: tests.resolver.test_iterate -*-
"""
Iterative resolution from the root hints (RFC 1034 5.3.3), used for names
outside our zones when no forwarder is configured: the resolver's front,
L{Iterator}, which holds its configuration and state and gives each client
question its budget.

L{Iterator.query} has the signature of L{dnstls.resolver.forward.Forwarder.query}, so
L{dnstls.resolver.recursion.Recursion} and its L{dnstls.resolver.cache.Cache} sit in front of
either.  For each question it starts at the closest enclosing zone cut it
knows (its L{InfraCache} of NS sets and addresses, else the root hints),
follows referrals, uses in-bailiwick glue, resolves the names of glueless
name servers (IPv4 only unless C{ipv6=True}), and follows CNAME and DNAME
chains across zones, returning the whole chain in the answer section as
Unbound does.  The parts:

  - L{dnstls.resolver.question}: one question's lookups, with QNAME
    minimisation (RFC 9156, on by default) and its work bounds;
  - L{dnstls.resolver.selection}: which server address is asked (by
    smoothed RTT, no down or local addresses);
  - L{dnstls.resolver.classify}: what a reply says (answer, referral,
    NXDOMAIN, NODATA, lame) and how CNAME and DNAME chains run;
  - L{dnstls.resolver.delegation}: zone cuts, and what replies teach of
    them (in-bailiwick data only);
  - L{dnstls.resolver.priming}: the root's servers asked of a root server
    (RFC 8109) before the first question;
  - L{dnstls.resolver.nsquery}: one query to one server address (UDP from a
    new socket with a random source port and ID, RD=0, EDNS with the
    client's DO, replies matched to the question, TCP on TC=1, EDNS
    fallback, identical queries in flight sent once).

A server that is silent for C{timeout} seconds, answers an error RCODE, or
is lame is left for the next address.

The work one client question may cause is bounded (NXNSAttack): upstream
queries (C{max_queries}), referrals per name (C{max_referrals}), glueless
name-server names resolved per delegation (C{max_ns_per_zone}) and in all
(C{max_ns_lookups}), nesting of such lookups
(L{dnstls.resolver.question.MAX_NESTING}) and CNAME or DNAME steps
(C{max_chain}), and no query is sent once the question has run
C{max_time} seconds.

Failures are L{ForwardError}s with an Extended DNS Error (RFC 8914): 22 (No
Reachable Authority) when the servers were silent, refused, failed or were
lame; 23 (Network Error) when every attempt failed at the network (ICMP port
unreachable, a TCP connection refused); 0 (Other Error) when a work bound
was hit or the CNAME chain loops; 21 (Not Supported) for a class other than
IN.

DO is passed on and nothing is validated (AD is never set); CD is passed on.
"""

from __future__ import annotations

import random
from typing import Any

import dns.edns
import dns.name
import dns.rdataclass
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from dnstls.resolver.cache import Answer
from dnstls.resolver.delegation import Delegations
from dnstls.resolver.infracache import InfraCache
from dnstls.resolver.nsquery import NameServerQueries
from dnstls.resolver.priming import Priming
from dnstls.resolver.question import Budget, Deadline, Limit, Question, Unreachable
from dnstls.resolver.recursion import ForwardError
from dnstls.resolver.roothints import RootHints
from dnstls.resolver.selection import Selection

#: Seconds to wait for one server address before trying the next.
DEFAULT_TIMEOUT = 1.5
#: Upstream queries one client question may cause.
MAX_QUERIES = 40
#: Referrals followed while looking up one name.
MAX_REFERRALS = 16
#: CNAME and DNAME steps followed for one client question.
MAX_CHAIN = 8
#: Glueless name-server names resolved for one delegation (Unbound's
#: target-fetch-policy at depth 0).
MAX_NS_PER_ZONE = 3
#: Glueless name-server names resolved for one client question.
MAX_NS_LOOKUPS = 6
#: Seconds one client question may take, or four server timeouts if that
#: is longer: no query is sent after that (the client has long given up,
#: dig waits 5 s a try, and a question held open holds an upstream socket).
MAX_TIME = 10.0

_NO_AUTHORITY = dns.edns.EDECode.NO_REACHABLE_AUTHORITY
_NETWORK = dns.edns.EDECode.NETWORK_ERROR
_OTHER = dns.edns.EDECode.OTHER


class Iterator:
    """
    Resolves questions by asking authoritative servers, from the root down.

    @ivar hints: where to start when nothing better is known.
    @ivar infra: the NS sets, addresses and server state learnt.
    @ivar timeout: seconds to wait for one server address.
    @ivar minimise: whether to send minimised names (RFC 9156).
    @ivar port: the port the servers listen on (53 but in tests).
    @ivar servers: what sends the queries to server addresses.
    @ivar delegations: the zone cuts known.
    @ivar selection: what picks the server address to ask.
    @ivar priming: what learns the root's servers.
    @ivar closed: whether L{close} was called: nothing more is sent.
    """

    log = Logger()

    def __init__(
        self,
        hints: RootHints,
        reactor: Any,
        timeout: float = DEFAULT_TIMEOUT,
        minimise: bool = True,
        port: int = 53,
        *,
        max_queries: int = MAX_QUERIES,
        max_referrals: int = MAX_REFERRALS,
        max_chain: int = MAX_CHAIN,
        max_ns_per_zone: int = MAX_NS_PER_ZONE,
        max_ns_lookups: int = MAX_NS_LOOKUPS,
        max_time: float | None = None,
        ipv6: bool = False,
        query_loopback: bool = False,
        infra: InfraCache | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """
        @param ipv6: also use the servers' IPv6 addresses (and ask AAAA for
            glueless ones); off by default, for hosts without an IPv6 route.
        @param query_loopback: also ask name servers at loopback addresses
            learnt from replies (see
            L{dnstls.resolver.selection.local_address}); off by default.
        @param rng: what picks among equally fast servers (tests pass a
            deterministic one).
        """
        self.hints = hints
        self.reactor = reactor
        self.timeout = timeout
        self.minimise = minimise
        self.port = port
        self.max_queries = max_queries
        self.max_referrals = max_referrals
        self.max_chain = max_chain
        self.max_ns_per_zone = max_ns_per_zone
        self.max_ns_lookups = max_ns_lookups
        self.max_time = max_time if max_time is not None else max(MAX_TIME, 4 * timeout)
        self.ipv6 = ipv6
        self.query_loopback = query_loopback
        self.infra = infra if infra is not None else InfraCache(reactor)
        self.rng = rng if rng is not None else random.SystemRandom()
        self.servers = NameServerQueries(reactor, self.infra, timeout, port)
        self.delegations = Delegations(self.infra, hints, ipv6)
        self.selection = Selection(self.delegations, self.infra, ipv6, query_loopback, self.rng)
        self.priming = Priming(self)
        self.closed = False

    def query(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
    ) -> Deferred[Answer]:
        """
        The answer to a question, found by iteration.

        @return: fires with the L{Answer}, or fails with L{ForwardError}.
        """
        return Deferred.fromCoroutine(self._query(qname, qtype, qclass, do, cd))

    def close(self) -> None:
        """
        Stop every query in flight; later queries fail.
        """
        self.closed = True
        self.servers.close()

    async def _query(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool
    ) -> Answer:
        if qclass != dns.rdataclass.IN:
            raise ForwardError(f"cannot iterate for class {qclass}", dns.edns.EDECode.NOT_SUPPORTED)
        await self.priming.prime()
        budget = Budget(
            self.max_queries, self.max_ns_lookups, self.reactor,
            self.reactor.seconds() + self.max_time,
        )
        try:
            return await Question(self, budget).resolve(qname, qtype, do, cd)
        except Deadline:
            self.log.info("resolving {qname}: gave up after {seconds} s", qname=qname,
                          seconds=self.max_time)
            raise ForwardError(f"{qname}: no answer within {self.max_time} s", _NO_AUTHORITY) from None
        except Limit as e:
            self.log.info("resolving {qname}: {limit}", qname=qname, limit=e)
            raise ForwardError(f"{qname}: {e}", _OTHER) from None
        except Unreachable as e:
            network = budget.failures == {"network"} and not self.closed
            code = _NETWORK if network else _NO_AUTHORITY
            raise ForwardError(f"{qname}: {e}", code) from None
