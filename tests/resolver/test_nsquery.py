"""
Tests for L{dnstls.resolver.nsquery.NameServerQueries}: on loopback sockets,
the retry over TCP after TC=1 is charged to the question, and a server that
does not take the TCP connection counts as silent; on a memory reactor,
identical queries in flight sent once, the bound on upstream sockets, and
close().
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from dnstls.resolver.exchange import Upstream
from dnstls.resolver.infracache import DOWN_AFTER, UNKNOWN_RTT, InfraCache
from dnstls.resolver.nsquery import Busy, NameServerQueries, Timeout

A = dns.rdatatype.A


class TruncatingServer:
    """
    On one port of 127.0.0.1: UDP answers every query with TC=1; TCP
    listens with a full accept queue, so a new connection is never taken
    (its SYN is dropped, as from a server behind a silent firewall).
    """

    def __init__(self) -> None:
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.tcp.listen(0)
        # fill the accept queue: these are never accepted
        self.fillers = []
        for _ in range(2):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.2)
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.queries += 1
            reply = dns.message.make_response(dns.message.from_wire(data))
            reply.flags |= dns.flags.TC
            self.udp.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for each in [self.udp, self.tcp, *self.fillers]:
            each.close()


@pytest.fixture
def truncating() -> Iterator[TruncatingServer]:
    server = TruncatingServer()
    yield server
    server.close()


@pytest_twisted.ensureDeferred
async def test_tcp_retry_charged_and_unanswered_connect_is_a_timeout(truncating: TruncatingServer) -> None:
    """TC=1, then a TCP connection never taken: both queries charged, a Timeout, the server not down."""
    infra = InfraCache(reactor)
    servers = NameServerQueries(reactor, infra, 0.3, truncating.port)
    charged: list[None] = []
    for _ in range(DOWN_AFTER):
        with pytest.raises(Timeout):
            await servers.ask(
                "127.0.0.1", dns.name.from_text("big.example."), dns.rdatatype.TXT, False, False,
                lambda: charged.append(None),
            )
    assert truncating.queries == DOWN_AFTER
    assert len(charged) == 2 * DOWN_AFTER
    # it answered over UDP: not silent, its RTT what UDP measured
    assert not infra.is_down("127.0.0.1")
    assert infra.rtt("127.0.0.1") < UNKNOWN_RTT
    servers.close()


class _Stop(Exception):
    """A question's work bound, in the test below."""


def test_waiting_question_not_failed_by_the_senders_bound() -> None:
    """A question waiting for another's identical upstream query is not failed by the other's work bound."""

    gates: list[defer.Deferred[None]] = [defer.Deferred(), defer.Deferred()]
    waiting = list(gates)

    class Scripted(NameServerQueries):
        """Each query waits for the test, then spends once more (an EDNS fallback)."""

        async def _send(self, *args: Any) -> dns.message.Message:
            await waiting.pop(0)
            args[-1]()
            return reply

    def budget(allowed: int) -> Any:
        spent = []

        def spend() -> None:
            if len(spent) == allowed:
                raise _Stop()
            spent.append(1)
        return spend

    name = dns.name.from_text("noedns.poison.test.")
    reply = dns.message.make_response(dns.message.make_query(name, A))
    queries = Scripted(MemoryReactorClock(), InfraCache(Clock()), 1.0)
    sender = defer.ensureDeferred(queries.ask("192.0.2.1", name, A, False, False, budget(1)))
    waiter = defer.ensureDeferred(queries.ask("192.0.2.1", name, A, False, False, budget(2)))
    failures: list[Failure] = []
    sender.addErrback(failures.append)
    gates[0].callback(None)
    assert len(failures) == 1 and failures[0].check(_Stop)
    assert not waiter.called  # it sent the query again, on its own budget
    gates[1].callback(None)
    got: list[dns.message.Message] = []
    waiter.addCallback(got.append)
    assert got == [reply]


def test_close_abandons_tcp_connections_being_made() -> None:
    """close() fails a TCP query whose connection is still being made, instead of leaving it pending."""
    memory = MemoryReactorClock()
    queries = NameServerQueries(memory, InfraCache(memory), 30.0)
    query = dns.message.make_query("big.tc.test.", "TXT")
    waiting = defer.ensureDeferred(queries.exchanger.tcp(Upstream("192.0.2.1", 53), query))
    assert len(memory.tcpClients) == 1 and not waiting.called
    failures: list[Failure] = []
    waiting.addErrback(failures.append)
    queries.close()
    assert len(failures) == 1 and failures[0].check(ConnectingCancelledError)


def test_upstream_sockets_bounded() -> None:
    """Past max_in_flight open upstream sockets a query fails at once instead of opening another."""
    memory = MemoryReactorClock()
    queries = NameServerQueries(memory, InfraCache(memory), 30.0, max_in_flight=1)
    query = dns.message.make_query("big.tc.test.", "TXT")
    first = defer.ensureDeferred(queries.exchanger.tcp(Upstream("192.0.2.1", 53), query))
    second = defer.ensureDeferred(queries.exchanger.tcp(Upstream("192.0.2.2", 53), query))
    failures: list[Failure] = []
    second.addErrback(failures.append)
    assert len(failures) == 1 and failures[0].check(Busy)
    assert len(memory.tcpClients) == 1 and not first.called
    first.addErrback(lambda _: None)
    queries.close()
