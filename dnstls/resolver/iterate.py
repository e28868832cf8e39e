# -*- test-case-name: tests.resolver.test_iterate -*-
"""
Iterative resolution from the root hints (RFC 1034 5.3.3), used for names
outside our zones when no forwarder is configured.

L{Iterator.query} has the signature of L{dnstls.resolver.forward.Forwarder.query}, so
L{dnstls.resolver.recursion.Recursion} and its L{dnstls.resolver.cache.Cache} sit in front of
either.  For each question it starts at the closest enclosing zone cut it
knows (its L{InfraCache} of NS sets and addresses, else the root hints),
follows referrals, uses in-bailiwick glue, resolves the names of glueless
name servers (IPv4 only unless C{ipv6=True}), and follows CNAME and DNAME
chains across zones, returning the whole chain in the answer section as
Unbound does.

Each query goes to one server address (L{dnstls.resolver.nsquery}: UDP from a new
socket with a random source port and ID, RD=0, EDNS with the client's DO,
replies matched to the question, TCP on TC=1, EDNS fallback, identical
queries in flight sent once).  A server that is silent for C{timeout}
seconds, answers an error RCODE, or is lame (an upward or sideways
referral, or a non-authoritative answer) is left for the next address; the
addresses are tried by smoothed RTT, a random one among those within
L{RTT_BAND} of the fastest, so that unknown ones get their turn.

Name servers at loopback, unspecified, multicast or broadcast addresses
learnt from replies (glue, a glueless server's address, priming) are not
asked unless C{query_loopback} is set (Unbound's do-not-query-localhost): a
delegation to 127.0.0.1 would turn the resolver against this host's own
services.  The root hints are the operator's word and always used.

Only in-bailiwick data is believed: a referral's NS set must be below the
zone of the server that sent it and its glue must lie inside that zone
(glue the cache will not keep, such as TTL 0, still serves that referral);
answer and authority records outside the zone asked are dropped, and of an
authoritative answer only the records on the chain asked about (the name,
and the CNAME and DNAME targets from it) are learnt as server addresses or
NS sets.  A name server's name found to have no address (NXDOMAIN or
NODATA) is remembered for its negative TTL and not looked up again.

QNAME minimisation (RFC 9156) is on by default: each zone's servers are
asked for the name one label below their zone (QTYPE A) until the full
name is reached, one label at a time for L{MINIMISE_ONE_LAB} queries and
then in larger steps, so that at most L{MAX_MINIMISE_COUNT} minimised
queries are sent for one name.  NXDOMAIN to a minimised query makes the
zone's servers be asked the full name (servers wrongly answer NXDOMAIN for
empty non-terminals, and without validation RFC 8020 cannot be trusted:
Unbound's non-strict minimisation); any other answer goes one label deeper
at the same servers; if all of a zone's servers fail a minimised query, the
full name is asked instead.

The work one client question may cause is bounded (NXNSAttack): upstream
queries (C{max_queries}), referrals per name (C{max_referrals}), glueless
name-server names resolved per delegation (C{max_ns_per_zone}) and in all
(C{max_ns_lookups}), nesting of such lookups (L{MAX_NESTING}) and CNAME or
DNAME steps (C{max_chain}), and no query is sent once the question has run
C{max_time} seconds.  A server address silent twice in a row is not asked
for a while (L{dnstls.resolver.infracache.DOWN_FOR}) but by one probe, so that
delegations to dead addresses do not hold upstream sockets for their
timeouts question after question.

Failures are L{ForwardError}s with an Extended DNS Error (RFC 8914): 22 (No
Reachable Authority) when the servers were silent, refused, failed or were
lame; 23 (Network Error) when every attempt failed at the network (ICMP port
unreachable, a TCP connection refused); 0 (Other Error) when a work bound
was hit or the CNAME chain loops; 21 (Not Supported) for a class other than
IN.

Priming (RFC 8109): nothing is sent until a client asks.  Before the first
question is iterated, one root server from the hints is asked C{. NS}
(RD=0, EDNS; the next hint on silence or an error, at most
L{PRIME_QUERIES} queries), and the root's NS set (rank authoritative
answer) and the addresses of its servers in the additional section (rank
additional) are used instead of the hints until they expire; then the
next question primes again.  Concurrent questions wait for one priming.
When priming fails the hints are used, and priming is not tried again for
L{PRIME_RETRY} seconds.

DO is passed on and nothing is validated (AD is never set); CD is passed on.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from dnstls.resolver.cache import Answer
from dnstls.resolver.exchange import Timeout
from dnstls.resolver.infracache import InfraCache, Rank
from dnstls.resolver.nsquery import NameServerQueries
from dnstls.resolver.recursion import ForwardError
from dnstls.resolver.roothints import RootHints

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
#: Glueless lookups inside glueless lookups.
MAX_NESTING = 3
#: Seconds one client question may take, or four server timeouts if that
#: is longer: no query is sent after that (the client has long given up,
#: dig waits 5 s a try, and a question held open holds an upstream socket).
MAX_TIME = 10.0
#: RFC 9156 2.3: the most minimised queries for one name...
MAX_MINIMISE_COUNT = 10
#: ...of which the first this many add one label each.
MINIMISE_ONE_LAB = 4
#: Seconds between priming attempts (RFC 8109): after one fails, the root
#: hints are used until this has passed.
PRIME_RETRY = 60.0
#: Queries one priming attempt may send (each to another root server).
PRIME_QUERIES = 3
#: Servers whose RTT is within this many seconds of the fastest are equally
#: good; one of them is picked at random.
RTT_BAND = 0.4

_NO_AUTHORITY = dns.edns.EDECode.NO_REACHABLE_AUTHORITY
_NETWORK = dns.edns.EDECode.NETWORK_ERROR
_OTHER = dns.edns.EDECode.OTHER
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
_NEGATIVE_PROOF = (dns.rdatatype.SOA, dns.rdatatype.NSEC, dns.rdatatype.NSEC3)


class _Limit(Exception):
    """
    A work bound was hit.
    """


class _Deadline(_Limit):
    """
    The question has taken longer than the resolver gives one.
    """


class _Unreachable(Exception):
    """
    No server of a zone gave a usable reply.

    @ivar answered: whether some server replied (with an error RCODE or a
        lame reply) rather than being silent or unreachable.
    """

    def __init__(self, reason: str, answered: bool = False) -> None:
        super().__init__(reason)
        self.answered = answered


class _Kind:
    ANSWER = "answer"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    REFERRAL = "referral"


@dataclass
class _Budget:
    """
    The work one client question has done, and how its attempts failed.
    """

    max_queries: int
    max_ns_lookups: int
    #: what tells the time, and when the question must be given up
    clock: Any
    deadline: float
    queries: int = 0
    ns_lookups: int = 0
    chain: int = 0
    #: how attempts failed: "silent", "network", "refused" (error RCODE or lame)
    failures: set[str] = field(default_factory=set)
    #: (name, type) being resolved for a name server's address, against loops
    resolving: set[tuple[dns.name.Name, int]] = field(default_factory=set)

    def spend(self) -> None:
        if self.queries >= self.max_queries:
            raise _Limit(f"more than {self.max_queries} upstream queries")
        if self.clock.seconds() >= self.deadline:
            raise _Deadline("out of time")
        self.queries += 1


@dataclass(frozen=True)
class _Delegation:
    """
    A zone and the names of its servers (sorted, so the order is stable),
    with the in-bailiwick glue of the referral that named them and the
    addresses found for glueless ones (none, when the lookup failed), used
    for a name the cache has no address for (the cache refuses TTL 0) for
    as long as the lookup goes on at this zone.
    """

    zone: dns.name.Name
    names: tuple[dns.name.Name, ...]
    glue: dict[dns.name.Name, list[str]] = field(default_factory=dict, compare=False)


@dataclass
class _Reply:
    """
    An authoritative server's final word on one name: its zone, RCODE and
    the in-bailiwick answer and authority RRsets.
    """

    zone: dns.name.Name
    rcode: int
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]


def classify(
    reply: dns.message.Message,
    zone: dns.name.Name,
    qname: dns.name.Name,
    qtype: int = dns.rdatatype.A,
) -> str | None:
    """
    What a server of C{zone} said about C{qname} C{qtype}: an answer (or
    YXDOMAIN with the DNAME that overflows C{qname}), NXDOMAIN, NODATA, a
    referral to a zone below C{zone} (with AA or
    without, as long as it has no SOA), or C{None} for a lame reply (an
    upward or sideways referral, an answer without AA, or a referral to
    C{qname} itself for DS, which the parent must answer: RFC 4035 3.1.4.1).
    """
    authoritative = bool(reply.flags & dns.flags.AA)
    rcode = reply.rcode()
    if rcode == dns.rcode.YXDOMAIN:
        # RFC 6672 2.2: a DNAME whose substitution overflows the name
        return _Kind.ANSWER if authoritative and overflows(reply, qname) else None
    if rcode == dns.rcode.NOERROR and reply.answer:
        relevant = any(
            r.name == qname or (r.rdtype == dns.rdatatype.DNAME and qname.is_subdomain(r.name))
            for r in reply.answer
        )
        return _Kind.ANSWER if relevant and authoritative else None
    cuts = [r for r in reply.authority if r.rdtype == dns.rdatatype.NS]
    # a referral, even with AA set by mistake (a NODATA would carry an SOA)
    if rcode == dns.rcode.NOERROR and cuts and not (authoritative and _has_soa(reply.authority)):
        child = cuts[0].name
        if qtype == dns.rdatatype.DS and child == qname:
            return None
        if child != zone and child.is_subdomain(zone) and qname.is_subdomain(child):
            return _Kind.REFERRAL
        if not authoritative or child != zone:
            # an upward or sideways referral is lame, AA set or not
            return None
    if not authoritative:
        return None
    return _Kind.NXDOMAIN if rcode == dns.rcode.NXDOMAIN else _Kind.NODATA


def overflows(reply: dns.message.Message, qname: dns.name.Name) -> bool:
    """
    Whether C{reply} is the YXDOMAIN of RFC 6672 2.2: a DNAME on the chain
    from C{qname} whose substitution makes a name too long.
    """
    if reply.rcode() != dns.rcode.YXDOMAIN:
        return False
    chain = _chain_names(reply.answer, qname)
    return any(
        r.rdtype == dns.rdatatype.DNAME and name != r.name and name.is_subdomain(r.name)
        for r in reply.answer
        for name in chain
    )


def minimised(
    qname: dns.name.Name, known: dns.name.Name, count: int
) -> dns.name.Name:
    """
    The name to ask next below C{known} (a zone cut or a name that exists)
    on the way to C{qname}, after C{count} minimised queries (RFC 9156 2.3):
    one label more for the first L{MINIMISE_ONE_LAB}, then enough labels at
    a time to reach C{qname} within L{MAX_MINIMISE_COUNT} queries.
    """
    remaining = len(qname) - len(known)
    if remaining <= 1 or count >= MAX_MINIMISE_COUNT:
        return qname
    step = 1 if count < MINIMISE_ONE_LAB else max(1, remaining // (MAX_MINIMISE_COUNT - count))
    return qname.split(min(len(qname), len(known) + step))[1]


class Iterator:
    """
    Resolves questions by asking authoritative servers, from the root down.

    @ivar hints: where to start when nothing better is known.
    @ivar infra: the NS sets, addresses and server state learnt.
    @ivar timeout: seconds to wait for one server address.
    @ivar minimise: whether to send minimised names (RFC 9156).
    @ivar port: the port the servers listen on (53 but in tests).
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
            learnt from replies (see L{local_address}); off by default.
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
        self._address_types = _ADDRESS_TYPES if ipv6 else (dns.rdatatype.A,)
        self.servers = NameServerQueries(reactor, self.infra, timeout, port)
        self._closed = False
        #: no priming before this time (on the infrastructure cache's clock)
        self._prime_after = float("-inf")
        #: the questions waiting for the priming in flight, if one is
        self._priming: list[Deferred[None]] | None = None

    # -- the public surface ------------------------------------------------

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
        self._closed = True
        self.servers.close()

    # -- one client question ---------------------------------------------

    async def _query(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool
    ) -> Answer:
        if qclass != dns.rdataclass.IN:
            raise ForwardError(f"cannot iterate for class {qclass}", dns.edns.EDECode.NOT_SUPPORTED)
        await self._prime()
        budget = _Budget(
            self.max_queries, self.max_ns_lookups, self.reactor,
            self.reactor.seconds() + self.max_time,
        )
        try:
            return await self._resolve(qname, qtype, do, cd, budget, 0)
        except _Deadline:
            self.log.info("resolving {qname}: gave up after {seconds} s", qname=qname,
                          seconds=self.max_time)
            raise ForwardError(f"{qname}: no answer within {self.max_time} s", _NO_AUTHORITY) from None
        except _Limit as e:
            self.log.info("resolving {qname}: {limit}", qname=qname, limit=e)
            raise ForwardError(f"{qname}: {e}", _OTHER) from None
        except _Unreachable as e:
            network = budget.failures == {"network"} and not self._closed
            code = _NETWORK if network else _NO_AUTHORITY
            raise ForwardError(f"{qname}: {e}", code) from None

    async def _resolve(
        self,
        qname: dns.name.Name,
        qtype: int,
        do: bool,
        cd: bool,
        budget: _Budget,
        nesting: int,
    ) -> Answer:
        """
        Look C{qname} up, following CNAME and DNAME chains across zones.
        """
        chain: list[dns.rrset.RRset] = []
        current = qname
        seen = {qname}
        while True:
            reply = await self._lookup(current, qtype, do, cd, budget, nesting)
            start = current
            while True:
                found = [
                    r for r in reply.answer
                    if r.name == current and (
                        r.rdtype == qtype
                        or (qtype == dns.rdatatype.ANY and r.rdtype != dns.rdatatype.RRSIG)
                    )
                ]
                if found:
                    if qtype in (dns.rdatatype.CNAME, dns.rdatatype.ANY):
                        # a CNAME the server made from a DNAME comes with it
                        found = [
                            r for r in reply.answer
                            if r.rdtype == dns.rdatatype.DNAME
                            and current != r.name and current.is_subdomain(r.name)
                        ][:1] + found
                    return Answer(
                        dns.rcode.NOERROR, chain + found + _signatures(reply.answer, found, do), [], []
                    )
                step = _next_in_chain(reply.answer, current, qtype)
                if step is None:
                    break
                links, target = step
                chain += links + _signatures(reply.answer, links, do)
                if target is _TOO_LONG:
                    # RFC 6672 2.2: the substitution overflows the name
                    return Answer(dns.rcode.YXDOMAIN, chain, [], [])
                budget.chain += 1
                if budget.chain > self.max_chain:
                    raise _Limit(f"a CNAME/DNAME chain longer than {self.max_chain}")
                if target in seen:
                    raise _Limit(f"a CNAME/DNAME loop at {target}")
                seen.add(target)
                current = target
            # a negative answer for the name asked, or for the end of a chain
            # the server followed inside its zone; else ask where it leads
            if current == start or (
                current.is_subdomain(reply.zone) and _has_soa(reply.authority)
            ):
                return Answer(
                    dns.rcode.Rcode.make(reply.rcode), chain, _negative(reply.authority, do), []
                )

    async def _lookup(
        self,
        name: dns.name.Name,
        qtype: int,
        do: bool,
        cd: bool,
        budget: _Budget,
        nesting: int,
    ) -> _Reply:
        """
        The authoritative reply for C{name} and C{qtype}: down from the
        closest known zone cut, one referral after the other.
        """
        # DS lives on the parent side of a cut
        above = name.parent() if qtype == dns.rdatatype.DS and name != dns.name.root else name
        delegation = self._closest(above)
        minimise = self.minimise
        known = delegation.zone
        count = 0
        referrals = 0
        while True:
            ask = minimised(name, known, count) if minimise else name
            ask_type = qtype if ask == name else dns.rdatatype.A
            try:
                reply, kind = await self._ask(delegation, ask, ask_type, do, cd, budget, nesting)
            except _Unreachable as e:
                # a zone whose servers mishandle minimised names is asked
                # the full name; one whose servers are silent is not again
                if ask == name or not e.answered:
                    raise
                self.log.info(
                    "{zone} failed the minimised {ask}; asking {name}",
                    zone=delegation.zone, ask=ask, name=name,
                )
                minimise = False
                continue
            if kind == _Kind.REFERRAL:
                referrals += 1
                if referrals > self.max_referrals:
                    raise _Limit(f"more than {self.max_referrals} referrals")
                delegation = self._referred(reply, delegation.zone)
                known = delegation.zone
                continue
            self._learn(reply, delegation.zone, ask)
            if ask != name:
                if kind == _Kind.NXDOMAIN and not reply.answer:
                    # RFC 8020 says nothing exists below it, but servers
                    # answer NXDOMAIN for empty non-terminals too: without
                    # DNSSEC to prove it, the full name is asked (Unbound's
                    # non-strict minimisation)
                    self.log.debug(
                        "{zone} said NXDOMAIN for the minimised {ask}; asking {name}",
                        zone=delegation.zone, ask=ask, name=name,
                    )
                    minimise = False
                    continue
                known = ask
                count += 1
                continue
            return _Reply(
                delegation.zone,
                reply.rcode(),
                _inside(reply.answer, delegation.zone),
                _inside(reply.authority, delegation.zone),
            )

    # -- priming (RFC 8109) -------------------------------------------------

    def _primed(self) -> bool:
        """
        Whether the cache holds the root's NS set and an address for one
        of its servers.
        """
        ns = self.infra.get(dns.name.root, dns.rdatatype.NS)
        return ns is not None and any(self._known_addresses(r.target) for r in ns)

    async def _prime(self) -> None:
        """
        Learn the root's NS set from a root server named by the hints,
        unless it is known or priming was tried in the last L{PRIME_RETRY}
        seconds; wait for a priming already in flight.  Never fails: on
        failure the hints are used.
        """
        if self._closed or self._primed() or self.infra.clock.seconds() < self._prime_after:
            return
        if self._priming is not None:
            waiting: Deferred[None] = Deferred()
            self._priming.append(waiting)
            await waiting
            return
        self._priming = []
        try:
            primed = await self._send_priming()
        finally:
            self._prime_after = self.infra.clock.seconds() + PRIME_RETRY
            waiters, self._priming = self._priming, None
            for each in waiters:
                each.callback(None)
        if not primed:
            self.log.info(
                "priming failed; using the root hints, and priming again in {after:g} s",
                after=PRIME_RETRY,
            )

    async def _send_priming(self) -> bool:
        """
        Ask the hints' root servers C{. NS}; keep the NS set and the
        addresses of its servers from the additional section.

        @return: whether that gave the root's servers with an address.
        """
        hints = _Delegation(dns.name.root, tuple(sorted(self.hints.names)))
        budget = _Budget(PRIME_QUERIES, 0, self.reactor, float("inf"))
        try:
            reply, kind = await self._ask(
                hints, dns.name.root, dns.rdatatype.NS, False, False, budget, MAX_NESTING
            )
        except (_Limit, _Unreachable) as e:
            self.log.info("priming: {error}", error=e)
            return False
        ns = next(
            (r for r in reply.answer if r.name == dns.name.root and r.rdtype == dns.rdatatype.NS),
            None,
        )
        if kind != _Kind.ANSWER or ns is None:
            self.log.info("priming: the reply has no NS set for the root")
            return False
        names = {r.target for r in ns}
        glue = [
            r for r in reply.additional if r.rdtype in self._address_types and r.name in names
        ]
        if not glue:
            self.log.info("priming: the reply has no address for the root's servers")
            return False
        # everything is in the root's bailiwick
        self.infra.put(ns, Rank.AUTHORITATIVE)
        for rrset in glue:
            self.infra.put(rrset, Rank.ADDITIONAL)
        self.log.info(
            "primed: {count} root servers, for {ttl} s", count=len(names), ttl=ns.ttl
        )
        return True

    # -- delegations ------------------------------------------------------

    def _closest(self, name: dns.name.Name) -> _Delegation:
        """
        The deepest zone cut at or above C{name} whose servers we can
        reach, else the root from the hints.
        """
        while name != dns.name.root:
            ns = self.infra.get(name, dns.rdatatype.NS)
            if ns is not None:
                names = tuple(sorted({r.target for r in ns}))
                if any(self._known_addresses(n) or not n.is_subdomain(name) for n in names):
                    return _Delegation(name, names)
            name = name.parent()
        ns = self.infra.get(dns.name.root, dns.rdatatype.NS)
        names = tuple(sorted({r.target for r in ns})) if ns is not None else ()
        if not any(self._known_addresses(n) for n in names):
            names = tuple(sorted(self.hints.names))
        return _Delegation(dns.name.root, names)

    def _referred(self, reply: dns.message.Message, zone: dns.name.Name) -> _Delegation:
        """
        Learn the NS set and in-bailiwick glue of a referral from a server
        of C{zone}; anything else in it is dropped.
        """
        ns = next(r for r in reply.authority if r.rdtype == dns.rdatatype.NS)
        self.infra.put(ns, Rank.AUTHORITY)
        names = {r.target for r in ns}
        glue: dict[dns.name.Name, list[str]] = {}
        for rrset in reply.additional:
            if rrset.rdtype not in self._address_types:
                continue
            if rrset.name in names and rrset.name.is_subdomain(zone):
                self.infra.put(rrset, Rank.ADDITIONAL)
                glue.setdefault(rrset.name, []).extend(r.address for r in rrset)
            else:
                self.log.debug(
                    "ignoring out-of-bailiwick {name} from a server of {zone}",
                    name=rrset.name, zone=zone,
                )
        return _Delegation(ns.name, tuple(sorted(names)), glue)

    def _learn(
        self, reply: dns.message.Message, zone: dns.name.Name, qname: dns.name.Name
    ) -> None:
        """
        Keep the addresses and NS sets in an authoritative reply from a
        server of C{zone} to a question for C{qname}: those inside the
        zone, on the chain from C{qname} only (anything else in the answer
        section is what a spoofed reply would slip in).
        """
        answer = _inside(reply.answer, zone)
        chain = _chain_names(answer, qname)
        for rrset in answer:
            if rrset.name not in chain:
                if rrset.rdtype != dns.rdatatype.RRSIG:
                    self.log.debug(
                        "ignoring {name}, not asked about, from a server of {zone}",
                        name=rrset.name, zone=zone,
                    )
                continue
            if rrset.rdtype in _ADDRESS_TYPES or rrset.rdtype == dns.rdatatype.NS:
                self.infra.put(rrset, Rank.AUTHORITATIVE)

    def _glue(self, delegation: _Delegation, name: dns.name.Name) -> list[str]:
        """
        The addresses the referral to C{delegation} gave for C{name}, of
        the types we use.
        """
        return [a for a in delegation.glue.get(name, []) if self.ipv6 or ":" not in a]

    def _no_address(self, name: dns.name.Name) -> bool:
        """
        Whether C{name} was lately found to have none of the address types
        we use.
        """
        return all(self.infra.missing(name, rdtype) for rdtype in self._address_types)

    def _known_addresses(self, name: dns.name.Name) -> list[str]:
        addresses: list[str] = []
        for rdtype in self._address_types:
            rrset = self.infra.get(name, rdtype)
            if rrset is not None:
                addresses.extend(r.address for r in rrset)
        return addresses

    def _addresses(self, delegation: _Delegation) -> list[str]:
        """
        The addresses of a zone's servers we know, in the order of their
        names, without repeats.
        """
        found: list[str] = []
        for name in delegation.names:
            addresses = self._usable(self._known_addresses(name) or self._glue(delegation, name))
            if delegation.zone == dns.name.root and not addresses:
                addresses = [a for a in self.hints.addresses_of(name) if self.ipv6 or ":" not in a]
            for address in addresses:
                if address not in found:
                    found.append(address)
        if delegation.zone == dns.name.root and not found:
            # the root servers priming named are all unusable here: the
            # hints are the operator's word
            for name in sorted(self.hints.names):
                found += [
                    a for a in self.hints.addresses_of(name)
                    if (self.ipv6 or ":" not in a) and a not in found
                ]
        return found

    def _usable(self, addresses: list[str]) -> list[str]:
        """
        The C{addresses}, learnt from replies, that may be asked: not this
        host's own nor no host's (L{local_address}) unless C{query_loopback}.
        """
        if self.query_loopback:
            return addresses
        usable = [a for a in addresses if not local_address(a)]
        if len(usable) < len(addresses):
            self.log.info(
                "not asking name servers at {addresses}",
                addresses=", ".join(a for a in addresses if a not in usable),
            )
        return usable

    def _choose(self, zone: dns.name.Name, candidates: Sequence[str]) -> str:
        """
        A server to ask: one of those within L{RTT_BAND} of the fastest,
        servers lame for C{zone} last.
        """
        sound = [a for a in candidates if not self.infra.is_lame(zone, a)] or list(candidates)
        best = min(self.infra.rtt(a) for a in sound)
        band = [a for a in sound if self.infra.rtt(a) <= best + RTT_BAND]
        return self.rng.choice(band)

    async def _ask(
        self,
        delegation: _Delegation,
        qname: dns.name.Name,
        qtype: int,
        do: bool,
        cd: bool,
        budget: _Budget,
        nesting: int,
    ) -> tuple[dns.message.Message, str]:
        """
        Ask the servers of a zone until one gives a usable reply; resolve
        the addresses of glueless servers when those we know are used up.

        @raise _Unreachable: when none is left.
        """
        zone = delegation.zone
        tried: set[str] = set()
        answered = False
        looked_up: set[dns.name.Name] = set()
        while True:
            if self._closed:
                raise _Unreachable("the resolver is closed")
            untried = [a for a in self._addresses(delegation) if a not in tried]
            candidates = [a for a in untried if not self.infra.is_down(a)]
            if len(candidates) < len(untried):
                # servers silent again and again are not asked (NXNSAttack
                # and dead delegations would hold sockets for their timeouts)
                budget.failures.add("silent")
                tried.update(a for a in untried if a not in candidates)
            if not candidates:
                glueless = [
                    n for n in delegation.names
                    if n not in delegation.glue
                    and not self._known_addresses(n)
                    # a server inside the zone without glue cannot be reached
                    and not n.is_subdomain(zone)
                    # nor one known to have no address
                    and not self._no_address(n)
                ]
                if not glueless or len(looked_up) >= self.max_ns_per_zone:
                    raise _Unreachable(f"no server of {zone} answered", answered)
                name = glueless[0]
                looked_up.add(name)
                delegation.glue[name] = await self._server_addresses(name, budget, nesting)
                continue
            address = self._choose(zone, candidates)
            tried.add(address)
            try:
                reply = await self.servers.ask(address, qname, qtype, do, cd, budget.spend)
            except Timeout:
                budget.failures.add("silent")
                self.log.info("{address} did not answer {qname}", address=address, qname=qname)
                continue
            except (_Limit, _Unreachable):
                raise
            except Exception as e:
                budget.failures.add("network")
                self.log.info("{address} failed: {error}", address=address, error=e)
                continue
            answered = True
            if reply.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and not overflows(
                reply, qname
            ):
                budget.failures.add("refused")
                self.log.info(
                    "{address} answered {rcode} for {qname}", address=address,
                    rcode=dns.rcode.to_text(reply.rcode()), qname=qname,
                )
                continue
            kind = classify(reply, zone, qname, qtype)
            if kind is None:
                budget.failures.add("refused")
                self.log.info("{address} is lame for {zone}", address=address, zone=zone)
                self.infra.lame(zone, address)
                continue
            return reply, kind

    async def _server_addresses(
        self, name: dns.name.Name, budget: _Budget, nesting: int
    ) -> list[str]:
        """
        The addresses of a glueless name server, resolved with the budget
        of the question that needs them; none when that fails.
        """
        if nesting >= MAX_NESTING:
            raise _Limit(f"glueless name servers nested more than {MAX_NESTING} deep")
        if budget.ns_lookups >= budget.max_ns_lookups:
            raise _Limit(f"more than {budget.max_ns_lookups} name-server lookups")
        budget.ns_lookups += 1
        addresses: list[str] = []
        for rdtype in self._address_types:
            key = (name, int(rdtype))
            if key in budget.resolving or self.infra.missing(name, rdtype):
                continue
            budget.resolving.add(key)
            try:
                answer = await self._resolve(name, rdtype, False, False, budget, nesting + 1)
            except _Unreachable as e:
                self.log.info("no address for {name}: {error}", name=name, error=e)
                continue
            finally:
                budget.resolving.discard(key)
            found = [r.address for rrset in answer.answer if rrset.rdtype == rdtype for r in rrset]
            addresses.extend(found)
            if not found and answer.rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                # RFC 2308 5: remembered for the SOA's negative TTL; without
                # an SOA, not at all
                ttl = _negative_ttl(answer.authority)
                if ttl is not None:
                    self.log.info(
                        "name server {name} has no {rdtype}", name=name,
                        rdtype=dns.rdatatype.to_text(rdtype),
                    )
                    self.infra.put_missing(name, rdtype, ttl)
        return addresses


_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def local_address(address: str) -> bool:
    """
    Whether a name server address points back at this host or at no
    host: loopback (127.0.0.0/8, ::1), unspecified or "this network"
    (0.0.0.0/8, ::), multicast or broadcast, also as an IPv4-mapped IPv6
    address.  A delegation to one would make the resolver query its own
    host's services (Unbound's do-not-query-localhost), so these are
    skipped unless the resolver is told otherwise.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_unspecified
        or ip.is_multicast
        or (isinstance(ip, ipaddress.IPv4Address) and (ip in _THIS_NETWORK or ip.is_reserved))
        or ip == ipaddress.IPv4Address("255.255.255.255")
    )


#: A stand-in target for a DNAME substitution that makes a name too long.
_TOO_LONG = dns.name.Name([b"too-long"])


def _next_in_chain(
    answer: Sequence[dns.rrset.RRset], current: dns.name.Name, qtype: int
) -> tuple[list[dns.rrset.RRset], dns.name.Name] | None:
    """
    The CNAME (or a DNAME and the CNAME we synthesize from it) that leads
    on from C{current}, and where it leads.
    """
    if qtype != dns.rdatatype.DNAME:
        for rrset in answer:
            if (
                rrset.rdtype == dns.rdatatype.DNAME
                and current != rrset.name
                and current.is_subdomain(rrset.name)
            ):
                try:
                    target = current.relativize(rrset.name).concatenate(rrset[0].target)
                except dns.name.NameTooLong:
                    return [rrset], _TOO_LONG
                cname = dns.rrset.from_text(
                    current, rrset.ttl, dns.rdataclass.IN, dns.rdatatype.CNAME, target.to_text()
                )
                return [rrset, cname], target
    if qtype != dns.rdatatype.CNAME:
        for rrset in answer:
            if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == current:
                return [rrset], rrset[0].target
    return None


def _signatures(
    section: Sequence[dns.rrset.RRset], rrsets: Sequence[dns.rrset.RRset], do: bool
) -> list[dns.rrset.RRset]:
    """
    The RRSIGs in C{section} over C{rrsets}, when the client asked with DO.
    """
    if not do:
        return []
    covered = {(r.name, r.rdtype) for r in rrsets}
    return [
        r for r in section if r.rdtype == dns.rdatatype.RRSIG and (r.name, r.covers) in covered
    ]


def _inside(section: Sequence[dns.rrset.RRset], zone: dns.name.Name) -> list[dns.rrset.RRset]:
    """
    The RRsets of C{section} at or below C{zone}.
    """
    return [r for r in section if r.name.is_subdomain(zone)]


def _chain_names(
    answer: Sequence[dns.rrset.RRset], qname: dns.name.Name
) -> set[dns.name.Name]:
    """
    C{qname} and the names the CNAMEs and DNAMEs of C{answer} lead to from
    it.
    """
    names = {qname}
    current = qname
    for _ in range(len(answer)):
        step = _next_in_chain(answer, current, dns.rdatatype.A)
        if step is None or step[1] in names:
            break
        current = step[1]
        names.add(current)
    return names


def _negative_ttl(authority: Sequence[dns.rrset.RRset]) -> int | None:
    """
    The negative TTL of RFC 2308 5: min(SOA TTL, SOA MINIMUM), or C{None}
    without an SOA.
    """
    for rrset in authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return min(int(rrset.ttl), int(rrset[0].minimum))
    return None


def _has_soa(authority: Sequence[dns.rrset.RRset]) -> bool:
    return any(r.rdtype == dns.rdatatype.SOA for r in authority)


def _negative(authority: Sequence[dns.rrset.RRset], do: bool) -> list[dns.rrset.RRset]:
    """
    What a negative answer carries: the SOA, and with DO the NSEC or NSEC3
    records and signatures.
    """
    kept = [r.copy() for r in authority if r.rdtype == dns.rdatatype.SOA]
    if do:
        proof = [r.copy() for r in authority if r.rdtype in _NEGATIVE_PROOF[1:]]
        kept += proof + [
            r.copy() for r in authority
            if r.rdtype == dns.rdatatype.RRSIG and r.covers in _NEGATIVE_PROOF
        ]
    return kept
