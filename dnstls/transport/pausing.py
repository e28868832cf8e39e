# -*- test-case-name: tests.transport.test_backlog -*-
"""
A stream connection that stops reading while its replies wait unsent: it
becomes the streaming producer of its transport (the TCP one, or the TLS
layer over it), paused as Twisted pauses one whose consumer's buffer is
full, and so resumed once the client has taken every reply queued.  The
bounds are L{dnstls.transport.backlog}'s; the connection is
L{dnstls.transport.connection.StreamConnection}, of which this is a part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dnstls.context import Transport
from dnstls.transport.directsend import pause_as_full, queued

if TYPE_CHECKING:
    from twisted.internet.tcp import Connection

    from dnstls.transport.stream import DNSStreamFactory


class Pausing:
    """
    The part of a stream connection that pauses its reading.

    @ivar paused: whether reading is paused, replies waiting unsent.
    """

    factory: DNSStreamFactory
    transport: Any
    kind: Transport
    closed: bool
    _closing: bool
    _tcp: Connection | None
    _producing: bool
    paused: bool

    if TYPE_CHECKING:

        def _track_message(self, pending: int, new: bool = False) -> None: ...

        def _unfinished(self) -> int: ...

        def _start_idle(self) -> None: ...

    def _unproduce(self) -> None:
        """
        Be the transport's producer no more (a TLS layer sends its
        close_notify, and a TCP transport closes, only without one).
        """
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()

    def unsent(self) -> int:
        """
        The octets of replies written and not yet taken by the network.
        """
        tcp = self._tcp
        held = queued(tcp) if tcp is not None else 0
        if self.kind is Transport.TLS:
            held += sum(len(b) for b in getattr(self.transport, "_appSendBuffer", ()))
        return held

    def hold(self) -> None:
        """
        Stop reading until everything queued is taken by the network: as
        the transport's streaming producer, paused as Twisted pauses one
        whose consumer's buffer is full, and so resumed once it is empty.
        """
        tcp = self._tcp
        if tcp is None or self.paused or self.closed or self._closing:
            return
        if not self._producing:
            # not before: Twisted would pause it at its own buffer size
            self.transport.registerProducer(self, True)
            self._producing = True
        pause_as_full(tcp)

    def pauseProducing(self) -> None:
        """
        Stop reading: the replies waiting unsent passed the bound.  The I/O
        clock stops (the rest of a message may be waiting, unread), and
        the idle clock becomes the time the client has to read them.
        """
        if self.paused or self.closed:
            return
        self.paused = True
        pause = getattr(self.transport, "pauseProducing", None)
        if pause is not None:
            pause()
        self._track_message(0)
        self._start_idle()

    def resumeProducing(self) -> None:
        """
        Answer the queries waiting, and read again unless they passed the
        bound once more: the client took every reply queued.
        """
        if not self.paused:
            return
        self.paused = False
        self._unproduce()
        self.factory.backlog.drained(self)
        if self.closed or self._closing:
            return
        self._answer_waiting()
        if self.paused or self.closed or self._closing:
            return
        resume = getattr(self.transport, "resumeProducing", None)
        if resume is not None:
            resume()
        self._track_message(self._unfinished(), True)
        self._start_idle()

    def stopProducing(self) -> None:
        """
        The transport is gone; L{connectionLost} follows.
        """

    def _answer_waiting(self) -> None:
        """
        Answer the queries read and left waiting when reading paused.
        """
