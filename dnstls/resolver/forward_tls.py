# -*- test-case-name: tests.resolver.test_forward_tls -*-
"""
Forwarding over DNS over TLS (C{--forward-tls HOST:PORT#NAME}, RFC 7858).

Each upstream gets one persistent TLS connection, authenticated by its
name or its SPKI pins (L{dnstls.resolver.tlsupstream}).

Queries are pipelined on the connection: several may be in flight at
once, each with an ID no other in-flight query on that connection has, and
a reply is matched to its query by ID and question
(L{dnstls.resolver.exchange.matching_reply}).  The connection is opened
when the first query needs it and reused until either side closes it; a
query in flight when the upstream closes the connection (an idle upstream
may close at any time) is sent once more on a new connection.  A failed
handshake (a certificate for another name, say) fails the query at once.

Every query carries an empty edns-tcp-keepalive option (RFC 7828) and is
padded to a multiple of 128 octets (RFC 8467 4.1).  When the upstream's
replies give an idle timeout, the connection is closed cleanly a little
before it runs out with no query in flight (at once for a timeout of 0),
and the next query opens a new one.  L{TLSClient.close} closes it at
shutdown.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable

import dns.edns
import dns.message
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dnstls.resolver.exchange import matching_reply, tcp_endpoint
from dnstls.resolver.tlsupstream import TLSUpstream, client_tls
from dnstls.transport.framing import FrameDecoder, FramingError, frame

#: RFC 8467 4.1: clients pad queries to a multiple of 128 octets.
QUERY_PADDING = 128


def keepalive_query(query: dns.message.Message) -> None:
    """
    Make C{query} ready for a DNS-over-TLS upstream: EDNS with an empty
    edns-tcp-keepalive option (RFC 7828 3.2.1: a client sends no timeout)
    and padding (RFC 8467).
    """
    options = [o for o in query.options if o.otype != dns.edns.OptionType.KEEPALIVE]
    options.append(dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, b""))
    query.use_edns(
        max(query.edns, 0), query.ednsflags, query.payload, options=options, pad=QUERY_PADDING
    )


def keepalive_timeout(reply: dns.message.Message) -> float | None:
    """
    The idle timeout in seconds an upstream gave in C{reply}'s
    edns-tcp-keepalive option (RFC 7828 3.1: units of 100 ms), or C{None}.
    """
    for option in reply.options:
        if option.otype == dns.edns.OptionType.KEEPALIVE:
            data = option.to_wire() or b""
            if len(data) == 2:
                return float(struct.unpack("!H", data)[0]) / 10
    return None


def idle_close_delay(timeout: float) -> float:
    """
    How long after its last reply an idle connection is closed, for an
    upstream idle timeout of C{timeout} seconds: a second before it, or
    halfway for a short one, so that we close first.
    """
    return max(0.0, timeout - min(1.0, timeout / 2))


class UpstreamClosed(ConnectionError):
    """
    The upstream closed the connection before answering.
    """


class HandshakeFailed(ConnectionError):
    """
    The TLS handshake with the upstream failed (its certificate, say).
    """


@implementer(IHandshakeListener)
class _DoTConnection(Protocol):
    """
    One TLS connection to an upstream, with the queries in flight on it.
    """

    log = Logger()
    #: Whether the TLS handshake finished.
    secure = False

    def handshakeCompleted(self) -> None:
        self.secure = True

    def __init__(
        self, lost: Callable[[_DoTConnection], None], clock: IReactorTime, label: str = "upstream"
    ) -> None:
        self._lost = lost
        self.clock = clock
        self.label = label
        self.decoder = FrameDecoder()
        self.pending: dict[int, tuple[dns.message.Message, Deferred[dns.message.Message]]] = {}
        #: no more queries go on this connection
        self.closed = False
        #: the upstream's idle timeout in seconds, once a reply gave one
        self.keepalive: float | None = None
        self._idle: IDelayedCall | None = None

    def ask(self, query: dns.message.Message) -> Deferred[dns.message.Message]:
        """
        Send C{query} (with its ID changed to one not in flight); fires with
        the reply.
        """
        assert self.transport is not None
        self._stop_idle()
        while query.id in self.pending:
            query.id = secrets.randbelow(0x10000)
        waiting: Deferred[dns.message.Message] = Deferred(lambda d: self.forget(query.id, d))
        self.pending[query.id] = (query, waiting)
        self.transport.write(frame(query.to_wire()))
        return waiting

    def forget(self, query_id: int, waiting: Deferred[dns.message.Message]) -> None:
        entry = self.pending.get(query_id)
        if entry is not None and entry[1] is waiting:
            del self.pending[query_id]

    def dataReceived(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except FramingError:
            assert self.transport is not None
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        for message in messages:
            if len(message) < 2:
                continue
            entry = self.pending.get(int.from_bytes(message[:2], "big"))
            if entry is None:
                continue
            query, waiting = entry
            reply = matching_reply(query, message)
            if reply is not None:
                del self.pending[query.id]
                timeout = keepalive_timeout(reply)
                if timeout is not None:
                    self.keepalive = timeout
                waiting.callback(reply)
        if not self.pending and self.keepalive is not None and not self.closed:
            self._stop_idle()
            self._idle = self.clock.callLater(idle_close_delay(self.keepalive), self._close_idle)

    def _close_idle(self) -> None:
        self._idle = None
        self.log.debug(
            "closing the idle connection to {peer} before its keepalive of {timeout} s",
            peer=self.label,
            timeout=self.keepalive,
        )
        self.close()

    def _stop_idle(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None

    def close(self) -> None:
        """
        Take no more queries and close the connection cleanly (TLS
        close_notify, then FIN); queries still in flight fail with
        L{UpstreamClosed}.
        """
        self._stop_idle()
        if not self.closed:
            self.closed = True
            self._lost(self)
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_idle()
        self.closed = True
        self._lost(self)
        error: Exception
        if not self.secure:
            error = HandshakeFailed(f"no TLS session: {reason.getErrorMessage()}")
        else:
            error = UpstreamClosed("the upstream closed the connection without an answer")
        pending, self.pending = self.pending, {}
        for _, waiting in pending.values():
            waiting.errback(error)


class _Once(Factory):
    """
    Builds the one given connection, quietly.
    """

    noisy = False

    def __init__(self, connection: _DoTConnection) -> None:
        self.connection = connection

    def buildProtocol(self, addr: object) -> _DoTConnection:
        return self.connection


class TLSClient:
    """
    The connection to one DNS-over-TLS upstream, opened on demand and
    reused.
    """

    log = Logger()

    def __init__(
        self, upstream: TLSUpstream, reactor: object, trust: IOpenSSLTrustRoot, timeout: float
    ) -> None:
        self.upstream = upstream
        self.reactor = reactor
        self.options = client_tls(upstream, trust)
        self.timeout = timeout
        self._connection: _DoTConnection | None = None
        self._waiting: list[Deferred[_DoTConnection]] = []
        self._shut = False
        #: How many connections were opened (for tests and logs).
        self.connections = 0

    def _connected(self) -> Deferred[_DoTConnection]:
        if self._shut:
            return fail(UpstreamClosed("shutting down"))
        if self._connection is not None and not self._connection.closed:
            return succeed(self._connection)
        waiting: Deferred[_DoTConnection] = Deferred()
        self._waiting.append(waiting)
        if len(self._waiting) == 1:
            endpoint = wrapClientTLS(
                self.options,
                tcp_endpoint(self.reactor, self.upstream.host, self.upstream.port, self.timeout),
            )
            self.connections += 1
            connection = _DoTConnection(
                self._lost, self.reactor, str(self.upstream)  # type: ignore[arg-type]
            )
            endpoint.connect(_Once(connection)).addCallbacks(self._opened, self._failed)
        return waiting

    def _opened(self, connection: Protocol) -> None:
        assert isinstance(connection, _DoTConnection)
        waiting, self._waiting = self._waiting, []
        if self._shut:
            connection.close()
        if connection.closed:
            for d in waiting:
                d.errback(UpstreamClosed("the upstream closed the connection at once"))
            return
        self._connection = connection
        for d in waiting:
            d.callback(connection)

    def _failed(self, failure: Failure) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure.value)

    def _lost(self, connection: _DoTConnection) -> None:
        if self._connection is connection:
            self._connection = None

    def query(self, query: dns.message.Message) -> Deferred[dns.message.Message]:
        """
        The reply to C{query}, sent on the open connection or a new one, and
        once more on a new one if the upstream closes before answering.
        Cancelling it forgets the query.
        """
        return Deferred.fromCoroutine(self._query(query))

    async def _query(self, query: dns.message.Message) -> dns.message.Message:
        keepalive_query(query)
        for attempt in (1, 2):
            connection = await self._connected()
            try:
                reply: dns.message.Message = await connection.ask(query)
                return reply
            except UpstreamClosed:
                if attempt == 2:
                    raise
                self.log.debug("{upstream} closed; asking again", upstream=self.upstream)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """
        Close the open connection, if any, and any that opens later: the
        server is shutting down.
        """
        self._shut = True
        if self._connection is not None:
            self._connection.close()
