# -*- test-case-name: tests.resolver.test_iterate -*-
"""
Zone cuts, for the iterative resolver (L{dnstls.resolver.iterate}): where
to start for a name (L{Delegations.closest}: the deepest cut whose servers
can be reached, else the root), and what replies teach about cuts and
name-server addresses, kept in the L{InfraCache}.

Only in-bailiwick data is believed: a referral's NS set must be below the
zone of the server that sent it and its glue must lie inside that zone
(L{Delegations.referred}; glue the cache will not keep, such as TTL 0,
still serves that referral through L{Delegation.glue}); of an
authoritative answer only the addresses and NS sets inside the zone and on
the chain asked about (the name, and the CNAME and DNAME targets from it)
are learnt (L{Delegations.learn}): anything else is what a spoofed reply
would slip in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.message
import dns.name
import dns.rdatatype
from twisted.logger import Logger

from dnstls.resolver.classify import chain_names, inside
from dnstls.resolver.infracache import InfraCache, Rank
from dnstls.resolver.roothints import RootHints

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


@dataclass(frozen=True)
class Delegation:
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


class Delegations:
    """
    The zone cuts and server addresses known, in the infrastructure cache.

    @ivar address_types: the address types used: A, and AAAA with IPv6.
    """

    log = Logger()

    def __init__(self, infra: InfraCache, hints: RootHints, ipv6: bool) -> None:
        self.infra = infra
        self.hints = hints
        self.address_types: Sequence[dns.rdatatype.RdataType] = (
            _ADDRESS_TYPES if ipv6 else (dns.rdatatype.A,)
        )

    def known_addresses(self, name: dns.name.Name) -> list[str]:
        """
        The addresses of C{name} the cache holds, of the types we use.
        """
        addresses: list[str] = []
        for rdtype in self.address_types:
            rrset = self.infra.get(name, rdtype)
            if rrset is not None:
                addresses.extend(r.address for r in rrset)
        return addresses

    def no_address(self, name: dns.name.Name) -> bool:
        """
        Whether C{name} was lately found to have none of the address types
        we use.
        """
        return all(self.infra.missing(name, rdtype) for rdtype in self.address_types)

    def hinted(self) -> Delegation:
        """
        The root, with the servers the hints name.
        """
        return Delegation(dns.name.root, tuple(sorted(self.hints.names)))

    def closest(self, name: dns.name.Name) -> Delegation:
        """
        The deepest zone cut at or above C{name} whose servers we can
        reach, else the root from the hints.
        """
        while name != dns.name.root:
            ns = self.infra.get(name, dns.rdatatype.NS)
            if ns is not None:
                names = tuple(sorted({r.target for r in ns}))
                if any(self.known_addresses(n) or not n.is_subdomain(name) for n in names):
                    return Delegation(name, names)
            name = name.parent()
        ns = self.infra.get(dns.name.root, dns.rdatatype.NS)
        names = tuple(sorted({r.target for r in ns})) if ns is not None else ()
        if not any(self.known_addresses(n) for n in names):
            return self.hinted()
        return Delegation(dns.name.root, names)

    def referred(self, reply: dns.message.Message, zone: dns.name.Name) -> Delegation:
        """
        Learn the NS set and in-bailiwick glue of a referral from a server
        of C{zone}; anything else in it is dropped.
        """
        ns = next(r for r in reply.authority if r.rdtype == dns.rdatatype.NS)
        self.infra.put(ns, Rank.AUTHORITY)
        names = {r.target for r in ns}
        glue: dict[dns.name.Name, list[str]] = {}
        for rrset in reply.additional:
            if rrset.rdtype not in self.address_types:
                continue
            if rrset.name in names and rrset.name.is_subdomain(zone):
                self.infra.put(rrset, Rank.ADDITIONAL)
                glue.setdefault(rrset.name, []).extend(r.address for r in rrset)
            else:
                self.log.debug(
                    "ignoring out-of-bailiwick {name} from a server of {zone}",
                    name=rrset.name, zone=zone,
                )
        return Delegation(ns.name, tuple(sorted(names)), glue)

    def learn(
        self, reply: dns.message.Message, zone: dns.name.Name, qname: dns.name.Name
    ) -> None:
        """
        Keep the addresses and NS sets in an authoritative reply from a
        server of C{zone} to a question for C{qname}: those inside the
        zone, on the chain from C{qname} only (anything else in the answer
        section is what a spoofed reply would slip in).
        """
        answer = inside(reply.answer, zone)
        chain = chain_names(answer, qname)
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
