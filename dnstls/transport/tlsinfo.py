# -*- test-case-name: tests.testing.test_testing -*-
"""
What a TLS session negotiated (SNI name, ALPN protocol, resumption,
version), read from the pyOpenSSL connection under a transport; a query's
L{dnstls.handler.QueryContext} may carry it.
"""

from __future__ import annotations

from dataclasses import dataclass

from OpenSSL import SSL
from OpenSSL._util import lib as _lib


@dataclass(frozen=True)
class TLSInfo:
    """
    What a TLS session negotiated.
    """

    sni: str | None
    alpn: str | None
    resumed: bool
    version: str | None


def negotiated(transport: object) -> TLSInfo | None:
    """
    What the TLS session under C{transport} negotiated, read from its
    pyOpenSSL connection; C{None} if it has none.
    """
    get_handle = getattr(transport, "getHandle", None)
    connection = get_handle() if get_handle is not None else None
    if not isinstance(connection, SSL.Connection):
        return None
    sni = connection.get_servername()
    alpn = connection.get_alpn_proto_negotiated()
    return TLSInfo(
        sni=sni.decode("ascii", "replace") if sni else None,
        alpn=alpn.decode("ascii", "replace") if alpn else None,
        resumed=bool(_lib.SSL_session_reused(connection._ssl)),
        version=connection.get_protocol_version_name(),
    )
