# -*- test-case-name: tests.resolver.test_nsquery -*-
"""
One query to one authoritative name server, for the iterative resolver
(L{dnstls.resolver.iterate}).

The query has RD=0 and EDNS (with DO when the client asked for it) unless
the server is known not to take it; it is sent as every upstream query is
(L{dnstls.resolver.exchange}: over UDP from a new socket with a random
source port and a random ID, only a reply that matches the question
counting, and again over TCP on TC=1, that retry charged to the question).
No reply within C{timeout} seconds is L{Timeout}, and so is a TCP
connection not taken in that time; an ICMP port unreachable or a refused
TCP connection is a C{ConnectionError}, and so is L{Busy}: at most
L{MAX_IN_FLIGHT} upstream sockets are open at once.  A server that answers
FORMERR or NOTIMP to EDNS is asked again without it, and remembered in the
L{InfraCache}, as is its smoothed round-trip time.
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
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnstls.resolver.exchange import Busy as Busy
from dnstls.resolver.exchange import Exchanger, Upstream, make_query
from dnstls.resolver.exchange import Timeout as Timeout
from dnstls.resolver.infracache import InfraCache

#: Upstream sockets (UDP and TCP) open at once, at most; a query past that
#: fails at once with L{Busy}, so that a flood of questions cannot use up
#: the process's file descriptors (Unbound's outgoing-range, 4096 there).
MAX_IN_FLIGHT = 500

#: RCODEs with which a server may be saying that it does not take EDNS.
_NO_EDNS = (dns.rcode.FORMERR, dns.rcode.NOTIMP)


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
    @ivar exchanger: what sends the queries, and bounds the sockets open
        at once.
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
        self.exchanger = Exchanger(
            reactor, timeout, max_in_flight=max_in_flight, round_trips=infra,
            connect_timeout_is_silence=True,
        )
        self._inflight: dict[tuple[Any, ...], list[Deferred[dns.message.Message]]] = {}

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
        self.exchanger.close()

    async def _send(
        self,
        address: str,
        qname: dns.name.Name,
        qtype: int,
        do: bool,
        cd: bool,
        spend: Callable[[], None],
    ) -> dns.message.Message:
        # over UDP, and over TCP when truncated (another query for spend);
        # a server that answered over UDP is not silent, so a TCP failure
        # fails this query only
        server = Upstream(address, self.port)
        edns = self.infra.edns(address)
        reply = await self.exchanger.ask(server, _query(qname, qtype, do, cd, edns), spend)
        if edns and reply.rcode() in _NO_EDNS:
            spend()
            plain = await self.exchanger.ask(server, _query(qname, qtype, do, cd, False), spend)
            if plain.rcode() not in _NO_EDNS:
                self.log.info("{address} does not take EDNS", address=address)
                self.infra.no_edns(address)
            reply = plain
        return reply


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
