# -*- test-case-name: tests.transport.test_fastpath -*-
"""
DNS over UDP: one datagram in, at most one datagram back to its sender.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnstls.context import Answerer, QueryContext, Transport
from dnstls.transport.fastpath import FastAnswerer
from dnstls.transport.hooks import ServerHooks


class DNSDatagramProtocol(DatagramProtocol):
    """
    DNS over UDP: one datagram in, at most one datagram back to its sender.

    With a L{FastAnswerer} and no hooks, a question asked before is
    answered from its cache without building a L{QueryContext}, and replies
    go straight to the socket's C{sendto} (a reply the kernel has no room
    for is dropped, as the network may drop it).  With L{ServerHooks}, every
    query goes through them, and they through the handler (its cache
    included).
    """

    log = Logger()
    noisy = False

    def __init__(self, handler: Answerer, hooks: ServerHooks | None = None) -> None:
        self.handler = handler
        self.hooks = hooks
        fast = handler if isinstance(handler, FastAnswerer) else None
        self._fast = fast if hooks is None else None
        self._sendto: Callable[[bytes, Any], object] | None = None

    def startProtocol(self) -> None:
        """
        Find the socket's C{sendto}, when the transport has a socket.
        """
        sock = getattr(self.transport, "socket", None)
        self._sendto = getattr(sock, "sendto", None)

    def stopProtocol(self) -> None:
        """
        Forget the socket.
        """
        self._sendto = None

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """
        Answer one query, now or when its Deferred fires; a failure is
        logged and the datagram dropped.
        """
        fast = self._fast
        if fast is not None:
            shape = fast.udp_shape(addr[0])
            reply = fast.cached(datagram, shape)
            if reply is not None:
                self._send(reply, addr)
                return
        context = QueryContext(Transport.UDP, (addr[0], addr[1]))
        try:
            if fast is not None:
                answer = fast.missed(datagram, context, shape)
            elif self.hooks is not None:
                answer = self.hooks.query(datagram, context, self.handler)
            else:
                answer = self.handler.handle(datagram, context)
        except Exception:
            self.log.failure("answering a UDP query from {peer}", peer=addr)
            return
        if isinstance(answer, Deferred):
            answer.addCallback(self._send, addr)
            answer.addErrback(self._failed, addr)
        else:
            self._send(answer, addr)

    def _send(self, reply: bytes | None, addr: Any) -> None:
        if reply is None or self.transport is None:
            return
        sendto = self._sendto
        try:
            if sendto is not None:
                sendto(reply, addr)
            else:
                self.transport.write(reply, addr)
        except BlockingIOError:
            pass
        except Exception:
            self.log.failure("answering a UDP query from {peer}", peer=addr)

    def _failed(self, failure: Failure, addr: Any) -> None:
        self.log.failure("answering a UDP query from {peer}", failure, peer=addr)
