# -*- test-case-name: tests.test_handler -*-
"""
What every listener and the handler share about one query: the transport it
came on (L{Transport}), where it came from and what the connection allows
(L{QueryContext}), the size limits of each transport, and the interface a
listener hands queries to (L{Answerer}).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import Deferred

from dnstls.transport.tlsinfo import TLSInfo

#: The EDNS UDP payload size we advertise and never exceed (DNS flag day 2020).
UDP_PAYLOAD = 1232
#: The classic UDP limit without EDNS (RFC 1035 4.2.1).
UDP_CLASSIC = 512
#: The largest message a two-octet length can frame.
STREAM_LIMIT = 0xFFFF
#: RFC 8467 section 4.1: pad responses to a multiple of 468 octets.
RESPONSE_PADDING = 468


class Transport(enum.Enum):
    """
    The protocol a query came in on, which decides size limits and what a
    reply may carry.
    """

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"

    @property
    def is_stream(self) -> bool:
        """
        Whether messages travel length-prefixed on a connection.
        """
        return self is not Transport.UDP


@dataclass(frozen=True)
class QueryContext:
    """
    Where a query came from.

    @ivar transport: the protocol it arrived on.
    @ivar peer: the client's address and port.
    @ivar keepalive: on a stream, the idle timeout the connection has now,
        in units of 100 ms, for the edns-tcp-keepalive option (RFC 7828); 0
        asks the client to close.  C{None} sends no keepalive.
    @ivar upgrade: this is the first query of a TCP/53 connection that will
        be upgraded to TLS once the reply is sent: the reply carries TO=1
        (see L{dnstls.transport.upgrade}).
    @ivar upgraded: the connection was upgraded from TCP/53 to TLS.
    @ivar padding: whether a TLS reply may be padded (a test fault turns it
        off).
    @ivar tls: what the TLS session negotiated, once known.
    """

    transport: Transport
    peer: tuple[str, int]
    keepalive: int | None = None
    upgrade: bool = False
    upgraded: bool = False
    padding: bool = True
    tls: TLSInfo | None = None


class Answerer(Protocol):
    """
    What a listener hands queries to: the L{Handler}, or a wrapper of it.
    """

    def handle(self, wire: bytes, context: QueryContext) -> bytes | None | Deferred[bytes | None]:
        """
        The reply to C{wire}, now or later, or C{None} for no reply.
        """
