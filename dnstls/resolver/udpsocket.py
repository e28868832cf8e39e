# -*- test-case-name: tests.resolver.test_udpsocket -*-
"""
A connected UDP socket for one exchange with one upstream server, read by
the reactor.

C{listenUDP} would do, but Twisted's UDP port writes two log lines for
every socket it opens and closes (C{... starting on N}, C{(UDP Port N
Closed)}): for a resolver, two lines per upstream query.  This is the part
of it an upstream query needs: a socket on a port the kernel picks at
random, connected to the server so that only its datagrams are read and an
ICMP port unreachable is reported, and read by the reactor until closed.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.internet.protocol import DatagramProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

#: The most datagrams one readiness event reads before the reactor moves on.
_READS_PER_EVENT = 16


@implementer(IReadDescriptor)
class ConnectedUDP:
    """
    A UDP socket connected to C{(host, port)}, handing what it receives to
    C{protocol} (C{datagramReceived}, or C{connectionRefused} when the
    server's host says nothing listens there), as Twisted's UDP port does.

    The protocol is started at once (C{startProtocol}) and stopped by
    L{stopListening} (C{stopProtocol}).
    """

    def __init__(
        self, reactor: IReactorFDSet, protocol: DatagramProtocol, host: str, port: int
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        self.socket = sock
        self.address = (host, port)
        self.reactor = reactor
        self.protocol = protocol
        self.closed = False
        reactor.addReader(self)
        try:
            protocol.makeConnection(self)  # type: ignore[arg-type]
        except BaseException:
            # a protocol that fails to start leaves no reader or socket behind
            reactor.removeReader(self)
            self.closed = True
            sock.close()
            raise

    def fileno(self) -> int:
        """
        The socket's descriptor (-1 once closed).
        """
        return self.socket.fileno()

    def logPrefix(self) -> str:
        """
        What the log says the reactor was reading when something fails.
        """
        return "upstream UDP"

    def getHost(self) -> Any:
        """
        The local (address, port) the socket is bound to.
        """
        return self.socket.getsockname()

    def write(self, datagram: bytes) -> None:
        """
        Send C{datagram} to the server; a refusal the host reported for an
        earlier one goes to the protocol.
        """
        if self.closed:
            return
        try:
            self.socket.send(datagram)
        except (BlockingIOError, InterruptedError):
            pass  # dropped, as a full buffer drops datagrams on the way
        except OSError:
            self.protocol.connectionRefused()

    def doRead(self) -> None:
        """
        Hand the datagrams waiting to the protocol, or the host's refusal.
        """
        for _ in range(_READS_PER_EVENT):
            if self.closed:
                return
            try:
                datagram = self.socket.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ECONNREFUSED (ICMP port unreachable) or another ICMP
                # error reported on the connected socket
                self.protocol.connectionRefused()
                return
            self.protocol.datagramReceived(datagram, self.address)

    def stopListening(self) -> None:
        """
        Stop reading, close the socket and stop the protocol.
        """
        if self.closed:
            return
        self.closed = True
        self.reactor.removeReader(self)
        self.socket.close()
        self.protocol.doStop()

    def connectionLost(self, reason: Failure) -> None:
        """
        The reactor let go of the socket: at its shutdown, or (the epoll
        reactor) on an error the host reported, an ICMP port unreachable,
        which goes to the protocol as a refusal before the socket closes.
        """
        if not self.closed and self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.protocol.connectionRefused()
        self.stopListening()
