"""
The same kind of client tests as L{tests.testing.test_testing}, written the way a
developer of a Twisted (or asyncio) DNS client would: pytest-twisted tests
that yield Deferreds from C{twisted.names} and from a Twisted DNS-over-TLS
client, blocking clients run with C{deferToThread}, and C{dns.asyncquery}
under C{asyncio.run}.  The fixtures are those of the plugin.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import pytest
import pytest_twisted
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.threads import deferToThread
from twisted.names import client as names_client
from twisted.names import dns as names_dns
from twisted.names import error as names_error
from twisted.protocols.basic import Int16StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from dnstls.client import Client, ClientError, TLSAuth, UpgradeDeclined
from dnstls.testing import TestServer
from tests.testing.test_testing import MAIL, WWW, addresses, query

Factory = Callable[..., TestServer]


def resolver(server: TestServer) -> names_client.Resolver:
    """
    A C{twisted.names} resolver that asks C{server} (UDP, then TCP on the
    same port when an answer is truncated).
    """
    return names_client.Resolver(servers=[server.udp])


def dotted(answers: tuple[list[Any], list[Any], list[Any]]) -> list[str]:
    """
    The IPv4 addresses in a C{twisted.names} lookup result.
    """
    return [record.payload.dottedQuad() for record in answers[0] if record.type == names_dns.A]


@implementer(IHandshakeListener)
class Pipeline(Int16StringReceiver):
    """
    A Twisted DNS-over-TCP/TLS client that writes several queries in one
    write and collects the replies as they come.
    """

    def __init__(self, wires: list[bytes], tls: bool) -> None:
        self.wires = wires
        self.tls = tls
        self.replies: list[dns.message.Message] = []
        self.done: Deferred[list[dns.message.Message]] = Deferred()

    def _send(self) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(len(w).to_bytes(2, "big") + w for w in self.wires))

    def connectionMade(self) -> None:
        if not self.tls:
            self._send()

    def handshakeCompleted(self) -> None:
        self._send()

    def stringReceived(self, string: bytes) -> None:
        self.replies.append(dns.message.from_wire(string))
        if len(self.replies) == len(self.wires):
            assert self.transport is not None
            self.transport.loseConnection()
            self.done.callback(self.replies)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.done.called:
            self.done.errback(reason)


def pipeline(server: TestServer, wires: list[bytes], tls: bool = True) -> Deferred[list[dns.message.Message]]:
    """
    Send C{wires} pipelined to C{server} over TLS (verifying its name
    against the throwaway CA, offering ALPN C{dot}) or TCP, and fire with
    the replies in the order they came.
    """
    return connect_pipeline(server, wires, tls).done


def connect_pipeline(server: TestServer, wires: list[bytes], tls: bool = True) -> Pipeline:
    """
    The L{Pipeline} that sends C{wires} to C{server} as L{pipeline} does,
    connecting; its C{done} fires with the replies, or fails with the
    reason the connection was lost first.
    """
    host, port = server.tls if tls else server.tcp
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=5)
    if tls:
        trust = Certificate.loadPEM(Path(server.ca_path).read_bytes())
        options = optionsForClientTLS(server.server_name, trustRoot=trust, acceptableProtocols=[b"dot"])
        endpoint = wrapClientTLS(options, endpoint)
    protocol = Pipeline(wires, tls)
    connectProtocol(endpoint, protocol).addErrback(protocol.done.errback)
    return protocol


@pytest_twisted.inlineCallbacks
def test_twisted_names_lookup(dnstls_test_server: TestServer) -> Generator[Deferred[Any], Any, None]:
    """
    A C{twisted.names} resolver pointed at the fixture gets the zone's
    answers, and the log shows its UDP query.
    """
    server = dnstls_test_server
    answers = yield resolver(server).lookupAddress("www.example.test")
    assert dotted(answers) == ["192.0.2.80"]
    [entry] = server.queries()
    assert entry["transport"] == "udp" and entry["name"] == WWW and entry["type"] == "A"


@pytest_twisted.inlineCallbacks
def test_twisted_delay(dnstls_test_server: TestServer) -> Generator[Deferred[Any], Any, None]:
    """
    A delayed name keeps a Twisted client waiting that long, another name
    does not.
    """
    server = dnstls_test_server
    server.faults(delay={"www.example.test": 0.5})
    start = time.monotonic()
    answers = yield resolver(server).lookupAddress("www.example.test")
    slow = time.monotonic() - start
    start = time.monotonic()
    yield resolver(server).lookupAddress("mail.example.test")
    fast = time.monotonic() - start
    assert dotted(answers) == ["192.0.2.80"]
    assert 0.5 <= slow < 4
    assert fast < 0.4


@pytest_twisted.inlineCallbacks
def test_twisted_rcodes_and_drop(dnstls_test_server: TestServer) -> Generator[Deferred[Any], Any, None]:
    """
    SERVFAIL, REFUSED and a dropped query reach a Twisted client as its own
    errors, while other names are answered.
    """
    server = dnstls_test_server
    server.faults(
        rcodes={"www.example.test": "SERVFAIL", "example.test": "REFUSED", "mail.example.test": "drop"}
    )
    expected = [
        ("www.example.test", names_error.DNSServerError),
        ("example.test", names_error.DNSQueryRefusedError),
        ("mail.example.test", defer.TimeoutError),
    ]
    for name, error in expected:
        with pytest.raises(error):
            yield resolver(server).lookupAddress(name, timeout=(0.3,))
    server.faults(rcodes={"mail.example.test": "drop"})
    answers = yield resolver(server).lookupAddress("www.example.test")
    assert dotted(answers) == ["192.0.2.80"]


@pytest_twisted.inlineCallbacks
def test_twisted_truncation(dnstls_test_server: TestServer) -> Generator[Deferred[Any], Any, None]:
    """
    With UDP truncated, C{twisted.names} retries over TCP and gets the
    whole answer; the log shows both tries.
    """
    server = dnstls_test_server
    server.faults(truncate_udp=True)
    answers = yield resolver(server).lookupAddress("www.example.test")
    assert dotted(answers) == ["192.0.2.80"]
    assert [entry["transport"] for entry in server.queries()] == ["udp", "tcp"]


@pytest_twisted.inlineCallbacks
def test_twisted_tls_pipeline_reversed(dnstls_test_server: TestServer) -> Generator[Deferred[Any], Any, None]:
    """
    A Twisted DNS-over-TLS client gets pipelined answers in order, then in
    reverse order under the fault, over TLS and TCP alike.
    """
    server = dnstls_test_server
    queries = [query(name) for name in (WWW, MAIL, "example.test.")]
    wires = [q.to_wire() for q in queries]
    ids = [q.id for q in queries]
    replies = yield pipeline(server, wires)
    assert [r.id for r in replies] == ids
    server.faults(reverse=True)
    for tls in (True, False):
        replies = yield pipeline(server, wires, tls)
        assert [r.id for r in replies] == ids[::-1]
    logged = server.queries()
    assert logged[0]["tls"]["alpn"] == "dot" and logged[0]["tls"]["sni"] == server.server_name


@pytest_twisted.inlineCallbacks
def test_twisted_close_after(dnstls_test_server: TestServer) -> Generator[Deferred[Any], Any, None]:
    """
    Under C{close_after=2} a Twisted client that pipelines three queries
    gets two answers and loses the connection.
    """
    server = dnstls_test_server
    server.faults(close_after=2)
    protocol = connect_pipeline(server, [query(n).to_wire() for n in (WWW, MAIL, WWW)])
    with pytest.raises(Exception) as lost:
        yield protocol.done
    assert "ConnectionDone" in repr(lost.value) or "ConnectionLost" in repr(lost.value)
    assert [addresses(reply) for reply in protocol.replies] == [["192.0.2.80"], ["192.0.2.25"]]


@pytest_twisted.inlineCallbacks
def test_twisted_tls_other_name(dnstls_factory: Factory) -> Generator[Deferred[Any], Any, None]:
    """
    A Twisted TLS client that checks the name refuses a certificate for
    another name; the project's client checking the pin, run in a thread,
    accepts it.
    """
    server = dnstls_factory(certificate="other-name")
    try:
        yield pipeline(server, [query().to_wire()])
    except Exception as e:  # the handshake or the name check fails
        failure = Failure(e)
        assert failure.check(SSL.Error, VerificationError), failure
    else:
        pytest.fail("a certificate for another name was accepted")
    host, port = server.tls
    pinned = Client(host, port, "tls", TLSAuth(pin=server.pin))
    reply = yield deferToThread(pinned.query, query())
    assert addresses(reply) == ["192.0.2.80"]


@pytest_twisted.inlineCallbacks
def test_twisted_starttls_in_a_thread(dnstls_test_server: TestServer) -> Generator[Deferred[Any], Any, None]:
    """
    The blocking STARTTLS client run with C{deferToThread} upgrades, is
    declined under the fault, and upgrades again after a reset.
    """
    server = dnstls_test_server
    host, port = server.tcp

    def client() -> Client:
        return Client(host, port, "starttls", TLSAuth(hostname=server.server_name, ca_file=server.ca_path))

    reply = yield deferToThread(client().query, query())
    assert addresses(reply) == ["192.0.2.80"]
    server.faults(decline_upgrade=True)
    with pytest.raises(UpgradeDeclined):
        yield deferToThread(client().query, query())
    server.faults(decline_upgrade=False, abort_handshake=True)
    with pytest.raises(ClientError):
        yield deferToThread(client().query, query())
    server.reset_faults()
    reply = yield deferToThread(client().query, query(MAIL))
    assert addresses(reply) == ["192.0.2.25"]
    logged = server.queries()
    assert [e["name"] for e in logged].count("STARTTLS.") == 4
    asked = [(e["name"], e["upgraded"]) for e in logged if e["name"] != "STARTTLS."]
    assert asked == [(WWW, True), (MAIL, True)]


@pytest_twisted.ensureDeferred
async def test_async_def_under_twisted(dnstls_test_server: TestServer) -> None:
    """
    An C{async def} test awaiting Twisted Deferreds sees faults change
    between awaits.
    """
    server = dnstls_test_server
    server.faults(rcodes={"www.example.test": "REFUSED"})
    with pytest.raises(names_error.DNSQueryRefusedError):
        await resolver(server).lookupAddress("www.example.test")
    server.reset_faults()
    answers = await resolver(server).lookupAddress("www.example.test")
    assert dotted(answers) == ["192.0.2.80"]


def test_asyncio_client(dnstls_test_server: TestServer) -> None:
    """
    An asyncio client (C{dns.asyncquery}) run with C{asyncio.run} gets a
    delayed answer late and the others at once, over UDP and TLS.
    """
    server = dnstls_test_server
    server.faults(delay={"www.example.test": 0.5})

    async def timed(coroutine: Any) -> tuple[dns.message.Message, float]:
        start = time.monotonic()
        reply = await coroutine
        return reply, time.monotonic() - start

    async def main() -> list[tuple[dns.message.Message, float]]:
        (udp_host, udp_port), (tls_host, tls_port) = server.udp, server.tls
        return list(
            await asyncio.gather(
                timed(dns.asyncquery.udp(query(WWW), udp_host, port=udp_port, timeout=5)),
                timed(dns.asyncquery.udp(query(MAIL), udp_host, port=udp_port, timeout=5)),
                timed(
                    dns.asyncquery.tls(
                        query(MAIL), tls_host, port=tls_port, timeout=5,
                        verify=server.ca_path, server_hostname=server.server_name,
                    )
                ),
            )
        )

    (www, slow), (mail, fast), (mail_tls, _) = asyncio.run(main())
    assert addresses(www) == ["192.0.2.80"] and 0.5 <= slow < 4
    assert addresses(mail) == ["192.0.2.25"] and fast < 0.4
    assert addresses(mail_tls) == ["192.0.2.25"]
    assert {entry["transport"] for entry in server.queries()} == {"udp", "tls"}


def test_asyncio_drop(dnstls_test_server: TestServer) -> None:
    """
    An asyncio client times out on a dropped name and not on the others.
    """
    server = dnstls_test_server
    server.faults(rcodes={WWW: "drop"})
    host, port = server.udp

    async def main() -> dns.message.Message:
        with pytest.raises(dns.exception.Timeout):
            await dns.asyncquery.udp(query(WWW), host, port=port, timeout=0.3)
        return await dns.asyncquery.udp(query(MAIL), host, port=port, timeout=5)

    assert asyncio.run(main()).rcode() == dns.rcode.NOERROR
