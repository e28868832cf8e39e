# -*- test-case-name: tests.resolver.test_forward -*-
"""
Forwarding (C{--forward HOST:PORT}): names outside our zones are asked of
upstream resolvers, and their answers cached.

Each question goes to the upstreams in the order given, over UDP with RD=1
and a random ID from a new socket on a random source port, and over TCP when
the reply is truncated (L{dnstls.resolver.exchange}: only a reply that
matches the question counts).
A DNS-over-TLS upstream (C{--forward-tls HOST:PORT#NAME}, see
L{dnstls.resolver.forward_tls}) takes its turn in the same order, on its one
persistent, pipelined connection.
An upstream that does not answer within C{timeout} seconds, refuses the
connection, or answers SERVFAIL, REFUSED, FORMERR or NOTIMP is skipped for
the next one; when none is left the query fails with L{ForwardError},
which the handler turns into SERVFAIL with an Extended DNS Error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dns.edns
import dns.name
import dns.rcode
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from dnstls.resolver.cache import Answer
from dnstls.resolver.exchange import Exchanger, Timeout, Upstream, make_query, within
from dnstls.resolver.forward_tls import TLSClient
from dnstls.resolver.recursion import ForwardError
from dnstls.resolver.tlsupstream import TLSUpstream
from dnstls.transport.listen import parse_address

#: Seconds to wait for one upstream before trying the next.
DEFAULT_TIMEOUT = 2.0
#: Upstream RCODEs that are answers; any other moves on to the next upstream.
_ANSWERS = frozenset({dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN})


def parse_upstream(text: str) -> Upstream:
    """
    Parse C{HOST:PORT} (IPv6 in brackets) of an upstream.

    @raise ValueError: with a message for the operator.
    """
    address = parse_address(text)
    if address.port == 0:
        raise ValueError(f"{text!r}: an upstream needs a port other than 0")
    return Upstream(address.host, address.port)


class Forwarder:
    """
    Asks upstream resolvers, one after the other until one answers.

    @ivar upstreams: where to ask, in order.
    @ivar timeout: seconds to wait for each (per transport).
    @ivar exchanger: what sends the queries over UDP and TCP.
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
        self.exchanger = Exchanger(reactor, timeout)
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
                    waiting = self.tls_clients[upstream].query(query)
                    reply = await within(self.reactor, self.timeout, waiting)
                else:
                    reply = await self.exchanger.ask(upstream, query)
            except Timeout:
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

    def close(self) -> None:
        """
        Close the connections to DNS-over-TLS upstreams.
        """
        for client in self.tls_clients.values():
            client.close()
