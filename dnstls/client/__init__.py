"""
The client: one question over udp, tcp, tls or starttls (L{Client}), and the
C{dnstls-query} command (L{dnstls.client.query}).
"""

from dnstls.client.stub import (
    REMEMBER_DECLINE,
    TRANSPORTS,
    AuthenticationFailed,
    Client,
    ClientError,
    DeclineMemory,
    HandshakeFailed,
    TLSAuth,
    UpgradeDeclined,
    probe_query,
)

__all__ = [
    "REMEMBER_DECLINE",
    "TRANSPORTS",
    "AuthenticationFailed",
    "Client",
    "ClientError",
    "DeclineMemory",
    "HandshakeFailed",
    "TLSAuth",
    "UpgradeDeclined",
    "probe_query",
]
