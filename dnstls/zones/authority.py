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
import struct
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

#: The wire form of a wildcard label, as a key prefix.
_WILDCARD_KEY = b"\x01*"

#: Types whose RDATA holds no name dnspython would compress, and whose
#: answers carry no additional section: their answer at an existing name
#: is the same octets whoever asks (see L{AuthoritativeZone.classify}).
PLAIN_TYPES = frozenset(
    {
        A,
        AAAA,
        dns.rdatatype.TXT,
        dns.rdatatype.SPF,
        dns.rdatatype.CAA,
        dns.rdatatype.SSHFP,
        dns.rdatatype.TLSA,
        dns.rdatatype.HINFO,
    }
)

RRsets = dict[int, dns.rrset.RRset]


def key(name: dns.name.Name) -> bytes:
    """
    The key of C{name} in a zone's tables: its wire form in lower case,
    uncompressed, as a query's name lower-cased with C{bytes.lower} gives
    it (DNS compares names in ASCII case only, as C{bytes.lower} changes
    only ASCII letters, and no label length octet is a letter).
    """
    return name.to_digestable()


def suffixes_longer_than(wire: bytes, length: int) -> list[bytes]:
    """
    The suffixes of the uncompressed wire name C{wire} longer than
    C{length} octets, C{wire} itself first: with an apex's length, the
    name and its ancestors below the apex.
    """
    suffixes = []
    offset = 0
    while len(wire) - offset > length:
        suffixes.append(wire[offset:] if offset else wire)
        offset += wire[offset] + 1
    return suffixes


class Fast(enum.Enum):
    """
    The negative outcomes L{AuthoritativeZone.classify} can tell at once.
    """

    NODATA = "nodata"
    NXDOMAIN = "nxdomain"


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
        self._apex = key(self.origin)
        self._nodes: dict[bytes, RRsets] = {}
        self._names: set[bytes] = set()
        self._cuts: set[bytes] = set()
        self._dnames: set[bytes] = set()
        #: the rendered answers of L{classify}, by type then key
        self._plain: dict[int, dict[bytes, bytes]] = {}
        apex_length = len(self._apex)
        names = self._names
        for owner, node in zone.nodes.items():
            rrsets: RRsets = {}
            for rdataset in node.rdatasets:
                if rdataset.rdtype == RRSIG:
                    continue
                rrset = dns.rrset.RRset(owner, rdataset.rdclass, rdataset.rdtype)
                rrset.update(rdataset)
                rrsets[rdataset.rdtype] = rrset
            owner_key = key(owner)
            self._nodes[owner_key] = rrsets
            for suffix in suffixes_longer_than(owner_key, apex_length):
                if suffix in names:
                    break
                names.add(suffix)
            if NS in rrsets and owner_key != self._apex:
                self._cuts.add(owner_key)
            if DNAME in rrsets:
                self._dnames.add(owner_key)
        names.add(self._apex)
        apex = self._nodes[self._apex]
        soa_rrset = apex[SOA]
        soa = soa_rrset[0]
        assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
        self.serial: int = soa.serial
        self._negative_soa = dns.rrset.RRset(self.origin, IN, SOA)
        self._negative_soa.update(soa_rrset)
        self._negative_soa.update_ttl(min(soa_rrset.ttl, soa.minimum))
        self._has_wildcards = any(k.startswith(_WILDCARD_KEY) for k in self._nodes)
        self._redirects = bool(self._cuts or self._dnames)
        #: names below the apex that the negative answer's SOA RDATA ends
        #: in: a question ending in one of them is compressed differently
        self.negative_suffixes: frozenset[bytes] = frozenset(
            suffix
            for target in (soa.mname, soa.rname)
            for suffix in suffixes_longer_than(key(target), apex_length)
            if target.is_subdomain(self.origin)
        )

    def same_data(self, other: AuthoritativeZone) -> bool:
        """
        Whether C{other} holds exactly the records of this zone, TTLs
        included: a reload that would change no answer.
        """
        return self.origin == other.origin and self._records() == other._records()

    def _records(self) -> set[tuple[bytes, int, int, frozenset[dns.rdata.Rdata]]]:
        return {
            (owner, rdtype, rrset.ttl, frozenset(rrset))
            for owner, rrsets in self._nodes.items()
            for rdtype, rrset in rrsets.items()
        }

    @property
    def apex_key(self) -> bytes:
        """
        The key (see L{key}) of the zone's apex.
        """
        return self._apex

    def classify(self, qkey: bytes, starts: list[int], qtype: int) -> bytes | Fast | None:
        """
        What L{lookup} would answer, when that can be told from C{qkey}
        alone and is one of the plain cases: the answer section of an
        existing name for a type of L{PLAIN_TYPES} (ANCOUNT's two octets,
        then its records, each owned by a pointer to the question), or a
        negative answer (L{Fast}) at a name that is neither at nor below a
        zone cut, a DNAME or a wildcard.  C{None} for everything else
        (DS, ANY, CNAME, referrals, wildcards, glue): L{lookup} answers it.

        @param qkey: the question's name in lower case (see L{key}), in
            this zone.
        @param starts: the offsets in C{qkey} of its labels below the apex.
        """
        if self._redirects:
            if qtype == DS:
                return None
            cuts, dnames = self._cuts, self._dnames
            if qkey == self._apex:
                return self._at(qkey, starts, qtype)
            for start in starts:
                suffix = qkey[start:]
                if suffix in cuts or (start and suffix in dnames):
                    return None
            if self._apex in dnames:
                return None
        return self._at(qkey, starts, qtype)

    def _at(self, qkey: bytes, starts: list[int], qtype: int) -> bytes | Fast | None:
        """
        L{classify} once no cut or DNAME is in the way.
        """
        rrsets = self._nodes.get(qkey)
        if rrsets is None:
            names = self._names
            if qkey in names:
                return Fast.NODATA
            if self._has_wildcards:
                encloser = self._apex
                for start in starts[1:]:
                    if qkey[start:] in names:
                        encloser = qkey[start:]
                        break
                if _WILDCARD_KEY + encloser in self._nodes:
                    return None
            return Fast.NXDOMAIN
        if qtype in rrsets:
            if qtype not in PLAIN_TYPES:
                return None
            rendered = self._plain.setdefault(qtype, {})
            answer = rendered.get(qkey)
            if answer is None:
                answer = rendered[qkey] = _plain_answer(rrsets[qtype])
            return answer
        if CNAME in rrsets or qtype == ANY or qtype == DS:
            return None
        return Fast.NODATA

    def lookup(self, qname: dns.name.Name, qtype: int) -> LookupResult:
        """
        Answer C{qname}/C{qtype} from this zone, following CNAME and DNAME
        chains as far as they stay inside it.
        """
        result = LookupResult(Outcome.ANSWER)
        seen: set[dns.name.Name] = set()
        name = qname
        while True:
            target = self._step(name, key(name), qtype, result)
            if target is None:
                break
            seen.add(name)
            if target in seen or len(seen) >= MAX_CHAIN or not target.is_subdomain(self.origin):
                result.outcome = Outcome.ANSWER
                break
            name = target
        if result.outcome in (Outcome.NODATA, Outcome.NXDOMAIN):
            result.authority.append(self._negative_soa)
        self._add_additional(result)
        return result

    def _step(
        self, name: dns.name.Name, name_key: bytes, qtype: int, result: LookupResult
    ) -> dns.name.Name | None:
        """
        Look up one name of a chain (C{name_key} is its L{key}), adding to
        C{result}.  Return the next name of the chain, or C{None} when the
        lookup ended.
        """
        redirect = self._find_cut_or_dname(name_key, qtype)
        if redirect is not None:
            owner, rrsets = redirect
            if NS in rrsets and owner in self._cuts:
                result.outcome = Outcome.DELEGATION
                result.authority.append(rrsets[NS])
                return None
            return self._synthesize_dname(name, rrsets[DNAME], result)
        node = self._nodes.get(name_key)
        if node is None:
            if name_key in self._names:
                result.outcome = Outcome.NODATA
                return None
            node = self._wildcard_for(name_key)
            if node is None:
                result.outcome = Outcome.NXDOMAIN
                return None
        return self._answer_from_node(name, node, qtype, result)

    def _find_cut_or_dname(self, name_key: bytes, qtype: int) -> tuple[bytes, RRsets] | None:
        """
        The highest zone cut or DNAME owner on the way from the apex down to
        the name whose key is C{name_key}.  A cut at the name itself counts
        unless the question is for DS, which the parent side of the cut
        answers; a DNAME counts only strictly above the name.
        """
        if not self._redirects:
            return None
        below = suffixes_longer_than(name_key, len(self._apex))
        for ancestor in (self._apex, *reversed(below)):
            itself = ancestor == name_key
            if ancestor in self._cuts and not (itself and qtype == DS):
                return ancestor, self._nodes[ancestor]
            if ancestor in self._dnames and not itself:
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

    def _wildcard_for(self, name_key: bytes) -> RRsets | None:
        """
        The RRsets of the wildcard that covers the name whose key is
        C{name_key}, which does not exist, if its closest encloser has one
        (RFC 4592 section 3.3.1).
        """
        if not self._has_wildcards:
            return None
        encloser = name_key[name_key[0] + 1 :]
        while encloser not in self._names:
            encloser = encloser[encloser[0] + 1 :]
        return self._nodes.get(_WILDCARD_KEY + encloser)

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
        rrsets = self._nodes.get(key(name))
        return rrsets.get(rdtype) if rrsets else None

    def _below_cut(self, name: dns.name.Name) -> bool:
        """
        Whether C{name} is at or below a zone cut, so its data is glue.
        """
        if not self._cuts:
            return False
        return any(
            ancestor in self._cuts
            for ancestor in suffixes_longer_than(key(name), len(self._apex))
        )


def _plain_answer(rrset: dns.rrset.RRset) -> bytes:
    """
    ANCOUNT and the answer records of C{rrset} as dnspython's renderer
    writes them after a question for the same name: each owner a pointer
    to the question (offset 12), the RDATA uncompressed (L{PLAIN_TYPES}
    hold no compressible name), in the RRset's order.
    """
    head = struct.pack("!HHI", rrset.rdtype, rrset.rdclass, rrset.ttl)
    parts = [struct.pack("!H", len(rrset))]
    for rdata in rrset:
        data = rdata.to_wire()
        parts.append(b"\xc0\x0c" + head + struct.pack("!H", len(data)) + data)
    return b"".join(parts)


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
