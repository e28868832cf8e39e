# -*- test-case-name: tests.transport.test_protocol -*-
"""
One stream connection's life, apart from what it says: Nagle's algorithm
off, the idle and handshake clocks, the keepalive it advertises, writing
framed replies, and closing (gracefully, then by force when the peer does
not let go).  L{dnstls.transport.stream.DNSStreamProtocol} adds the DNS.

Idle means no complete message and no answer owed for C{idle_timeout}
seconds (less while the connection table is under pressure, see
L{dnstls.transport.limits}); partial data does not count.  Once a
message's first octet has come, the rest must come within C{io_timeout}
seconds (Knot DNS's C{tcp-io-timeout}), else the connection is closed: a
sender that trickles does not hold it for the idle timeout.  Nothing is
written after the peer has gone.

Once more replies than its bound wait unsent (L{dnstls.transport.backlog}),
the connection stops reading: it becomes the streaming producer of its
transport (the TCP one, or the TLS layer over it), paused, which Twisted
resumes once the client has taken every reply queued.  The queries not
yet answered wait, those read in the connection and the rest in the
kernel, and are answered then, in order.

The idle clock running out with replies still unread (in Twisted's buffer
or the kernel's: a slow reader, or one reading nothing) closes nothing yet:
the connection stays as long as its client takes some of them every idle
timeout, however slowly it reads, and is aborted once it has taken none
for one (a graceful close would wait for them to be read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dnstls.context import Transport
from dnstls.transport.directsend import nothing_queued, queued, tcp_under, write_now
from dnstls.transport.eviction import Eviction
from dnstls.transport.framing import frame
from dnstls.transport.pausing import Pausing

if TYPE_CHECKING:
    from twisted.internet.tcp import Connection

    from dnstls.transport.stream import DNSStreamFactory

#: Once a message's first octet has come, the rest must within this many
#: seconds.  Knot DNS's C{tcp-io-timeout} is 500 ms; twice that still cuts
#: a trickling sender off ten times sooner than the idle timeout, and lets
#: the segment with the rest of a split message be lost once and sent
#: again (Linux's retransmission timeout is at least 200 ms, doubling).
DEFAULT_IO_TIMEOUT = 1.0


@implementer(IPushProducer)
class StreamConnection(Protocol, Pausing, Eviction):
    """
    The clocks, writes and close of a DNS stream connection.

    @ivar kind: TCP, or TLS (also once a TCP/53 connection is upgraded).
    @ivar idle_timeout: this connection's idle timeout, in seconds.
    @ivar io_timeout: how long the rest of a message may take once its
        first octet has come, in seconds.
    @ivar paused: whether reading is paused, replies waiting unsent.
    @ivar closed: whether the connection is gone.
    """

    log = Logger()

    def __init__(self, factory: DNSStreamFactory, peer: tuple[str, int]) -> None:
        self.factory: DNSStreamFactory = factory
        self.peer = peer
        #: the socket under a clear-text TCP transport, for direct sends
        self._socket: Any = None
        self._idle: IDelayedCall | None = None
        self._abort: IDelayedCall | None = None
        self._handshake: IDelayedCall | None = None
        #: the I/O clock of the message under way
        self._io: IDelayedCall | None = None
        #: the TCP connection whose buffer holds the unsent replies
        self._tcp: Connection | None = None
        self._producing = False
        self.paused = False
        self._stall_mark: int | None = None
        self.io_timeout = factory.io_timeout
        self.kind = factory.transport_kind
        hooks = factory.hooks
        override = hooks.idle_timeout() if hooks is not None else None
        self.idle_timeout = override or factory.idle_timeout
        self._answered = 0
        self._owed = 0
        self._closing = False
        self.closed = False

    def connectionMade(self) -> None:
        """
        Turn Nagle's algorithm off and start the idle clock.
        """
        if self.kind is Transport.TCP and nothing_queued(self.transport):
            self._socket = getattr(self.transport, "socket", None)
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass
        self.factory.opened(self)
        self._tcp = tcp_under(self.transport)
        if self.kind is Transport.TLS:
            self._start_handshake_clock()
        self._start_idle()

    def _start_handshake_clock(self) -> None:
        self._handshake = self.factory.clock.callLater(
            self.factory.handshake_timeout, self._handshake_expired
        )

    def _handshake_expired(self) -> None:
        self._handshake = None
        self.log.debug("dropping {peer}: no TLS handshake in time", peer=self.peer)
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None and not self.closed:
            abort()

    def _unfinished(self) -> int:
        """
        The octets of a message under way, received and not yet whole.
        """
        return 0

    def _track_message(self, pending: int, new: bool = False) -> None:
        """
        Run the I/O clock while a message is under way: C{pending} octets
        of it have come; C{new} when it began in the read just handled (a
        message before it ended there), so that its clock starts again.
        """
        io = self._io
        if pending and not self.paused and not self.closed and not self._closing:
            if io is None:
                self._io = self.factory.clock.callLater(self.io_timeout, self._io_expired)
            elif new:
                io.reset(self.io_timeout)
        elif io is not None:
            if io.active():
                io.cancel()
            self._io = None

    def _io_expired(self) -> None:
        self._io = None
        self.log.debug("closing stream from {peer}: a message took too long", peer=self.peer)
        self._close()

    def keepalive(self, idle_timeout: float | None = None) -> int:
        """
        The edns-tcp-keepalive value to send now, in units of 100 ms: this
        connection's idle timeout (or C{idle_timeout}) as the table's
        pressure shortens it, or 0 when the server is near its cap; the
        limits learn what it was told.
        """
        hooks = self.factory.hooks
        limits = self.factory.limits
        if limits.busy or (hooks is not None and hooks.keepalive_zero()):
            value = 0
        else:
            timeout = limits.idle_timeout(self.idle_timeout if idle_timeout is None else idle_timeout)
            value = min(0xFFFF, int(timeout * 10))
        limits.told(self, value)
        return value

    def _send(self, reply: bytes) -> None:
        """
        Write one framed reply in one call, unless the peer is gone or we
        are closing.
        """
        transport = self.transport
        if self.closed or transport is None or getattr(transport, "disconnecting", False):
            return
        try:
            framed = frame(reply)
        except ValueError:
            self.log.failure("framing a {size}-octet reply to {peer}", size=len(reply), peer=self.peer)
            return
        self._write(framed)
        self._answered += 1
        hooks = self.factory.hooks
        if hooks is not None:
            close_after = hooks.close_after()
            if close_after and self._answered >= close_after:
                self._close()

    def _send_all(self, replies: list[bytes]) -> None:
        """
        Write framed replies in one call, unless the peer is gone or we are
        closing.
        """
        if len(replies) == 1:
            self._send(replies[0])
            return
        transport = self.transport
        if self.closed or transport is None or getattr(transport, "disconnecting", False):
            return
        framed: list[bytes] = []
        for reply in replies:
            try:
                framed.append(frame(reply))
            except ValueError:
                self.log.failure(
                    "framing a {size}-octet reply to {peer}", size=len(reply), peer=self.peer
                )
        self._write(b"".join(framed))
        self._answered += len(framed)

    def _write(self, data: bytes) -> None:
        """
        Hand C{data} to the transport; on a clear-text TCP connection with
        nothing queued, its socket is offered it first (L{write_now}).
        """
        transport = self.transport
        assert transport is not None
        mark = self._stall_mark
        if mark is not None:
            # an answer owed comes while paused: what it adds to the
            # replies unread is no sign of a stall (L{Pausing.stalled})
            mark -= self.unsent()
        if self.kind is Transport.TCP:
            write_now(transport, self._socket, data)
        else:
            transport.write(data)
        if mark is not None and self._stall_mark is not None:
            self._stall_mark = mark + self.unsent()
        tcp = self._tcp
        if tcp is not None:
            held = queued(tcp)
            if held:
                backlog = self.factory.backlog
                backlog.wrote(self, held)
                if held > backlog.per_connection:
                    self.hold()

    def _paid(self) -> None:
        """
        One owed answer is settled; once none is owed the idle clock runs.
        """
        self._owed -= 1
        if self._owed == 0:
            self._start_idle()

    def _start_idle(self) -> None:
        """
        (Re)start the idle clock, which runs only while no answer is owed.
        """
        idle = self._idle
        if not self.paused:
            self._stall_mark = None
        self.factory.limits.active(self)
        if self._owed == 0 and not self.closed and not self._closing:
            timeout = self._timeout_now()
            # moving a pending call later costs a subtraction; a new one a
            # heap insertion and the old one's removal
            if idle is not None and idle.active():
                idle.reset(timeout)
            else:
                self._idle = self.factory.clock.callLater(timeout, self._expire)
        elif idle is not None:
            if idle.active():
                idle.cancel()
            self._idle = None

    def _expire(self) -> None:
        self._idle = None
        if self._owed:
            return
        left = self.unread()
        if left or self.paused:
            if self.stalled(left):
                # a graceful close would wait for the replies to be read
                self.log.debug(
                    "aborting stream from {peer}: {unread} octets of replies unread",
                    peer=self.peer, unread=left,
                )
                self._force_close()
            return
        self.log.debug("closing idle stream from {peer}", peer=self.peer)
        self._close()

    def _close(self) -> None:
        """
        Close gracefully (flushing what is written, and a TLS close_notify),
        and abort if the peer has not let go one idle timeout later:
        a peer that never reads would otherwise hold the connection forever.
        """
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self.transport is None or self.closed or self._closing:
            return
        self._closing = True
        self._track_message(0)
        self._unproduce()
        self._abort = self.factory.clock.callLater(self._timeout_now(), self._force_close)
        self.transport.loseConnection()

    def _force_close(self) -> None:
        self._abort = None
        abort = getattr(self.transport, "abortConnection", None)
        if not self.closed and abort is not None:
            self.log.debug("aborting stream from {peer}: it did not close", peer=self.peer)
            abort()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Stop the clock and forget the connection; nothing is written after.
        """
        if self.closed:
            return
        self.closed = True
        for call in (self._idle, self._abort, self._handshake, self._io):
            if call is not None and call.active():
                call.cancel()
        self._idle = self._abort = self._handshake = self._io = None
        self._producing = False
        self.factory.backlog.drained(self)
        self.factory.closed(self)
