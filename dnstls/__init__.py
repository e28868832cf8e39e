"""
dnstls: an authoritative DNS server for Twisted that answers plain DNS on UDP
and TCP, DNS over TLS (RFC 7858) and the TO-bit STARTTLS upgrade.

Run it with C{twistd -n dnstls}; embed it with L{dnstls.tap.makeService}.
"""

from dnstls.errors import DNSTLSError, StartupError, ZoneError

__all__ = ["DNSTLSError", "StartupError", "ZoneError"]
