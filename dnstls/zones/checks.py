# -*- test-case-name: tests.zones.test_zonefile -*-
"""
The checks an authoritative server owes its clients once a zone is read:
an SOA and NS records at the apex, an SOA nowhere else, nothing but NS, DS
and glue at a zone cut and only glue addresses below one; and, until
DNSSEC answers are served, no signed zone.
"""

from __future__ import annotations

import os

import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.zone

from dnstls.errors import ZoneError
from dnstls.zones.reader import RecordLines

_AT_CUT = frozenset(
    {
        dns.rdatatype.NS,
        dns.rdatatype.DS,
        dns.rdatatype.NSEC,
        dns.rdatatype.RRSIG,
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
    }
)
_GLUE = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})


def check_zone(zone: dns.zone.Zone, lines: RecordLines, filename: str) -> None:
    """
    The checks made once the whole zone is read.
    """
    origin = zone.origin
    if origin is None:
        raise ZoneError(f"{filename}: no $ORIGIN, and no origin given")
    apex = zone.get_node(origin)
    if apex is None or apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA) is None:
        raise ZoneError(f"{filename}: no SOA record at the apex {origin}")
    if apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS) is None:
        raise ZoneError(f"{filename}: no NS records at the apex {origin}")
    # Every owner is at or below the origin: a name of the origin's length
    # is the origin, one label longer has the origin for parent.
    depth = len(origin.labels)
    cuts: set[dns.name.Name] = set()
    for name, node in zone.nodes.items():
        if len(name.labels) == depth and name == origin:
            continue
        types = {rdataset.rdtype for rdataset in node.rdatasets if _plain(rdataset)}
        if dns.rdatatype.SOA in types:
            raise ZoneError(
                f"{lines.where(name, dns.rdatatype.SOA)}: SOA record at {name}, "
                f"which is not the apex {origin}"
            )
        if dns.rdatatype.NS in types:
            cuts.add(name)
    for cut in cuts:
        node = zone.nodes[cut]
        for rdataset in node.rdatasets:
            if rdataset.rdtype not in _AT_CUT:
                raise ZoneError(
                    f"{lines.where(cut, rdataset.rdtype)}: "
                    f"{dns.rdatatype.to_text(rdataset.rdtype)} at {cut}, a zone cut, "
                    "where only NS, DS and glue belong"
                )
    if cuts:
        _check_below_cuts(zone, cuts, lines, depth)


def _plain(rdataset: dns.rdataset.Rdataset) -> bool:
    """
    Whether C{rdataset} is one C{node.get_rdataset(IN, rdtype)} finds: of
    class IN and covering no type.
    """
    return (
        rdataset.rdclass == dns.rdataclass.IN and rdataset.covers == dns.rdatatype.NONE
    )


def _check_below_cuts(
    zone: dns.zone.Zone, cuts: set[dns.name.Name], lines: RecordLines, depth: int
) -> None:
    """
    Refuse anything but glue addresses below one of the zone cuts C{cuts};
    C{depth} is the number of labels of the zone's origin.
    """
    origin = zone.origin
    for name, node in zone.nodes.items():
        if len(name.labels) <= depth + 1:
            # the origin, or a name whose parent is the origin
            continue
        parent = name.parent()
        while parent != origin:
            if parent in cuts:
                for rdataset in node.rdatasets:
                    if rdataset.rdtype not in _GLUE:
                        raise ZoneError(
                            f"{lines.where(name, rdataset.rdtype)}: "
                            f"{dns.rdatatype.to_text(rdataset.rdtype)} at {name}, below "
                            f"the zone cut {parent}, where only glue addresses belong"
                        )
            parent = parent.parent()


_DNSSEC_TYPES = frozenset(
    {dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3, dns.rdatatype.NSEC3PARAM}
)


def refuse_signed(zone: dns.zone.Zone, source: str | os.PathLike[str]) -> None:
    """
    Refuse a DNSSEC-signed zone: the server does not serve signatures or
    denial-of-existence proofs yet, and a signed zone served without them
    is bogus to every validating resolver once its parent has a DS.

    @raise ZoneError: naming the first signature or NSEC record found.
    """
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            if rdataset.rdtype in _DNSSEC_TYPES:
                kind = dns.rdatatype.to_text(rdataset.rdtype)
                raise ZoneError(
                    f"{source}: {kind} at {name}: DNSSEC-signed zones are not served yet "
                    "(no RRSIG/NSEC in answers); load the unsigned zone"
                )
