# -*- test-case-name: tests.resolver.test_selection -*-
"""
Which server address of a zone the iterative resolver
(L{dnstls.resolver.iterate}) asks next.

A zone's addresses are those the cache holds for its servers' names, else
the referral's glue or what was found for a glueless server (IPv4 only
unless C{ipv6}); for the root, the hints' addresses of a server the cache
has none for, and all of the hints' when none is left.  An address silent
twice in a row is not asked for a while
(L{dnstls.resolver.infracache.DOWN_FOR}) but by one probe, so that
delegations to dead addresses do not hold upstream sockets for their
timeouts question after question.  Of the rest, one within L{RTT_BAND} of
the fastest smoothed RTT is picked at random, so that unknown ones get
their turn, servers lame for the zone last.

Name servers at loopback, unspecified, multicast or broadcast addresses
learnt from replies (glue, a glueless server's address, priming) are not
asked unless C{query_loopback} is set (L{local_address}, Unbound's
do-not-query-localhost): a delegation to 127.0.0.1 would turn the resolver
against this host's own services.  The root hints are the operator's word
and always used.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Sequence

import dns.name
from twisted.logger import Logger

from dnstls.resolver.delegation import Delegation, Delegations
from dnstls.resolver.infracache import InfraCache

#: Servers whose RTT is within this many seconds of the fastest are equally
#: good; one of them is picked at random.
RTT_BAND = 0.4

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


class Selection:
    """
    Chooses the server addresses to ask.

    @ivar delegations: the zone cuts and addresses known.
    @ivar ipv6: whether IPv6 addresses are used.
    @ivar query_loopback: whether loopback addresses learnt from replies are.
    @ivar rng: what picks among equally fast servers.
    """

    log = Logger()

    def __init__(
        self,
        delegations: Delegations,
        infra: InfraCache,
        ipv6: bool,
        query_loopback: bool,
        rng: random.Random,
    ) -> None:
        self.delegations = delegations
        self.infra = infra
        self.hints = delegations.hints
        self.ipv6 = ipv6
        self.query_loopback = query_loopback
        self.rng = rng

    def untried(self, delegation: Delegation, tried: set[str]) -> tuple[list[str], list[str]]:
        """
        The addresses of a zone's servers not in C{tried}: those that may be
        asked, and those down (silent again and again: NXNSAttack and dead
        delegations would hold sockets for their timeouts).
        """
        untried = [a for a in self.addresses(delegation) if a not in tried]
        candidates = [a for a in untried if not self.infra.is_down(a)]
        return candidates, [a for a in untried if a not in candidates]

    def glueless(self, delegation: Delegation) -> list[dns.name.Name]:
        """
        The names of a zone's servers whose addresses could be looked up:
        no glue, no address known, not inside the zone (a server there
        without glue cannot be reached) and not known to have no address.
        """
        return [
            n for n in delegation.names
            if n not in delegation.glue
            and not self.delegations.known_addresses(n)
            and not n.is_subdomain(delegation.zone)
            and not self.delegations.no_address(n)
        ]

    def choose(self, zone: dns.name.Name, candidates: Sequence[str]) -> str:
        """
        A server to ask: one of those within L{RTT_BAND} of the fastest,
        servers lame for C{zone} last.
        """
        sound = [a for a in candidates if not self.infra.is_lame(zone, a)] or list(candidates)
        best = min(self.infra.rtt(a) for a in sound)
        band = [a for a in sound if self.infra.rtt(a) <= best + RTT_BAND]
        return self.rng.choice(band)

    def addresses(self, delegation: Delegation) -> list[str]:
        """
        The addresses of a zone's servers we know, in the order of their
        names, without repeats.
        """
        found: list[str] = []
        for name in delegation.names:
            addresses = self._usable(
                self.delegations.known_addresses(name) or self._families(delegation.glue.get(name, []))
            )
            if delegation.zone == dns.name.root and not addresses:
                addresses = self._families(self.hints.addresses_of(name))
            for address in addresses:
                if address not in found:
                    found.append(address)
        if delegation.zone == dns.name.root and not found:
            # the root servers priming named are all unusable here: the
            # hints are the operator's word
            for name in sorted(self.hints.names):
                found += [a for a in self._families(self.hints.addresses_of(name)) if a not in found]
        return found

    def _families(self, addresses: Iterable[str]) -> list[str]:
        """
        The C{addresses} of the families we use.
        """
        return [a for a in addresses if self.ipv6 or ":" not in a]

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
