# -*- test-case-name: tests.test_handler -*-
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
import dns.rrset

_IDENTITY_NAMES = frozenset(dns.name.from_text(n) for n in ("id.server.", "hostname.bind."))
_VERSION_NAMES = frozenset(dns.name.from_text(n) for n in ("version.server.", "version.bind."))


class Chaos:
    """
    Answers for the CHAOS identity names.

    @ivar identity: the text for C{id.server} and C{hostname.bind}, or
        C{None} to refuse them.
    @ivar version: the text for C{version.server} and C{version.bind}, or
        C{None} to refuse them.
    """

    def __init__(self, identity: str | None = None, version: str | None = None) -> None:
        self.identity = identity
        self.version = version

    def answer(self, qname: dns.name.Name, qtype: int) -> dns.rrset.RRset | None:
        """
        The TXT RRset answering C{qname}/C{qtype} in class CH, or C{None}
        when the question must be refused.
        """
        if qtype not in (dns.rdatatype.TXT, dns.rdatatype.ANY):
            return None
        if qname in _IDENTITY_NAMES:
            text = self.identity
        elif qname in _VERSION_NAMES:
            text = self.version
        else:
            return None
        if not text:
            return None
        quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return dns.rrset.from_text(qname, 0, dns.rdataclass.CH, dns.rdatatype.TXT, quoted)
