# -*- test-case-name: tests.resolver.test_iterate -*-
"""
One query to one authoritative name server, for the iterative resolver
(L{dnstls.resolver.iterate}).

Over UDP from a new socket with a random source port and a random ID
(L{dnstls.resolver.forward.make_query}), RD=0, EDNS (with DO when the client asked
for it) unless the server is known not to take it; only a reply that
matches the question counts (L{dnstls.resolver.forward.matching_reply}).  TC=1 asks
again over TCP.  No reply within C{timeout} seconds is L{Timeout}; an ICMP
port unreachable or a refused TCP connection is a C{ConnectionError}, and
so is L{Busy}: at most L{MAX_IN_FLIGHT} upstream sockets are open at once.  A
server that answers FORMERR or NOTIMP to EDNS is asked again without it,
and remembered in the L{InfraCache}, as is its smoothed round-trip time.
Identical queries to one server in flight at once are sent once (a
question waiting for another's query sends it itself when the other's
work bound stops it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.error import TCPTimedOutError
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnstls.resolver.forward import Upstream, _TCPExchange, _UDPExchange, make_query
from dnstls.resolver.infracache import InfraCache
from dnstls.resolver.udpsocket import ConnectedUDP

#: Upstream sockets (UDP and TCP) open at once, at most; a query past that
#: fails at once with L{Busy}, so that a flood of questions cannot use up
#: the process's file descriptors (Unbound's outgoing-range, 4096 there).
MAX_IN_FLIGHT = 500

#: RCODEs with which a server may be saying that it does not take EDNS.
_NO_EDNS = (dns.rcode.FORMERR, dns.rcode.NOTIMP)


class Timeout(Exception):
    """
    The server did not answer in time.
    """


class Busy(ConnectionError):
    """
    Too many upstream queries are in flight to send another.
    """


class _Retry(Exception):
    """
    The query a question was waiting for was stopped by the work bound of
    the question that sent it: the waiting one sends it on its own budget.
    """


class NameServerQueries:
    """
    Sends queries to authoritative servers.

    @ivar infra: where each server's RTT and EDNS support are kept.
    @ivar timeout: seconds to wait for one answer (per transport).
    @ivar port: the servers' port (53 but in tests).
    @ivar max_in_flight: the most upstream sockets open at once.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        infra: InfraCache,
        timeout: float,
        port: int = 53,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.reactor = reactor
        self.infra = infra
        self.timeout = timeout
        self.port = port
        self.max_in_flight = max_in_flight
        self._inflight: dict[tuple[Any, ...], list[Deferred[dns.message.Message]]] = {}
        self._open: set[Any] = set()
        self._connecting: set[Deferred[Any]] = set()

    async def ask(
        self,
        address: str,
        qname: dns.name.Name,
        qtype: int,
        do: bool,
        cd: bool,
        spend: Callable[[], None],
    ) -> dns.message.Message:
        """
        The reply of the server at C{address} to C{qname} C{qtype} IN; an
        identical query already in flight to it is waited for instead of
        sent again.

        @param spend: called before each query is sent; it raises to stop
            a question that has done enough work.
        @raise Timeout: when the server is silent.
        """
        key = (address, qname.canonicalize(), int(qtype), do, cd)
        waiting = self._inflight.get(key)
        if waiting is not None:
            mine: Deferred[dns.message.Message] = Deferred()
            waiting.append(mine)
            try:
                reply: dns.message.Message = await mine
            except _Retry:
                return await self.ask(address, qname, qtype, do, cd, spend)
            return reply
        spend()
        self._inflight[key] = []
        spent: list[BaseException] = []

        def charged() -> None:
            try:
                spend()
            except BaseException as e:
                spent.append(e)
                raise

        try:
            reply = await self._send(address, qname, qtype, do, cd, charged)
        except BaseException as e:
            # the sender's own work bound is not the waiting questions' failure
            failure = Failure(_Retry() if e in spent else e)
            for each in self._inflight.pop(key, []):
                each.errback(failure)
            raise
        for each in self._inflight.pop(key, []):
            each.callback(reply)
        return reply

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

    async def _send(
        self,
        address: str,
        qname: dns.name.Name,
        qtype: int,
        do: bool,
        cd: bool,
        spend: Callable[[], None],
    ) -> dns.message.Message:
        edns = self.infra.edns(address)
        reply = await self._timed(address, _query(qname, qtype, do, cd, edns), spend)
        if edns and reply.rcode() in _NO_EDNS:
            spend()
            plain = await self._timed(address, _query(qname, qtype, do, cd, False), spend)
            if plain.rcode() not in _NO_EDNS:
                self.log.info("{address} does not take EDNS", address=address)
                self.infra.no_edns(address)
            reply = plain
        return reply

    async def _timed(
        self, address: str, query: dns.message.Message, spend: Callable[[], None]
    ) -> dns.message.Message:
        """
        Send C{query} over UDP, and over TCP when the reply is truncated
        (another query for C{spend}), keeping the server's RTT.
        """
        started = self.reactor.seconds()
        try:
            reply = await self._udp(address, query)
        except Timeout:
            self.infra.timed_out(address, self.timeout)
            raise
        self.infra.answered(address, self.reactor.seconds() - started)
        if reply.flags & dns.flags.TC:
            # a server that answered over UDP is not silent: a TCP failure
            # fails this query only
            spend()
            reply = await self._tcp(address, query)
        return reply

    async def _within(self, waiting: Deferred[dns.message.Message]) -> dns.message.Message:
        def expire() -> None:
            if not waiting.called:
                waiting.errback(Timeout())

        timer = self.reactor.callLater(self.timeout, expire)
        try:
            reply: dns.message.Message = await waiting
            return reply
        finally:
            if timer.active():
                timer.cancel()

    def _room(self) -> None:
        """
        @raise Busy: when no other upstream socket may be opened now.
        """
        if len(self._open) + len(self._connecting) >= self.max_in_flight:
            raise Busy(f"{self.max_in_flight} upstream queries in flight already")

    async def _udp(self, address: str, query: dns.message.Message) -> dns.message.Message:
        self._room()
        self.infra.probing(address)
        exchange = _UDPExchange(query, Upstream(address, self.port))
        port = ConnectedUDP(self.reactor, exchange, address, self.port)
        self._open.add(port)
        try:
            return await self._within(exchange.done)
        finally:
            self._open.discard(port)
            port.stopListening()

    async def _tcp(self, address: str, query: dns.message.Message) -> dns.message.Message:
        self._room()
        kind = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
        endpoint = kind(self.reactor, address, self.port, timeout=self.timeout)
        exchange = _TCPExchange(query)
        connecting = connectProtocol(endpoint, exchange)
        self._connecting.add(connecting)
        try:
            await connecting
        except (ConnectTimeout, TCPTimedOutError) as e:
            # no SYN-ACK within the timeout: a silent server, like one that
            # does not answer over UDP
            raise Timeout() from e
        finally:
            self._connecting.discard(connecting)
        assert exchange.transport is not None
        self._open.add(exchange.transport)
        try:
            return await self._within(exchange.done)
        finally:
            self._open.discard(exchange.transport)
            exchange.transport.loseConnection()


def _query(qname: dns.name.Name, qtype: int, do: bool, cd: bool, edns: bool) -> dns.message.Message:
    """
    The query for an authoritative server: RD=0, a random ID, and EDNS
    with the client's DO unless C{edns} is false.
    """
    query = make_query(qname, qtype, dns.rdataclass.IN, do and edns, cd)
    query.flags &= ~dns.flags.RD
    if not edns:
        query.use_edns(False)
    return query
