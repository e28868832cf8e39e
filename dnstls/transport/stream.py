# -*- test-case-name: tests.transport.test_protocol -*-
"""
DNS over a byte stream, TCP on port 53 or the inside of a TLS session: it
frames bytes, enforces limits and hands each whole message to the
L{Handler}; it never decides an answer.

It follows RFC 7766: it reassembles messages from any split, answers
pipelined queries as each answer is ready, writes the length and the
message in one call, closes a connection that sends a length below 12, and
closes an idle one (L{dnstls.transport.connection}).  A handler that raises
or fails is logged; nothing reaches the reactor.

Inside TLS it also drops a client that has not finished its handshake
within C{handshake_timeout} seconds.  On TCP/53 its L{StartTLS} carries out
the TO-bit upgrade (L{dnstls.transport.starttls}): the first query decides,
its reply goes out in clear text, every clear-text byte after it is
dropped, and the connection then behaves as one on the TLS port, on the
same TLS layer.  Every reply on a stream learns the connection's current
idle timeout, for edns-tcp-keepalive (RFC 7828): 0 once the server is near
its connection cap.

With L{ServerHooks} (the test kit), every query goes through them and every
reply is written by itself; without (production), the reply cache is asked
first and the replies ready at once are written together.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IHandshakeListener, IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dnstls.context import Answerer, QueryContext, Transport
from dnstls.transport.backlog import Backlog
from dnstls.transport.connection import DEFAULT_IO_TIMEOUT, StreamConnection
from dnstls.transport.fastpath import FastAnswerer, Shape
from dnstls.transport.framing import FrameDecoder, FramingError
from dnstls.transport.hooks import ServerHooks
from dnstls.transport.limits import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    ConnectionLimits,
)
from dnstls.transport.starttls import Event, StartTLS, State, layer_factory
from dnstls.transport.tls import TLSServerFactory
from dnstls.transport.tlsinfo import TLSInfo
from dnstls.transport.upgrade import Upgrade, UpgradePolicy


@implementer(IHandshakeListener)
class DNSStreamProtocol(StreamConnection):
    """
    DNS over a byte stream: TCP on port 53, or the inside of a TLS session.
    """

    def __init__(self, factory: DNSStreamFactory, peer: tuple[str, int]) -> None:
        super().__init__(factory, peer)
        self._decoder = FrameDecoder()
        #: this connection's shape for the L{FastAnswerer}, while it holds
        self._shape: Shape | None = None
        self._upgraded = False
        self._tls: TLSInfo | None = None
        #: the queries read and not yet answered when reading paused
        self._waiting: list[bytes] | None = None
        upgrade, layers = factory.upgrade, factory.upgrade_layers
        #: the upgrade of a TCP/53 connection, when its listener may upgrade
        self.starttls = (
            StartTLS(self, upgrade, layers)
            if upgrade is not None and layers is not None and upgrade.policy is not UpgradePolicy.OFF
            else None
        )

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake is done: stop its clock, and tell the upgrade and
        the hooks.
        """
        if self._handshake is not None and self._handshake.active():
            self._handshake.cancel()
        self._handshake = None
        if self.starttls is not None:
            self.starttls.handshake_done()
        hooks = self.factory.hooks
        if hooks is not None:
            self._tls = hooks.handshake_done(self.transport)

    def _handshake_expired(self) -> None:
        """
        No handshake in time: the upgrade failed, if this is one; dropped.
        """
        if self.starttls is not None:
            self.starttls.handshake_expired()
        super()._handshake_expired()

    def _close(self) -> None:
        """
        Close, and nothing more is answered (the upgrade is closing).
        """
        if self.starttls is not None:
            self.starttls.fire(Event.CLOSE)
        super()._close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Stop the clocks, forget the connection, and end the upgrade.
        """
        if self.starttls is not None:
            self.starttls.lost()
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        """
        Answer every message C{data} completes; a bad length closes the
        connection after answering the messages before it, so that the
        answers do not depend on how the network split the stream.  Until a
        TCP/53 connection that may be upgraded is clear or TLS for good,
        its upgrade sees each read first.
        """
        starttls = self.starttls
        if starttls is not None and starttls.gated and starttls.discards():
            return
        try:
            messages = self._decoder.feed(data)
            broken: FramingError | None = None
        except FramingError as e:
            messages, broken = e.messages, e
        self._track_message(self._decoder.pending, bool(messages))
        if self._waiting is not None:
            # the queries left waiting are answered first
            self._waiting += messages
            messages = []
        if messages and not self.closed and not self._answer(messages):
            return
        if broken is not None:
            self.log.debug("closing stream from {peer}: {reason}", peer=self.peer, reason=broken)
            self._close()

    def _unfinished(self) -> int:
        """
        The octets of a message under way, received and not yet whole.
        """
        return self._decoder.pending

    def _answer(self, messages: list[bytes]) -> bool:
        """
        Answer C{messages}: all together (L{_answer_all}), or one by one
        (L{_answer_each}) while the hooks have their say or the upgrade
        waits for a connection's first query.

        @return: whether the connection goes on as a clear-text stream.
        """
        starttls = self.starttls
        if self.factory.hooks is None and (starttls is None or not starttls.gated):
            self._answer_all(messages)
            return True
        return self._answer_each(messages)

    def _answer_all(self, messages: list[bytes]) -> None:
        """
        Answer C{messages}, with the replies ready at once written together
        in one call, each whole with its length before it; the cache of a
        L{FastAnswerer} is asked first, with one shape for them all.
        """
        replies: list[bytes] = []
        fast = self.factory.fast
        shape: Shape | None = None
        cached = None
        if fast is not None:
            keepalive = self.keepalive()
            shape = self._shape
            if shape is None or shape[2] != keepalive:
                shape = self._shape = fast.stream_shape(
                    self.kind, self.peer[0], keepalive, True, self._upgraded
                )
            cached = fast.cached
        bound = self.factory.backlog.per_connection
        size = 0
        for index, message in enumerate(messages):
            reply = cached(message, shape) if cached is not None and shape is not None else None
            if reply is None:
                reply = self._reply(message, shape)
            if reply is not None:
                replies.append(reply)
                size += len(reply)
                if size > bound:
                    # a read's worth of queries may have answers many
                    # times the bound: written a bound at a time, and the
                    # rest left for later once reading pauses
                    self._send_all(replies)
                    replies, size = [], 0
                    if self.paused:
                        self._waiting = messages[index + 1 :]
                        break
        if replies:
            self._send_all(replies)
        self._start_idle()

    def _answer_waiting(self) -> None:
        """
        Answer the queries read and left waiting when reading paused.
        """
        waiting = self._waiting
        if waiting is not None:
            self._waiting = None
            self._answer(waiting)

    def _answer_each(self, messages: list[bytes]) -> bool:
        """
        Answer C{messages} one by one, deciding the upgrade on the first
        query of a TCP/53 connection and letting the hooks have their say.
        Once the replies written pass the connection's bound, reading
        pauses and the rest wait to be answered on resume, as on the fast
        path (L{_answer_all}); replies the hooks hold back to reverse are
        written together at the end.

        @return: whether the connection goes on as a clear-text stream
            (C{False} once it is being upgraded or is closed).
        """
        hooks = self.factory.hooks
        held: list[bytes] | None = [] if hooks and hooks.reverse() and len(messages) > 1 else None
        for index, message in enumerate(messages):
            if self.closed:
                return False
            self._start_idle()
            starttls = self.starttls
            if starttls is not None and starttls.state is State.FIRST_QUERY:
                if starttls.first_query(message):
                    # granted: what the client sent after its first query
                    # is clear text it had no right to send, never answered
                    return False
            reply = self._reply(message)
            if reply is not None:
                if held is not None:
                    held.append(reply)
                else:
                    self._send(reply)
                    if self.paused:
                        self._waiting = messages[index + 1 :]
                        break
        for reply in reversed(held or []):
            self._send(reply)
        return True

    def _context(self, upgrade: bool = False) -> QueryContext:
        """
        The context of a query on this connection now; for the query that
        upgrades it, a clear-text TCP one whose keepalive is the idle
        timeout the connection has from its reply on.
        """
        hooks = self.factory.hooks
        return QueryContext(
            Transport.TCP if upgrade else self.kind,
            self.peer,
            self.keepalive(self.starttls.idle_timeout() if self.starttls and upgrade else None),
            upgrade=upgrade,
            upgraded=self._upgraded,
            padding=hooks is None or hooks.padding(),
            tls=self._tls,
        )

    def _handle(self, message: bytes, context: QueryContext) -> bytes | None | Deferred[bytes | None]:
        """
        The answerer's reply to one message, through the hooks if any.
        """
        hooks = self.factory.hooks
        if hooks is not None:
            return hooks.query(message, context, self.factory.handler)
        return self.factory.handler.handle(message, context)

    def _reply(self, message: bytes, missed: Shape | None = None) -> bytes | None:
        """
        The reply to one message if it is ready now; a later one is sent
        when its Deferred fires.  A failure is logged and the connection
        goes on.

        @param missed: the shape the reply cache was just asked in for
            C{message}, and did not hold it: not asked again.
        """
        context = self._context()
        try:
            reply: bytes | None | Deferred[bytes | None]
            fast = self.factory.fast
            if missed is not None and fast is not None:
                reply = fast.missed(message, context, missed)
            else:
                reply = self._handle(message, context)
        except Exception:
            self.log.failure("answering a stream query from {peer}", peer=self.peer)
            return None
        if isinstance(reply, Deferred):
            self._owed += 1
            reply.addCallbacks(self._send_owed, self._failed)
            return None
        return reply

    def _send_owed(self, reply: bytes | None) -> None:
        self._paid()
        if reply is not None:
            self._send(reply)

    def _failed(self, failure: Failure) -> None:
        self._paid()
        self.log.failure("answering a stream query from {peer}", failure, peer=self.peer)


class DNSStreamFactory(Factory):
    """
    Builds L{DNSStreamProtocol}s within the L{ConnectionLimits}, their
    unsent replies within the L{Backlog}.
    """

    log = Logger()
    noisy = False

    def __init__(
        self,
        handler: Answerer,
        clock: IReactorTime,
        transport_kind: Transport = Transport.TCP,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        limits: ConnectionLimits | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        upgrade: Upgrade | None = None,
        hooks: ServerHooks | None = None,
        io_timeout: float = DEFAULT_IO_TIMEOUT,
        backlog: Backlog | None = None,
    ) -> None:
        self.handler = handler
        #: the handler's cache, asked first when there are no hooks
        self.fast = handler if isinstance(handler, FastAnswerer) else None
        self.clock = clock
        self.transport_kind = transport_kind
        self.idle_timeout = idle_timeout
        self.limits = limits if limits is not None else ConnectionLimits()
        self.handshake_timeout = handshake_timeout
        self.io_timeout = io_timeout
        self.backlog = backlog if backlog is not None else Backlog()
        self.upgrade = upgrade
        #: builds the TLS layers of upgraded connections
        self.upgrade_layers: TLSServerFactory | None = (
            layer_factory(upgrade, self, clock) if upgrade is not None else None
        )
        self.hooks = hooks

    @property
    def connections(self) -> set[StreamConnection]:
        """
        The open connections, on this listener and the others that share
        its limits.
        """
        return self.limits.connections

    def opened(self, protocol: StreamConnection) -> None:
        """
        Count a connection that has started.
        """
        self.limits.opened(protocol)

    def closed(self, protocol: StreamConnection) -> None:
        """
        Forget a connection that has ended.
        """
        self.limits.closed(protocol)

    def buildProtocol(self, addr: IAddress) -> DNSStreamProtocol | None:  # type: ignore[override]
        """
        A protocol for a new connection, or C{None} (which closes it at once)
        when a cap is reached; with the table full the connection idle
        longest is closed to make room instead (L{ConnectionLimits.refusal}).
        """
        host = getattr(addr, "host", "")
        port = getattr(addr, "port", 0)
        refusal = self.limits.refusal(host)
        if refusal is not None:
            self.log.debug("refusing {addr}: {why}", addr=addr, why=refusal)
            return None
        return DNSStreamProtocol(self, (host, port))
