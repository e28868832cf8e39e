"""
Tests for L{dnstls.resolver.nsquery.NameServerQueries} on loopback sockets: the
retry over TCP after TC=1 is charged to the question, and a server that
does not take the TCP connection counts as silent.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import pytest
import pytest_twisted
from twisted.internet import reactor

from dnstls.resolver.infracache import DOWN_AFTER, UNKNOWN_RTT, InfraCache
from dnstls.resolver.nsquery import NameServerQueries, Timeout


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
