# -*- test-case-name: tests.zones.test_authority -*-
"""
Authoritative data and the lookup of RFC 1034 section 4.3.2.

An L{AuthoritativeZone} is a loaded zone compiled for lookups: every owner
name, every empty non-terminal, the zone cuts and the DNAME owners.
L{AuthoritativeZone.lookup} answers one question with a L{LookupResult}
whose L{Outcome} is one of a closed set; the handler alone turns that into
an RCODE and the AA bit.  L{dnstls.zones.store.ZoneStore} routes a name to
the zone with the longest matching origin.

Behaviour follows RFC 1034, 2181, 2308, 4592, 6604, 6672 and 8482, with Knot
DNS as the reference where the RFCs leave room: positive answers carry no
authority section, CNAME and DNAME chains are followed inside the zone that
holds them, and ANY is answered with one RRset.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.zone

IN = dns.rdataclass.IN
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
ANY = dns.rdatatype.ANY
CNAME = dns.rdatatype.CNAME
DNAME = dns.rdatatype.DNAME
DS = dns.rdatatype.DS
MX = dns.rdatatype.MX
NS = dns.rdatatype.NS
SOA = dns.rdatatype.SOA
SRV = dns.rdatatype.SRV
RRSIG = dns.rdatatype.RRSIG

#: The longest CNAME/DNAME chain followed inside one zone (Knot DNS uses 20).
MAX_CHAIN = 16

_WILDCARD = b"*"

RRsets = dict[int, dns.rrset.RRset]


class Outcome(enum.Enum):
    """
    How a lookup ended.
    """

    ANSWER = "answer"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"
    DELEGATION = "delegation"
    YXDOMAIN = "yxdomain"


@dataclass
class LookupResult:
    """
    The sections an authoritative lookup produced.

    @ivar outcome: how the lookup ended, for the RCODE and the AA bit.
    @ivar answer: the answer section, CNAME and DNAME chain included.
    @ivar authority: the SOA of a negative answer, or the NS of a referral.
    @ivar additional: addresses for targets; the first C{required} of them
        are glue a referral cannot go without (RFC 9471).
    """

    outcome: Outcome
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    required: int = 0

    @property
    def authoritative(self) -> bool:
        """
        Whether AA is set: for every answer from our data, and for a referral
        only when a CNAME from our data led to it (RFC 1035 4.1.1).
        """
        return self.outcome is not Outcome.DELEGATION or bool(self.answer)


class AuthoritativeZone:
    """
    One zone, compiled for lookups.

    @ivar origin: the zone's apex.
    @ivar serial: the SOA serial, for logs.
    """

    def __init__(self, zone: dns.zone.Zone) -> None:
        """
        @param zone: a checked zone with absolute names, as
            L{dnstls.zones.zonefile.load_zone} returns.
        """
        assert zone.origin is not None
        self.origin: dns.name.Name = zone.origin
        self._nodes: dict[dns.name.Name, RRsets] = {}
        self._names: set[dns.name.Name] = set()
        self._cuts: set[dns.name.Name] = set()
        self._dnames: set[dns.name.Name] = set()
        for owner, node in zone.nodes.items():
            rrsets: RRsets = {}
            for rdataset in node.rdatasets:
                if rdataset.rdtype == RRSIG:
                    continue
                rrset = dns.rrset.RRset(owner, rdataset.rdclass, rdataset.rdtype)
                rrset.update(rdataset)
                rrsets[rdataset.rdtype] = rrset
            self._nodes[owner] = rrsets
            name = owner
            while name != self.origin and name not in self._names:
                self._names.add(name)
                name = name.parent()
            if NS in rrsets and owner != self.origin:
                self._cuts.add(owner)
            if DNAME in rrsets:
                self._dnames.add(owner)
        self._names.add(self.origin)
        apex = self._nodes[self.origin]
        soa_rrset = apex[SOA]
        soa = soa_rrset[0]
        assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
        self.serial: int = soa.serial
        self._negative_soa = dns.rrset.RRset(self.origin, IN, SOA)
        self._negative_soa.update(soa_rrset)
        self._negative_soa.update_ttl(min(soa_rrset.ttl, soa.minimum))
        self._has_wildcards = any(n.labels[0] == _WILDCARD for n in self._nodes)

    def same_data(self, other: AuthoritativeZone) -> bool:
        """
        Whether C{other} holds exactly the records of this zone, TTLs
        included: a reload that would change no answer.
        """
        return self.origin == other.origin and self._records() == other._records()

    def _records(self) -> set[tuple[dns.name.Name, int, int, frozenset[dns.rdata.Rdata]]]:
        return {
            (owner, rdtype, rrset.ttl, frozenset(rrset))
            for owner, rrsets in self._nodes.items()
            for rdtype, rrset in rrsets.items()
        }

    def lookup(self, qname: dns.name.Name, qtype: int) -> LookupResult:
        """
        Answer C{qname}/C{qtype} from this zone, following CNAME and DNAME
        chains as far as they stay inside it.
        """
        result = LookupResult(Outcome.ANSWER)
        seen: set[dns.name.Name] = set()
        name = qname
        while True:
            target = self._step(name, qtype, result)
            if target is None:
                break
            seen.add(name)
            if (
                target in seen
                or len(seen) >= MAX_CHAIN
                or not target.is_subdomain(self.origin)
            ):
                result.outcome = Outcome.ANSWER
                break
            name = target
        if result.outcome in (Outcome.NODATA, Outcome.NXDOMAIN):
            result.authority.append(self._negative_soa)
        self._add_additional(result)
        return result

    def _step(
        self, name: dns.name.Name, qtype: int, result: LookupResult
    ) -> dns.name.Name | None:
        """
        Look up one name of a chain, adding to C{result}.  Return the next
        name of the chain, or C{None} when the lookup ended.
        """
        redirect = self._find_cut_or_dname(name, qtype)
        if redirect is not None:
            owner, rrsets = redirect
            if NS in rrsets and owner in self._cuts:
                result.outcome = Outcome.DELEGATION
                result.authority.append(rrsets[NS])
                return None
            return self._synthesize_dname(name, rrsets[DNAME], result)
        node = self._nodes.get(name)
        if node is None:
            if name in self._names:
                result.outcome = Outcome.NODATA
                return None
            node = self._wildcard_for(name)
            if node is None:
                result.outcome = Outcome.NXDOMAIN
                return None
        return self._answer_from_node(name, node, qtype, result)

    def _find_cut_or_dname(
        self, name: dns.name.Name, qtype: int
    ) -> tuple[dns.name.Name, RRsets] | None:
        """
        The highest zone cut or DNAME owner on the way from the apex down to
        C{name}.  A cut at C{name} itself counts unless the question is for
        DS, which the parent side of the cut answers; a DNAME counts only
        strictly above C{name}.
        """
        if not self._cuts and not self._dnames:
            return None
        depth = len(self.origin.labels)
        for labels in range(depth, len(name.labels) + 1):
            _, ancestor = name.split(labels)
            if ancestor in self._cuts and not (ancestor == name and qtype == DS):
                return ancestor, self._nodes[ancestor]
            if ancestor in self._dnames and ancestor != name:
                return ancestor, self._nodes[ancestor]
        return None

    def _synthesize_dname(
        self, name: dns.name.Name, dname: dns.rrset.RRset, result: LookupResult
    ) -> dns.name.Name | None:
        """
        Add the DNAME and the CNAME it synthesises for C{name} (RFC 6672
        section 3.2) and return the new target.
        """
        result.answer.append(dname)
        rdata = dname[0]
        try:
            target = name.relativize(dname.name).derelativize(rdata.target)
        except dns.name.NameTooLong:
            result.outcome = Outcome.YXDOMAIN
            return None
        cname = dns.rrset.RRset(name, IN, CNAME)
        cname.add(dns.rdtypes.ANY.CNAME.CNAME(IN, CNAME, target), dname.ttl)
        result.answer.append(cname)
        result.outcome = Outcome.ANSWER
        return target

    def _wildcard_for(self, name: dns.name.Name) -> RRsets | None:
        """
        The RRsets of the wildcard that covers C{name}, which does not exist,
        if its closest encloser has one (RFC 4592 section 3.3.1).
        """
        if not self._has_wildcards:
            return None
        encloser = name.parent()
        while encloser not in self._names:
            encloser = encloser.parent()
        return self._nodes.get(dns.name.Name((_WILDCARD, *encloser.labels)))

    def _answer_from_node(
        self, owner: dns.name.Name, rrsets: RRsets, qtype: int, result: LookupResult
    ) -> dns.name.Name | None:
        """
        Answer from an existing or wildcard node, whose RRsets are renamed to
        C{owner} when they were synthesised.
        """
        if qtype == ANY:
            chosen = _pick_for_any(rrsets)
            result.answer.append(_renamed(chosen, owner))
            result.outcome = Outcome.ANSWER
            return None
        rrset = rrsets.get(qtype)
        if rrset is not None:
            result.answer.append(_renamed(rrset, owner))
            result.outcome = Outcome.ANSWER
            return None
        cname = rrsets.get(CNAME)
        if cname is not None:
            result.answer.append(_renamed(cname, owner))
            result.outcome = Outcome.ANSWER
            return cname[0].target  # type: ignore[no-any-return]
        result.outcome = Outcome.NODATA
        return None

    def _add_additional(self, result: LookupResult) -> None:
        """
        Addresses for the targets of NS, MX and SRV records in the answer and
        authority sections (RFC 1034 4.3.2 step 6).  NS targets take glue from
        below any cut (sibling glue too); a referral's in-domain glue comes
        first and is required.
        """
        referral = result.outcome is Outcome.DELEGATION
        required: list[dns.rrset.RRset] = []
        optional: list[dns.rrset.RRset] = []
        added: set[dns.name.Name] = set()
        for rrset in (*result.answer, *result.authority):
            for target in _targets(rrset):
                if target in added or not target.is_subdomain(self.origin):
                    continue
                added.add(target)
                glue = rrset.rdtype == NS
                if not glue and self._below_cut(target):
                    continue
                addresses = [r for t in (A, AAAA) if (r := self._address(target, t))]
                in_domain = referral and glue and target.is_subdomain(rrset.name)
                (required if in_domain else optional).extend(addresses)
        result.additional = required + optional
        result.required = len(required)

    def _address(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        """
        The C{rdtype} RRset at C{name}, glue included, if there is one.
        """
        rrsets = self._nodes.get(name)
        return rrsets.get(rdtype) if rrsets else None

    def _below_cut(self, name: dns.name.Name) -> bool:
        """
        Whether C{name} is at or below a zone cut, so its data is glue.
        """
        while name != self.origin:
            if name in self._cuts:
                return True
            name = name.parent()
        return False


def _renamed(rrset: dns.rrset.RRset, owner: dns.name.Name) -> dns.rrset.RRset:
    """
    C{rrset} with owner C{owner}, for wildcard synthesis; C{rrset} itself
    when the owner is already right.
    """
    if rrset.name == owner:
        return rrset
    renamed = dns.rrset.RRset(owner, rrset.rdclass, rrset.rdtype)
    renamed.update(rrset)
    return renamed


def _pick_for_any(rrsets: RRsets) -> dns.rrset.RRset:
    """
    The one RRset a minimal ANY answer carries (RFC 8482 section 4.2): the
    one with the lowest type number, as Knot DNS picks.
    """
    return rrsets[min(rrsets)]


def _targets(rrset: dns.rrset.RRset) -> Iterable[dns.name.Name]:
    """
    The names an NS, MX or SRV RRset points at.
    """
    if rrset.rdtype == NS:
        return (rdata.target for rdata in rrset)
    if rrset.rdtype == MX:
        return (rdata.exchange for rdata in rrset)
    if rrset.rdtype == SRV:
        return (rdata.target for rdata in rrset)
    return ()
