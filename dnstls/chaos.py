# -*- test-case-name: tests.test_chaos -*-
"""
The CHAOS-class identity names of RFC 4892: C{id.server}, C{hostname.bind},
C{version.server} and C{version.bind}.

By default they reveal nothing: the server answers REFUSED, as Knot DNS
does when no identity is configured.  An operator may set an identity
(C{--identity}) and a version string (C{--version-string}).
"""

from __future__ import annotations

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

_IDENTITY_NAMES = frozenset(dns.name.from_text(n) for n in ("id.server.", "hostname.bind."))
_VERSION_NAMES = frozenset(dns.name.from_text(n) for n in ("version.server.", "version.bind."))


class Chaos:
    """
    Answers for the CHAOS identity names.

    @ivar identity: the text for C{id.server} and C{hostname.bind}, or
        C{None} (or empty) to refuse them.
    @ivar version: the text for C{version.server} and C{version.bind}, or
        C{None} (or empty) to refuse them.
    """

    def __init__(self, identity: str | None = None, version: str | None = None) -> None:
        self.identity = identity
        self.version = version
        # Built once, so that any text an operator gives is served: no
        # quoting to get wrong, and text longer than one TXT string (255
        # octets) split over several.
        self._identity = _txt(identity)
        self._version = _txt(version)

    def answer(self, qname: dns.name.Name, qtype: int) -> dns.rrset.RRset | None:
        """
        The TXT RRset answering C{qname}/C{qtype} in class CH, or C{None}
        when the question must be refused.
        """
        if qtype not in (dns.rdatatype.TXT, dns.rdatatype.ANY):
            return None
        if qname in _IDENTITY_NAMES:
            rdata = self._identity
        elif qname in _VERSION_NAMES:
            rdata = self._version
        else:
            return None
        if rdata is None:
            return None
        rrset = dns.rrset.RRset(qname, dns.rdataclass.CH, dns.rdatatype.TXT)
        rrset.add(rdata, 0)
        return rrset


def _txt(text: str | None) -> dns.rdtypes.ANY.TXT.TXT | None:
    """
    A CH TXT record holding C{text} as UTF-8, in strings of at most 255
    octets; C{None} for no text.
    """
    if not text:
        return None
    data = text.encode("utf-8", "surrogateescape")
    strings = [data[i : i + 255] for i in range(0, len(data), 255)]
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.CH, dns.rdatatype.TXT, strings)
