# -*- test-case-name: tests.resolver.test_iterate -*-
"""
One client question's iteration (RFC 1034 5.3.3), for the iterative
resolver (L{dnstls.resolver.iterate}): down from the closest known zone
cut, one referral after the other (L{Question.lookup}); at each zone, its
servers asked until one gives a usable reply (L{Question.ask}), resolving
the addresses of glueless servers on the way (L{Question.server_addresses});
CNAME and DNAME chains followed across zones, the whole chain returned in
the answer section as Unbound does (L{Question.resolve}).

QNAME minimisation (RFC 9156): each zone's servers are asked for the name
one label below their zone (QTYPE A) until the full name is reached, one
label at a time for L{MINIMISE_ONE_LAB} queries and then in larger steps,
so that at most L{MAX_MINIMISE_COUNT} minimised queries are sent for one
name (L{minimised}).  NXDOMAIN to a minimised query makes the zone's
servers be asked the full name (servers wrongly answer NXDOMAIN for empty
non-terminals, and without validation RFC 8020 cannot be trusted:
Unbound's non-strict minimisation); any other answer goes one label deeper
at the same servers; if all of a zone's servers fail a minimised query, the
full name is asked instead.

The work a question may cause is bounded (NXNSAttack) by its L{Budget} and
the resolver's limits: an exceeded bound is L{Limit} (L{Deadline} when out
of time), a zone none of whose servers gave a usable reply L{Unreachable}.
A name server's name found to have no address (NXDOMAIN or NODATA) is
remembered for its negative TTL and not looked up again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as Interface

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from twisted.logger import Logger

from dnstls.resolver.cache import Answer
from dnstls.resolver.classify import (
    TOO_LONG,
    Kind,
    answering,
    classify,
    failed,
    has_soa,
    inside,
    negative,
    negative_ttl,
    next_in_chain,
    signatures,
)
from dnstls.resolver.delegation import Delegation, Delegations
from dnstls.resolver.exchange import Timeout
from dnstls.resolver.infracache import InfraCache
from dnstls.resolver.nsquery import NameServerQueries
from dnstls.resolver.selection import Selection

#: Glueless lookups inside glueless lookups.
MAX_NESTING = 3
#: RFC 9156 2.3: the most minimised queries for one name...
MAX_MINIMISE_COUNT = 10
#: ...of which the first this many add one label each.
MINIMISE_ONE_LAB = 4


class Limit(Exception):
    """
    A work bound was hit.
    """


class Deadline(Limit):
    """
    The question has taken longer than the resolver gives one.
    """


class Unreachable(Exception):
    """
    No server of a zone gave a usable reply.

    @ivar answered: whether some server replied (with an error RCODE or a
        lame reply) rather than being silent or unreachable.
    """

    def __init__(self, reason: str, answered: bool = False) -> None:
        super().__init__(reason)
        self.answered = answered


@dataclass
class Budget:
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
        """
        Count one more upstream query.

        @raise Limit: when the question may send no more.
        @raise Deadline: when it is out of time.
        """
        if self.queries >= self.max_queries:
            raise Limit(f"more than {self.max_queries} upstream queries")
        if self.clock.seconds() >= self.deadline:
            raise Deadline("out of time")
        self.queries += 1


@dataclass
class Reply:
    """
    An authoritative server's final word on one name: its zone, RCODE and
    the in-bailiwick answer and authority RRsets.
    """

    zone: dns.name.Name
    rcode: int
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]


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


class Resolving(Interface):
    """
    What a question uses of the resolver it is asked of
    (L{dnstls.resolver.iterate.Iterator}).
    """

    reactor: Any
    minimise: bool
    max_referrals: int
    max_chain: int
    max_ns_per_zone: int
    infra: InfraCache
    servers: NameServerQueries
    delegations: Delegations
    selection: Selection
    #: whether the resolver was closed: nothing more is sent
    closed: bool


class Question:
    """
    One client question being resolved, with its budget.
    """

    log = Logger()

    def __init__(self, resolver: Resolving, budget: Budget) -> None:
        self.resolver = resolver
        self.budget = budget

    async def resolve(
        self, qname: dns.name.Name, qtype: int, do: bool, cd: bool, nesting: int = 0
    ) -> Answer:
        """
        Look C{qname} up, following CNAME and DNAME chains across zones.
        """
        chain: list[dns.rrset.RRset] = []
        current = qname
        seen = {qname}
        while True:
            reply = await self.lookup(current, qtype, do, cd, nesting)
            start = current
            while True:
                found = answering(reply.answer, current, qtype)
                if found:
                    return Answer(
                        dns.rcode.NOERROR, chain + found + signatures(reply.answer, found, do), [], []
                    )
                step = next_in_chain(reply.answer, current, qtype)
                if step is None:
                    break
                links, target = step
                chain += links + signatures(reply.answer, links, do)
                if target is TOO_LONG:
                    # RFC 6672 2.2: the substitution overflows the name
                    return Answer(dns.rcode.YXDOMAIN, chain, [], [])
                self.budget.chain += 1
                if self.budget.chain > self.resolver.max_chain:
                    raise Limit(f"a CNAME/DNAME chain longer than {self.resolver.max_chain}")
                if target in seen:
                    raise Limit(f"a CNAME/DNAME loop at {target}")
                seen.add(target)
                current = target
            # a negative answer for the name asked, or for the end of a chain
            # the server followed inside its zone; else ask where it leads
            if current == start or (
                current.is_subdomain(reply.zone) and has_soa(reply.authority)
            ):
                return Answer(
                    dns.rcode.Rcode.make(reply.rcode), chain, negative(reply.authority, do), []
                )

    async def lookup(
        self, name: dns.name.Name, qtype: int, do: bool, cd: bool, nesting: int
    ) -> Reply:
        """
        The authoritative reply for C{name} and C{qtype}: down from the
        closest known zone cut, one referral after the other.
        """
        # DS lives on the parent side of a cut
        above = name.parent() if qtype == dns.rdatatype.DS and name != dns.name.root else name
        delegations = self.resolver.delegations
        delegation = delegations.closest(above)
        minimise = self.resolver.minimise
        known = delegation.zone
        count = 0
        referrals = 0
        while True:
            ask = minimised(name, known, count) if minimise else name
            ask_type = qtype if ask == name else dns.rdatatype.A
            try:
                reply, kind = await self.ask(delegation, ask, ask_type, do, cd, nesting)
            except Unreachable as e:
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
            if kind == Kind.REFERRAL:
                referrals += 1
                if referrals > self.resolver.max_referrals:
                    raise Limit(f"more than {self.resolver.max_referrals} referrals")
                delegation = delegations.referred(reply, delegation.zone)
                known = delegation.zone
                continue
            delegations.learn(reply, delegation.zone, ask)
            if ask != name:
                if kind == Kind.NXDOMAIN and not reply.answer:
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
            return Reply(
                delegation.zone,
                reply.rcode(),
                inside(reply.answer, delegation.zone),
                inside(reply.authority, delegation.zone),
            )

    async def ask(
        self,
        delegation: Delegation,
        qname: dns.name.Name,
        qtype: int,
        do: bool,
        cd: bool,
        nesting: int,
    ) -> tuple[dns.message.Message, str]:
        """
        Ask the servers of a zone until one gives a usable reply; resolve
        the addresses of glueless servers when those we know are used up.

        @raise Unreachable: when none is left.
        """
        zone = delegation.zone
        selection = self.resolver.selection
        failures = self.budget.failures
        tried: set[str] = set()
        answered = False
        looked_up: set[dns.name.Name] = set()
        while True:
            if self.resolver.closed:
                raise Unreachable("the resolver is closed")
            candidates, down = selection.untried(delegation, tried)
            if down:
                failures.add("silent")
                tried.update(down)
            if not candidates:
                glueless = selection.glueless(delegation)
                if not glueless or len(looked_up) >= self.resolver.max_ns_per_zone:
                    raise Unreachable(f"no server of {zone} answered", answered)
                name = glueless[0]
                looked_up.add(name)
                delegation.glue[name] = await self.server_addresses(name, nesting)
                continue
            address = selection.choose(zone, candidates)
            tried.add(address)
            try:
                reply = await self.resolver.servers.ask(
                    address, qname, qtype, do, cd, self.budget.spend
                )
            except Timeout:
                failures.add("silent")
                self.log.info("{address} did not answer {qname}", address=address, qname=qname)
                continue
            except (Limit, Unreachable):
                raise
            except Exception as e:
                failures.add("network")
                self.log.info("{address} failed: {error}", address=address, error=e)
                continue
            answered = True
            if failed(reply, qname):
                failures.add("refused")
                self.log.info(
                    "{address} answered {rcode} for {qname}", address=address,
                    rcode=dns.rcode.to_text(reply.rcode()), qname=qname,
                )
                continue
            kind = classify(reply, zone, qname, qtype)
            if kind is None:
                failures.add("refused")
                self.log.info("{address} is lame for {zone}", address=address, zone=zone)
                self.resolver.infra.lame(zone, address)
                continue
            return reply, kind

    async def server_addresses(self, name: dns.name.Name, nesting: int) -> list[str]:
        """
        The addresses of a glueless name server, resolved with the budget
        of this question; none when that fails.
        """
        budget = self.budget
        if nesting >= MAX_NESTING:
            raise Limit(f"glueless name servers nested more than {MAX_NESTING} deep")
        if budget.ns_lookups >= budget.max_ns_lookups:
            raise Limit(f"more than {budget.max_ns_lookups} name-server lookups")
        budget.ns_lookups += 1
        infra = self.resolver.infra
        addresses: list[str] = []
        for rdtype in self.resolver.delegations.address_types:
            key = (name, int(rdtype))
            if key in budget.resolving or infra.missing(name, rdtype):
                continue
            budget.resolving.add(key)
            try:
                answer = await self.resolve(name, rdtype, False, False, nesting + 1)
            except Unreachable as e:
                self.log.info("no address for {name}: {error}", name=name, error=e)
                continue
            finally:
                budget.resolving.discard(key)
            found = [r.address for rrset in answer.answer if rrset.rdtype == rdtype for r in rrset]
            addresses.extend(found)
            if not found and answer.rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                # RFC 2308 5: remembered for the SOA's negative TTL; without
                # an SOA, not at all
                ttl = negative_ttl(answer.authority)
                if ttl is not None:
                    self.log.info(
                        "name server {name} has no {rdtype}", name=name,
                        rdtype=dns.rdatatype.to_text(rdtype),
                    )
                    infra.put_missing(name, rdtype, ttl)
        return addresses
