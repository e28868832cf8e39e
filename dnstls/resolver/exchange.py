# -*- test-case-name: tests.resolver.test_exchange -*-
"""
One query's exchange with one upstream server, for forwarding
(L{dnstls.resolver.forward}, L{dnstls.resolver.forward_tls}) and for
iteration (L{dnstls.resolver.nsquery}), as dnspython's C{asyncquery} or
Unbound's outside network serve both of theirs.

A query (L{make_query}) carries a random ID.  Over UDP it goes from its own
socket connected to the server (L{ConnectedUDP}), on a source port the
kernel picks at random (RFC 5452); over TCP on its own connection, reached
through the endpoint for the address's family (L{tcp_endpoint}).  A reply
counts only when it matches the question (L{matching_reply}): its ID, and
its name (in any case), type and class; anything else arriving is ignored.
A reply with TC=1 over UDP makes the same server be asked again over TCP
(L{Exchanger.ask}).

No reply within the timeout is L{Timeout}; an ICMP port unreachable is a
C{ConnectionRefusedError}, and a TCP connection that fails or closes with
no reply is a C{ConnectionError}.  An L{Exchanger} may be given a bound on
the sockets it has open at once, past which a query fails at once with
L{Busy}, and something that keeps each server's round-trip times
(L{RoundTrips}).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from typing import Protocol as Interface

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.error import TCPTimedOutError
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.python.failure import Failure

from dnstls.resolver.udpsocket import ConnectedUDP
from dnstls.transport.framing import FrameDecoder, FramingError, frame

#: The EDNS payload size we offer upstream (DNS flag day 2020).
UPSTREAM_PAYLOAD = 1232

_T = TypeVar("_T")


class Timeout(Exception):
    """
    The server did not answer in time.
    """


class Busy(ConnectionError):
    """
    Too many upstream queries are in flight to send another.
    """


@dataclass(frozen=True)
class Upstream:
    """
    An upstream server's address.
    """

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def make_query(
    qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
) -> dns.message.Message:
    """
    The query sent upstream: RD=1, EDNS with our payload size, the client's
    DO and CD, and a random ID.
    """
    query = dns.message.make_query(
        qname,
        dns.rdatatype.RdataType.make(qtype),
        dns.rdataclass.RdataClass.make(qclass),
        use_edns=0, payload=UPSTREAM_PAYLOAD, want_dnssec=do
    )
    query.id = secrets.randbelow(0x10000)
    if cd:
        query.flags |= dns.flags.CD
    return query


def matching_reply(query: dns.message.Message, wire: bytes) -> dns.message.Message | None:
    """
    C{wire} parsed, if it is a reply to C{query}: QR=1, the same ID, and
    one question with the same name (compared without regard to case),
    type and class.  A truncated reply parses as far as it goes.
    """
    try:
        reply = dns.message.from_wire(wire)
    except dns.message.Truncated as e:
        reply = e.message()
    except Exception:
        return None
    if not reply.flags & dns.flags.QR or reply.id != query.id or len(reply.question) != 1:
        return None
    asked, got = query.question[0], reply.question[0]
    if (got.name, got.rdtype, got.rdclass) != (asked.name, asked.rdtype, asked.rdclass):
        return None
    return reply


def tcp_endpoint(reactor: Any, host: str, port: int, timeout: float) -> IStreamClientEndpoint:
    """
    The TCP endpoint for C{host} (an IPv4 or IPv6 address) and C{port},
    whose connection attempt gives up after C{timeout} seconds.
    """
    kind = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
    endpoint: IStreamClientEndpoint = kind(reactor, host, port, timeout=timeout)
    return endpoint


async def within(reactor: Any, timeout: float, waiting: Deferred[_T]) -> _T:
    """
    What C{waiting} fires with; after C{timeout} seconds it is cancelled
    and L{Timeout} raised.
    """
    waiting.addTimeout(timeout, reactor)
    try:
        return await waiting
    except DeferredTimeout:
        raise Timeout() from None


class _UDPExchange(DatagramProtocol):
    """
    One query on its own connected UDP socket (L{ConnectedUDP}); the
    upstream refusing it (ICMP port unreachable) fails it at once.
    """

    noisy = False

    def __init__(self, query: dns.message.Message, upstream: Upstream) -> None:
        self.query = query
        self.upstream = upstream
        self.done: Deferred[dns.message.Message] = Deferred()

    def startProtocol(self) -> None:
        assert self.transport is not None
        self.transport.write(self.query.to_wire())  # type: ignore[call-arg]

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        reply = matching_reply(self.query, datagram)
        if reply is not None and not self.done.called:
            self.done.callback(reply)

    def connectionRefused(self) -> None:
        if not self.done.called:
            self.done.errback(ConnectionRefusedError(f"{self.upstream} refused"))

    def stopProtocol(self) -> None:
        """
        The socket closed with no answer (the reactor let go of it): the
        query fails as unreachable rather than wait for its timeout.
        """
        if not self.done.called:
            self.done.errback(ConnectionRefusedError(f"{self.upstream} is unreachable"))


class _TCPExchange(Protocol):
    """
    One query on its own TCP connection.
    """

    def __init__(self, query: dns.message.Message) -> None:
        self.query = query
        self.decoder = FrameDecoder()
        self.done: Deferred[dns.message.Message] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(frame(self.query.to_wire()))

    def dataReceived(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except FramingError as e:
            self._fail(e)
            return
        for message in messages:
            reply = matching_reply(self.query, message)
            if reply is not None and not self.done.called:
                self.done.callback(reply)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._fail(ConnectionError("the upstream closed the connection without an answer"))

    def _fail(self, error: Exception) -> None:
        if not self.done.called:
            self.done.errback(error)


class RoundTrips(Interface):
    """
    What keeps the servers' round-trip times over UDP (the iterator's
    L{dnstls.resolver.infracache.InfraCache}).
    """

    def probing(self, address: str) -> None:
        """
        A query is being sent to the server at C{address}.
        """

    def answered(self, address: str, seconds: float) -> None:
        """
        The server at C{address} replied after C{seconds}.
        """

    def timed_out(self, address: str, timeout: float) -> None:
        """
        The server at C{address} did not reply within C{timeout} seconds.
        """


class _Unobserved:
    """
    Round-trip times kept nowhere.
    """

    def probing(self, address: str) -> None:
        pass

    def answered(self, address: str, seconds: float) -> None:
        pass

    def timed_out(self, address: str, timeout: float) -> None:
        pass


class Exchanger:
    """
    Sends queries to upstream servers, each on its own socket, and keeps
    count of the sockets open.

    @ivar timeout: seconds to wait for one reply (per transport), and for a
        TCP connection to be taken.
    @ivar max_in_flight: the most upstream sockets open at once, or C{None}
        for no bound.
    @ivar round_trips: what is told of each UDP query's fate.
    @ivar connect_timeout_is_silence: whether a TCP connection not taken
        within the timeout fails as L{Timeout}, as a silent server does,
        rather than as the connection error.
    """

    def __init__(
        self,
        reactor: Any,
        timeout: float,
        *,
        max_in_flight: int | None = None,
        round_trips: RoundTrips | None = None,
        connect_timeout_is_silence: bool = False,
    ) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.round_trips: RoundTrips = round_trips if round_trips is not None else _Unobserved()
        self.connect_timeout_is_silence = connect_timeout_is_silence
        self._open: set[Any] = set()
        self._connecting: set[Deferred[Any]] = set()

    async def ask(
        self,
        upstream: Upstream,
        query: dns.message.Message,
        retrying: Callable[[], None] | None = None,
    ) -> dns.message.Message:
        """
        The reply to C{query} over UDP, or over TCP when that one is
        truncated.

        @param retrying: called with no argument before the query is sent
            again over TCP; it may raise to stop it.
        """
        reply = await self.udp(upstream, query)
        if reply.flags & dns.flags.TC:
            if retrying is not None:
                retrying()
            reply = await self.tcp(upstream, query)
        return reply

    async def udp(self, upstream: Upstream, query: dns.message.Message) -> dns.message.Message:
        """
        The reply to C{query} over UDP, its round trip told to
        C{round_trips}.

        @raise Busy: when no other socket may be opened now.
        """
        started = self.reactor.seconds()
        try:
            reply = await self._udp(upstream, query)
        except Timeout:
            self.round_trips.timed_out(upstream.host, self.timeout)
            raise
        self.round_trips.answered(upstream.host, self.reactor.seconds() - started)
        return reply

    async def _udp(self, upstream: Upstream, query: dns.message.Message) -> dns.message.Message:
        self._room()
        self.round_trips.probing(upstream.host)
        exchange = _UDPExchange(query, upstream)
        port = ConnectedUDP(self.reactor, exchange, upstream.host, upstream.port)
        self._open.add(port)
        try:
            return await within(self.reactor, self.timeout, exchange.done)
        finally:
            self._open.discard(port)
            port.stopListening()

    async def tcp(self, upstream: Upstream, query: dns.message.Message) -> dns.message.Message:
        """
        The reply to C{query} on a new TCP connection.

        @raise Busy: when no other socket may be opened now.
        """
        self._room()
        endpoint = tcp_endpoint(self.reactor, upstream.host, upstream.port, self.timeout)
        exchange = _TCPExchange(query)
        connecting = connectProtocol(endpoint, exchange)
        self._connecting.add(connecting)
        try:
            await connecting
        except (ConnectTimeout, TCPTimedOutError) as e:
            if not self.connect_timeout_is_silence:
                raise
            # no SYN-ACK within the timeout: a silent server, like one that
            # does not answer over UDP
            raise Timeout() from e
        finally:
            self._connecting.discard(connecting)
        assert exchange.transport is not None
        self._open.add(exchange.transport)
        try:
            return await within(self.reactor, self.timeout, exchange.done)
        finally:
            self._open.discard(exchange.transport)
            exchange.transport.loseConnection()

    def close(self) -> None:
        """
        Abandon every query in flight, TCP connections being made too:
        each fails at once.
        """
        for connecting in list(self._connecting):
            connecting.cancel()
        for each in list(self._open):
            if hasattr(each, "stopListening"):
                each.stopListening()
            else:
                each.loseConnection()
        self._open.clear()

    def _room(self) -> None:
        """
        @raise Busy: when no other upstream socket may be opened now.
        """
        if self.max_in_flight is None:
            return
        if len(self._open) + len(self._connecting) >= self.max_in_flight:
            raise Busy(f"{self.max_in_flight} upstream queries in flight already")
