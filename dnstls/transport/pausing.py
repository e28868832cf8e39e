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

import fcntl
import struct
import termios
from typing import TYPE_CHECKING, Any

from dnstls.context import Transport
from dnstls.transport.directsend import pause_as_full, queued

if TYPE_CHECKING:
    from twisted.internet.tcp import Connection

    from dnstls.transport.stream import DNSStreamFactory


#: The least a client must take of its replies unread each idle timeout
#: (or all of them, if fewer are left) to keep its connection: more than
#: the room a client that reads nothing may still find in its kernel's
#: receive buffer, and so a reader of 1.6 kB/s under a 10 s idle timeout.
MIN_PROGRESS = 16384

#: The C{ioctl} that tells what a socket's send queue holds (Linux's
#: C{SIOCOUTQ}).
_OUTQ: int = getattr(termios, "TIOCOUTQ", 0x5411)


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
    #: what was unread when the idle clock last ran out with replies
    #: unread, or reading paused; C{None} once it starts again for
    #: anything else
    _stall_mark: int | None

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

    def unread(self) -> int:
        """
        The octets of replies written that the client has not taken yet:
        those L{unsent}, and those in the kernel's send queue (sent and not
        acknowledged, or not sent); one C{ioctl}, asked only when the idle
        clock runs out.
        """
        held = self.unsent()
        tcp = self._tcp
        sock = getattr(tcp, "socket", None) if tcp is not None else None
        if sock is not None:
            try:
                raw = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
                held += struct.unpack("i", raw)[0]
            except (OSError, ValueError):
                pass
        return held

    def stalled(self, left: int) -> bool:
        """
        Whether the client has taken less than L{MIN_PROGRESS} of its
        replies (unless that was all) since the idle clock last ran out
        with replies unread, or since reading paused; C{left} octets are
        L{unread} now, as the clock runs out again.  If it has taken that
        much, or this is the first time, the clock starts again from what
        is left: a client that reads, however slowly, keeps its
        connection; one that reads nothing is aborted
        (L{dnstls.transport.connection}).
        """
        mark = self._stall_mark
        if mark is not None and left > max(0, mark - MIN_PROGRESS):
            return True
        self._start_idle()
        self._stall_mark = left
        return False

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
        self._stall_mark = self.unread()

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
