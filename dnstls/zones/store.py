# -*- test-case-name: tests.zones.test_authority -*-
"""
The zones served, as the handler sees them: a name routed to the zone with
the longest matching origin, and the origins of zones that failed to load.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import dns.name
import dns.rdatatype

from dnstls.zones.authority import AuthoritativeZone, key

DS = dns.rdatatype.DS


class ZoneStore:
    """
    The zones we are authoritative for, routed by longest matching origin.
    """

    def __init__(
        self, zones: Iterable[AuthoritativeZone] = (), unavailable: Iterable[dns.name.Name] = ()
    ) -> None:
        """
        @param unavailable: the origins of zones we are configured for but
            cannot serve (their files failed to load): see L{unavailable}.
        """
        self._zones: dict[dns.name.Name, AuthoritativeZone] = {}
        #: origins by key (see L{dnstls.zones.authority.key}); C{None} for
        #: an unavailable one
        self.keys: dict[bytes, AuthoritativeZone | None] = {}
        for zone in zones:
            self.add(zone)
        self._unavailable = frozenset(unavailable) - self._zones.keys()
        for origin in self._unavailable:
            self.keys[key(origin)] = None

    def add(self, zone: AuthoritativeZone) -> None:
        """
        Serve C{zone}, replacing any zone with the same origin.
        """
        self._zones[zone.origin] = zone
        self.keys[zone.apex_key] = zone

    def route(self, qkey: bytes, starts: list[int]) -> tuple[AuthoritativeZone, int] | None:
        """
        L{find} for a name by its key (see L{dnstls.zones.authority.key})
        and the offsets of its labels, root last: the zone with the longest
        origin that contains it, and how many of its labels are below that
        origin; C{None} for a name outside our zones or in one that is
        unavailable.  No DS rule: the caller asks for no DS.
        """
        keys = self.keys
        for index, start in enumerate(starts):
            suffix = qkey[start:] if start else qkey
            if suffix in keys:
                zone = keys[suffix]
                return (zone, index) if zone is not None else None
        return None

    def __len__(self) -> int:
        return len(self._zones)

    def __iter__(self) -> Iterator[AuthoritativeZone]:
        return iter(self._zones.values())

    def unavailable(self, qname: dns.name.Name, qtype: int) -> dns.name.Name | None:
        """
        The origin of the zone that should answer C{qname} but failed to
        load, when that zone is closer to C{qname} than any zone we serve:
        its names get SERVFAIL, as from Knot DNS, rather than another
        zone's answer or an upstream's.  A DS question at its apex belongs
        to the parent side.
        """
        if not self._unavailable:
            return None
        name = qname.parent() if qtype == DS and qname != dns.name.root else qname
        while True:
            if name in self._zones:
                return None
            if name in self._unavailable:
                return name
            if name == dns.name.root:
                return None
            name = name.parent()

    def find(self, qname: dns.name.Name, qtype: int) -> AuthoritativeZone | None:
        """
        The zone that answers C{qname}: the one with the longest origin that
        contains it.  A DS question at a zone's apex goes to its parent zone
        when we have that too, since DS lives on the parent side of a cut.
        """
        name = qname
        zone = None
        while True:
            zone = self._zones.get(name)
            if zone is not None:
                break
            if name == dns.name.root:
                return None
            name = name.parent()
        if qtype == DS and name == qname and name != dns.name.root:
            parent = self.find(name.parent(), dns.rdatatype.A)
            if parent is not None:
                return parent
        return zone
