"""
The zones: zone files loaded and checked (L{dnstls.zones.zonefile}), and the
zone store with the RFC 1034 section 4.3.2 lookup
(L{dnstls.zones.authority}).
"""
