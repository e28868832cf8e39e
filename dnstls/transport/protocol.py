# -*- test-case-name: tests.transport.test_protocol -*-
"""
The UDP and stream protocols: they frame bytes, enforce limits and hand each
whole message to the L{Handler}; they never decide an answer.

The stream protocol follows RFC 7766: it reassembles messages from any
split, answers pipelined queries as each answer is ready, writes the length
and the message in one call, turns Nagle's algorithm off, closes a
connection that sends a length below 12, closes an idle one (idle meaning no
complete message and no answer owed for C{idle_timeout} seconds; partial
data does not count), aborts one whose peer does not let go of it within
C{idle_timeout} seconds after that, and never writes after the peer has
gone.  A handler that raises or fails is logged; nothing reaches the reactor.

Inside TLS the same protocol also drops a client that has not finished its
handshake within C{handshake_timeout} seconds.  On TCP/53 it carries out the
TO-bit upgrade of L{dnstls.transport.upgrade}: the first query decides, its reply goes
out in clear text, every clear-text byte after it is dropped, and the
connection then behaves as one on the TLS port.  Every reply on a stream
learns the connection's current idle timeout, for edns-tcp-keepalive
(RFC 7828): 0 once the server is near its connection cap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLServerConnectionCreator,
    IReactorTime,
)
from twisted.internet.protocol import (
    DatagramProtocol,
    Factory,
    Protocol,
    connectionDone,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dnstls.handler import Answerer, QueryContext, Transport
from dnstls.testing.faults import Faults
from dnstls.testing.querylog import TLSInfo
from dnstls.testing.querylog import negotiated as _negotiated
from dnstls.transport.directsend import nothing_queued, write_now
from dnstls.transport.fastpath import FastAnswerer, Shape
from dnstls.transport.framing import FrameDecoder, FramingError, frame
from dnstls.transport.upgrade import UpgradePolicy, should_upgrade

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


class DNSDatagramProtocol(DatagramProtocol):
    """
    DNS over UDP: one datagram in, at most one datagram back to its sender.

    With a L{FastAnswerer}, a question asked before is answered from its
    cache without building a L{QueryContext}, and replies go straight to the
    socket's C{sendto} (a reply the kernel has no room for is dropped, as
    the network may drop it).
    """

    log = Logger()
    noisy = False

    def __init__(self, handler: Answerer) -> None:
        self.handler = handler
        self._fast = handler if isinstance(handler, FastAnswerer) else None
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
            reply = fast.cached(datagram, fast.udp_shape(addr[0]))
            if reply is not None:
                self._send(reply, addr)
                return
        context = QueryContext(Transport.UDP, (addr[0], addr[1]))
        try:
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


@implementer(IHandshakeListener)
class DNSStreamProtocol(Protocol):
    """
    DNS over a byte stream: TCP on port 53, or the inside of a TLS session.
    """

    log = Logger()

    def __init__(self, factory: DNSStreamFactory, peer: tuple[str, int]) -> None:
        self.factory = factory
        self.peer = peer
        self._decoder = FrameDecoder()
        #: the socket under a clear-text TCP transport, for direct sends
        self._socket: Any = None
        #: this connection's shape for the L{FastAnswerer}, while it holds
        self._shape: Shape | None = None
        self._idle: IDelayedCall | None = None
        self._abort: IDelayedCall | None = None
        self._handshake: IDelayedCall | None = None
        self.kind = factory.transport_kind
        faults = factory.faults
        self.idle_timeout = (
            faults.idle_timeout if faults and faults.idle_timeout else factory.idle_timeout
        )
        self._answered = 0
        self._upgraded = False
        self._tls: TLSInfo | None = None
        upgrade = factory.upgrade
        self._first = upgrade is not None and upgrade.policy is not UpgradePolicy.OFF
        self._discarding = False
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
        if self.kind is Transport.TLS:
            self._start_handshake_clock()
        self._start_idle()

    def _start_handshake_clock(self) -> None:
        self._handshake = self.factory.clock.callLater(
            self.factory.handshake_timeout, self._handshake_expired
        )

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake is done: stop its clock.
        """
        if self._handshake is not None and self._handshake.active():
            self._handshake.cancel()
        self._handshake = None
        self._tls = _negotiated(self.transport)

    def _handshake_expired(self) -> None:
        self._handshake = None
        self.log.debug("dropping {peer}: no TLS handshake in time", peer=self.peer)
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None and not self.closed:
            abort()

    def dataReceived(self, data: bytes) -> None:
        """
        Answer every message C{data} completes; a bad length closes the
        connection after answering the messages before it, so that the
        answers do not depend on how the network split the stream.
        """
        if self._discarding:
            return
        try:
            messages = self._decoder.feed(data)
            broken: FramingError | None = None
        except FramingError as e:
            messages, broken = e.messages, e
        if messages and not self.closed:
            if self.factory.faults is None and not self._first:
                self._answer_all(messages)
            elif not self._answer_each(messages):
                return
        if broken is not None:
            self.log.debug("closing stream from {peer}: {reason}", peer=self.peer, reason=broken)
            self._close()

    def _answer_all(self, messages: list[bytes]) -> None:
        """
        Answer C{messages}, with the replies ready at once written together
        in one call, each whole with its length before it; the cache of a
        L{FastAnswerer} is asked first, with one shape for them all.
        """
        replies: list[bytes] = []
        fast = self.factory.fast
        if fast is not None:
            keepalive = self.keepalive()
            shape = self._shape
            if shape is None or shape[2] != keepalive:
                shape = self._shape = fast.stream_shape(
                    self.kind, self.peer[0], keepalive, True, self._upgraded
                )
            cached = fast.cached
            for message in messages:
                reply = cached(message, shape)
                if reply is None:
                    reply = self._reply(message)
                if reply is not None:
                    replies.append(reply)
        else:
            for message in messages:
                reply = self._reply(message)
                if reply is not None:
                    replies.append(reply)
        if replies:
            self._send_all(replies)
        self._start_idle()

    def _answer_each(self, messages: list[bytes]) -> bool:
        """
        Answer C{messages} one by one, deciding the upgrade on the first
        query of a TCP/53 connection and applying the test faults.

        @return: whether the connection goes on as a clear-text stream
            (C{False} once it is being upgraded or is closed).
        """
        faults = self.factory.faults
        held: list[bytes] | None = [] if faults and faults.reverse and len(messages) > 1 else None
        for message in messages:
            if self.closed:
                return False
            self._start_idle()
            if self._first:
                self._first = False
                upgrade = self.factory.upgrade
                assert upgrade is not None
                declined = faults is not None and faults.decline_upgrade
                if not declined and should_upgrade(upgrade.policy, message, upgrade.legacy_probe):
                    # What the client sent after its first query is clear
                    # text it had no right to send: dropped, never answered.
                    self._upgrade(message)
                    return False
            self._answer(message, held)
        for reply in reversed(held or []):
            self._send(reply)
        return True

    def keepalive(self, idle_timeout: float | None = None) -> int:
        """
        The edns-tcp-keepalive value to send now, in units of 100 ms: this
        connection's idle timeout (or C{idle_timeout}), or 0 when the server
        is near its cap.
        """
        faults = self.factory.faults
        if self.factory.limits.busy or (faults is not None and faults.keepalive_zero):
            return 0
        timeout = self.idle_timeout if idle_timeout is None else idle_timeout
        return min(0xFFFF, int(timeout * 10))

    def _upgraded_idle_timeout(self) -> float:
        """
        The idle timeout this connection has once upgraded: the TLS one (or
        the one a test fault imposes on every stream).
        """
        faults: Faults | None = self.factory.faults
        upgrade: Upgrade | None = self.factory.upgrade
        if faults is not None and faults.idle_timeout:
            return faults.idle_timeout
        assert upgrade is not None
        return upgrade.idle_timeout

    def _upgrade(self, message: bytes) -> None:
        """
        Answer the first query with TO=1 in clear text, then become the TLS
        server on this connection.
        """
        self._discarding = True
        self._decoder.clear()
        context = self._context(upgrade=True)
        try:
            reply = self.factory.handler.handle(message, context)
        except Exception:
            self.log.failure("answering the upgrade query from {peer}", peer=self.peer)
            self._close()
            return
        if isinstance(reply, Deferred):
            self._owed += 1
            reply.addCallbacks(self._upgrade_owed, self._upgrade_failed)
        else:
            self._start_tls(reply)

    def _upgrade_owed(self, reply: bytes | None) -> None:
        self._owed -= 1
        self._start_tls(reply)

    def _upgrade_failed(self, failure: Failure) -> None:
        self._owed -= 1
        self.log.failure("answering the upgrade query from {peer}", failure, peer=self.peer)
        self._close()

    def _start_tls(self, reply: bytes | None) -> None:
        """
        Send the clear-text reply, drop whatever clear text came after the
        first query, and start the TLS handshake as the server.
        """
        upgrade = self.factory.upgrade
        start = getattr(self.transport, "startTLS", None)
        if self.closed or reply is None or upgrade is None or start is None:
            self._close()
            return
        self._send(reply)
        faults = self.factory.faults
        if faults is not None and faults.abort_handshake:
            # Close once the TO=1 reply is flushed (abortConnection would
            # discard it): the client sees the grant, then its handshake fails.
            self._close()
            return
        self._decoder = FrameDecoder()
        self._shape = None
        self.kind = Transport.TLS
        self.idle_timeout = self._upgraded_idle_timeout()
        self._upgraded = True
        self._discarding = False
        start(upgrade.tls)
        self._start_handshake_clock()
        self._start_idle()

    def _context(self, upgrade: bool = False) -> QueryContext:
        """
        The context of a query on this connection now; for the query that
        upgrades it, a clear-text TCP one whose keepalive is the idle
        timeout the connection has from its reply on.
        """
        faults = self.factory.faults
        return QueryContext(
            Transport.TCP if upgrade else self.kind,
            self.peer,
            self.keepalive(self._upgraded_idle_timeout() if upgrade else None),
            upgrade=upgrade,
            upgraded=self._upgraded,
            padding=not (faults is not None and faults.no_padding),
            tls=self._tls,
        )

    def _answer(self, message: bytes, held: list[bytes] | None = None) -> None:
        """
        Hand one message to the handler and send its reply, now or when its
        Deferred fires (or keep it in C{held}, to be sent later).
        """
        reply = self._reply(message)
        if reply is not None:
            if held is not None:
                held.append(reply)
            else:
                self._send(reply)

    def _reply(self, message: bytes) -> bytes | None:
        """
        The handler's reply to one message if it is ready now; a later one
        is sent when its Deferred fires.  A failure is logged and the
        connection goes on.
        """
        context = self._context()
        try:
            reply: bytes | None | Deferred[bytes | None]
            reply = self.factory.handler.handle(message, context)
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

    def _paid(self) -> None:
        """
        One owed answer is settled; once none is owed the idle clock runs.
        """
        self._owed -= 1
        if self._owed == 0:
            self._start_idle()

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
        faults = self.factory.faults
        if faults is not None and faults.close_after and self._answered >= faults.close_after:
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
        if self.kind is Transport.TCP:
            write_now(transport, self._socket, data)
        else:
            transport.write(data)

    def _start_idle(self) -> None:
        """
        (Re)start the idle clock, which runs only while no answer is owed.
        """
        idle = self._idle
        if self._owed == 0 and not self.closed and not self._closing:
            # moving a pending call later costs a subtraction; a new one a
            # heap insertion and the old one's removal
            if idle is not None and idle.active():
                idle.reset(self.idle_timeout)
            else:
                self._idle = self.factory.clock.callLater(self.idle_timeout, self._expire)
        elif idle is not None:
            if idle.active():
                idle.cancel()
            self._idle = None

    def _expire(self) -> None:
        self._idle = None
        if self._owed == 0:
            self.log.debug("closing idle stream from {peer}", peer=self.peer)
            self._close()

    def _close(self) -> None:
        """
        Close gracefully (flushing what is written, and a TLS close_notify),
        and abort if the peer has not let go C{idle_timeout} seconds later:
        a peer that never reads would otherwise hold the connection forever.
        """
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self.transport is None or self.closed or self._closing:
            return
        self._closing = True
        self._abort = self.factory.clock.callLater(self.idle_timeout, self._force_close)
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
        for call in (self._idle, self._abort, self._handshake):
            if call is not None and call.active():
                call.cancel()
        self._idle = self._abort = self._handshake = None
        self.factory.closed(self)


@dataclass(frozen=True)
class Upgrade:
    """
    How a TCP/53 listener upgrades connections to TLS.

    @ivar policy: when to upgrade.
    @ivar tls: the TLS policy, the same object the TLS port uses.
    @ivar idle_timeout: the idle timeout once upgraded.
    @ivar legacy_probe: the probe without TO upgrades too, as getdns 0.5.1
        sends it (C{--starttls-legacy-probe}, see L{dnstls.transport.upgrade}).
    """

    policy: UpgradePolicy
    tls: IOpenSSLServerConnectionCreator
    idle_timeout: float = DEFAULT_TLS_IDLE_TIMEOUT
    legacy_probe: bool = False


class ConnectionLimits:
    """
    The caps on open connections, shared by every stream listener (TCP and
    TLS alike): a total, and a share per client address.

    @ivar connections: the open connections.
    """

    def __init__(self, total: int = 1000, per_client: int = DEFAULT_MAX_PER_CLIENT) -> None:
        self.total = total
        self.per_client = per_client
        self.connections: set[DNSStreamProtocol] = set()
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

    def opened(self, protocol: DNSStreamProtocol) -> None:
        """
        Count a connection that has started.
        """
        self.connections.add(protocol)
        self._by_client[protocol.peer[0]] += 1

    def closed(self, protocol: DNSStreamProtocol) -> None:
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


class DNSStreamFactory(Factory):
    """
    Builds L{DNSStreamProtocol}s within the L{ConnectionLimits}.
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
        faults: Faults | None = None,
    ) -> None:
        self.handler = handler
        #: the handler's cache, asked first when there are no faults
        self.fast = handler if isinstance(handler, FastAnswerer) else None
        self.clock = clock
        self.transport_kind = transport_kind
        self.idle_timeout = idle_timeout
        self.limits = limits if limits is not None else ConnectionLimits()
        self.handshake_timeout = handshake_timeout
        self.upgrade = upgrade
        self.faults = faults

    @property
    def connections(self) -> set[DNSStreamProtocol]:
        """
        The open connections, on this listener and the others that share
        its limits.
        """
        return self.limits.connections

    def opened(self, protocol: DNSStreamProtocol) -> None:
        """
        Count a connection that has started.
        """
        self.limits.opened(protocol)

    def closed(self, protocol: DNSStreamProtocol) -> None:
        """
        Forget a connection that has ended.
        """
        self.limits.closed(protocol)

    def buildProtocol(self, addr: IAddress) -> DNSStreamProtocol | None:  # type: ignore[override]
        """
        A protocol for a new connection, or C{None} (which closes it at once)
        when a cap is reached.
        """
        host = getattr(addr, "host", "")
        port = getattr(addr, "port", 0)
        refusal = self.limits.refusal(host)
        if refusal is not None:
            self.log.debug("refusing {addr}: {why}", addr=addr, why=refusal)
            return None
        return DNSStreamProtocol(self, (host, port))
