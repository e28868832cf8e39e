# -*- test-case-name: tests.transport.test_protocol -*-
"""
The default timeouts of stream connections and the caps on how many are
open at once, shared by every stream listener (TCP and TLS alike).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dnstls.transport.connection import StreamConnection

#: RFC 7766 6.2.3 asks for an idle timeout "on the order of seconds"; Knot
#: DNS and RFC-draft authoritative advice use 10.
DEFAULT_IDLE_TIMEOUT = 10.0
#: DNS over TLS keeps idle sessions longer (RFC 7858 3.4; Unbound uses 30).
DEFAULT_TLS_IDLE_TIMEOUT = 30.0
#: A TLS client must finish its handshake within this many seconds.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Connections one client address may hold at once.
DEFAULT_MAX_PER_CLIENT = 32
#: Above this share of the connection cap, keepalive tells clients 0.
_BUSY_SHARE = 0.9


class ConnectionLimits:
    """
    The caps on open connections, shared by every stream listener (TCP and
    TLS alike): a total, and a share per client address.

    @ivar connections: the open connections.
    """

    def __init__(self, total: int = 1000, per_client: int = DEFAULT_MAX_PER_CLIENT) -> None:
        self.total = total
        self.per_client = per_client
        self.connections: set[StreamConnection] = set()
        self._by_client: Counter[str] = Counter()

    def refusal(self, host: str) -> str | None:
        """
        Why a new connection from C{host} must be refused, or C{None}.
        """
        if len(self.connections) >= self.total:
            return f"{len(self.connections)} connections open"
        if self._by_client[host] >= self.per_client:
            return f"{self._by_client[host]} connections from {host}"
        return None

    def opened(self, protocol: StreamConnection) -> None:
        """
        Count a connection that has started.
        """
        self.connections.add(protocol)
        self._by_client[protocol.peer[0]] += 1

    def closed(self, protocol: StreamConnection) -> None:
        """
        Forget a connection that has ended.
        """
        if protocol in self.connections:
            self.connections.discard(protocol)
            host = protocol.peer[0]
            self._by_client[host] -= 1
            if self._by_client[host] <= 0:
                del self._by_client[host]

    @property
    def busy(self) -> bool:
        """
        Whether the server is near its cap, so clients should close idle
        connections (RFC 7828 3.3.2: keepalive 0).
        """
        return len(self.connections) >= self.total * _BUSY_SHARE
