# -*- test-case-name: tests.resolver.test_forward -*-
"""
Forwarding (C{--forward HOST:PORT}): names outside our zones are asked of
upstream resolvers, and their answers cached.

Each question goes to the upstreams in the order given.  Over UDP, from a
new socket on a random source port with a random ID for every query (RFC
5452); a reply counts only when its ID, name (in any case), type and class
match the question, and anything else arriving on that socket is ignored.
A truncated reply (TC=1) makes the same upstream be asked again over TCP.
A DNS-over-TLS upstream (C{--forward-tls HOST:PORT#NAME}, see
L{dnstls.resolver.forward_tls}) takes its turn in the same order, on its one
persistent, pipelined connection.
An upstream that does not answer within C{timeout} seconds, refuses the
connection, or answers SERVFAIL, REFUSED, FORMERR or NOTIMP is skipped for
the next one; when none is left the query fails with L{ForwardError},
which the handler turns into SERVFAIL with an Extended DNS Error.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import Protocol as Interface

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnstls.acl import AccessList
from dnstls.resolver.cache import Answer, Cache, cache_key
from dnstls.resolver.forward_tls import TLSClient, TLSUpstream
from dnstls.resolver.udpsocket import ConnectedUDP
from dnstls.transport.framing import FrameDecoder, FramingError, frame
from dnstls.transport.listen import parse_address

#: Seconds to wait for one upstream before trying the next.
DEFAULT_TIMEOUT = 2.0
#: The EDNS payload size we offer upstream (DNS flag day 2020).
UPSTREAM_PAYLOAD = 1232
#: Upstream RCODEs that are answers; any other moves on to the next upstream.
_ANSWERS = frozenset({dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN})


class ForwardError(Exception):
    """
    No upstream gave an answer.

    @ivar ede: the Extended DNS Error code (RFC 8914) that says why: 22 (No
        Reachable Authority) when every upstream was silent, else 23
        (Network Error).
    """

    def __init__(self, reason: str, ede: dns.edns.EDECode) -> None:
        super().__init__(reason)
        self.ede = ede


class _Timeout(Exception):
    pass


@dataclass(frozen=True)
class Upstream:
    """
    An upstream resolver's address.
    """

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_upstream(text: str) -> Upstream:
    """
    Parse C{HOST:PORT} (IPv6 in brackets) of an upstream.

    @raise ValueError: with a message for the operator.
    """
    address = parse_address(text)
    if address.port == 0:
        raise ValueError(f"{text!r}: an upstream needs a port other than 0")
    return Upstream(address.host, address.port)


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


class Forwarder:
    """
    Asks upstream resolvers, one after the other until one answers.

    @ivar upstreams: where to ask, in order.
    @ivar timeout: seconds to wait for each (per transport).
    @ivar tls_clients: the connection to each DNS-over-TLS upstream.
    """

    log = Logger()

    def __init__(
        self,
        upstreams: Sequence[Upstream | TLSUpstream],
        reactor: Any,
        timeout: float = DEFAULT_TIMEOUT,
        tls_trust: Any = None,
    ) -> None:
        """
        @param tls_trust: the roots that DNS-over-TLS upstreams' certificates
            must chain to (an C{IOpenSSLTrustRoot}); the system's by default.
        """
        if not upstreams:
            raise ValueError("a forwarder needs an upstream")
        self.upstreams = tuple(upstreams)
        self.reactor = reactor
        self.timeout = timeout
        self.tls_clients: dict[TLSUpstream, TLSClient] = {}
        for upstream in self.upstreams:
            if isinstance(upstream, TLSUpstream) and upstream not in self.tls_clients:
                if tls_trust is None:
                    from twisted.internet.ssl import platformTrust

                    tls_trust = platformTrust()
                self.tls_clients[upstream] = TLSClient(upstream, reactor, tls_trust, timeout)

    def query(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
    ) -> Deferred[Answer]:
        """
        The first answer an upstream gives.

        @return: fires with the L{Answer}, or fails with L{ForwardError}.
        """
        return Deferred.fromCoroutine(self._query(qname, qtype, qclass, do, cd))

    async def _query(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
    ) -> Answer:
        silent = True
        for upstream in self.upstreams:
            query = make_query(qname, qtype, qclass, do, cd)
            try:
                if isinstance(upstream, TLSUpstream):
                    reply = await self._tls(upstream, query)
                else:
                    reply = await self._udp(upstream, query)
                    if reply.flags & dns.flags.TC:
                        reply = await self._tcp(upstream, query)
            except _Timeout:
                self.log.info("{upstream} did not answer {qname}", upstream=upstream, qname=qname)
                continue
            except Exception as e:
                silent = False
                self.log.info("{upstream} failed: {error}", upstream=upstream, error=e)
                continue
            if reply.rcode() not in _ANSWERS:
                silent = False
                self.log.info(
                    "{upstream} answered {rcode}", upstream=upstream,
                    rcode=dns.rcode.to_text(reply.rcode()),
                )
                continue
            return Answer.from_message(reply)
        raise ForwardError(
            f"no upstream answered {qname}",
            dns.edns.EDECode.NO_REACHABLE_AUTHORITY if silent else dns.edns.EDECode.NETWORK_ERROR,
        )

    async def _within(self, waiting: Deferred[Any]) -> Any:
        """
        What C{waiting} fires with, or L{_Timeout} after C{timeout} seconds.
        """
        timer: IDelayedCall | None = None

        def expire() -> None:
            if not waiting.called:
                waiting.errback(_Timeout())

        timer = self.reactor.callLater(self.timeout, expire)
        try:
            return await waiting
        finally:
            if timer.active():
                timer.cancel()

    async def _udp(self, upstream: Upstream, query: dns.message.Message) -> dns.message.Message:
        exchange = _UDPExchange(query, upstream)
        port = ConnectedUDP(self.reactor, exchange, upstream.host, upstream.port)
        try:
            reply: dns.message.Message = await self._within(exchange.done)
            return reply
        finally:
            port.stopListening()

    async def _tls(self, upstream: TLSUpstream, query: dns.message.Message) -> dns.message.Message:
        waiting = self.tls_clients[upstream].query(query)
        waiting.addTimeout(self.timeout, self.reactor)
        try:
            reply: dns.message.Message = await waiting
        except DeferredTimeout:
            raise _Timeout() from None
        return reply

    def close(self) -> None:
        """
        Close the connections to DNS-over-TLS upstreams.
        """
        for client in self.tls_clients.values():
            client.close()

    async def _tcp(self, upstream: Upstream, query: dns.message.Message) -> dns.message.Message:
        kind = TCP6ClientEndpoint if ":" in upstream.host else TCP4ClientEndpoint
        endpoint = kind(self.reactor, upstream.host, upstream.port, timeout=self.timeout)
        exchange = _TCPExchange(query)
        await connectProtocol(endpoint, exchange)
        try:
            reply: dns.message.Message = await self._within(exchange.done)
            return reply
        finally:
            if exchange.transport is not None:
                exchange.transport.loseConnection()


class Source(Interface):
    """
    Where answers for names outside our zones come from: a L{Forwarder}, or
    the iterative resolver.
    """

    def query(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
    ) -> Deferred[Answer]:
        """
        The answer to one question.

        @return: fires with the L{Answer}, or fails with L{ForwardError}.
        """

    def close(self) -> None:
        """
        Close every upstream connection (at shutdown).
        """


class Recursion:
    """
    What the handler asks for names outside our zones: who may, and the
    cache in front of the source of answers.

    @ivar source: the forwarder or iterator asked on a cache miss.
    """

    def __init__(self, acl: AccessList, cache: Cache, source: Source) -> None:
        self.acl = acl
        self.cache = cache
        self.source = source

    def allows(self, host: str) -> bool:
        """
        Whether the client at C{host} may recurse.
        """
        return self.acl.allows(host)

    def resolve(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
    ) -> Deferred[Answer]:
        """
        The answer to a question, from the cache or the upstreams; CD is
        passed on, so a validating client can see data its resolver would
        reject.
        """
        key = cache_key(qname, qtype, qclass, do, cd)
        return self.cache.resolve(
            key, lambda: self.source.query(key[0], qtype, qclass, do, cd)
        )

    def cached(
        self, qname: dns.name.Name, qtype: int, qclass: int, do: bool, cd: bool = False
    ) -> Answer | None:
        """
        The answer to a question if the cache holds it, without asking
        upstream: what a query with RD=0 gets.
        """
        return self.cache.get(cache_key(qname, qtype, qclass, do, cd))

    def close(self) -> None:
        """
        Close the source's upstream connections (at shutdown).
        """
        self.source.close()
