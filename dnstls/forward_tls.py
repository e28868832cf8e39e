# -*- test-case-name: tests.test_forward_tls -*-
"""
Forwarding over DNS over TLS (C{--forward-tls HOST:PORT#NAME}, RFC 7858).

Each upstream gets one persistent TLS connection (TLS 1.2 or later, SNI
C{NAME}, ALPN C{dot}), whose certificate must be valid for C{NAME} under the
roots of C{--forward-tls-ca} (the system's by default), checked by
service-identity; or, when the upstream has SPKI pins
(C{--forward-tls-pin}), whose public key must hash to one of them (RFC
7858 4.2), whatever signed it and whatever name it carries.

Queries are pipelined on the connection: several may be in flight at
once, each with an ID no other in-flight query on that connection has, and
a reply is matched to its query by ID and question.  The connection is opened
when the first query needs it and reused until either side closes it; a
query in flight when the upstream closes the connection (an idle upstream
may close at any time) is sent once more on a new connection.  A failed
handshake (a certificate for another name, say) fails the query at once.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.message
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from OpenSSL.crypto import X509
from twisted.internet import ssl
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dnstls.certs import spki_pin
from dnstls.framing import FrameDecoder, FramingError, frame
from dnstls.listen import parse_address
from dnstls.tls import ALPN_DOT


@dataclass(frozen=True)
class TLSUpstream:
    """
    An upstream resolver reached over DNS over TLS, and the name its
    certificate must carry.
    """

    host: str
    port: int
    name: str
    #: base64 SHA-256 SPKI pins; when there are any, they authenticate the
    #: upstream instead of the CA and the name.
    pins: tuple[str, ...] = ()

    def __str__(self) -> str:
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return f"{address}#{self.name}"


def parse_tls_upstream(text: str) -> TLSUpstream:
    """
    Parse C{HOST:PORT#NAME} (IPv6 in brackets).

    @raise ValueError: with a message for the operator.
    """
    address_text, hash_sign, name = text.partition("#")
    name = name.strip().rstrip(".")
    if not hash_sign or not name:
        raise ValueError(f"{text!r}: give the name the upstream's certificate is for: HOST:PORT#NAME")
    address = parse_address(address_text)
    if address.port == 0:
        raise ValueError(f"{text!r}: an upstream needs a port other than 0")
    return TLSUpstream(address.host, address.port, name)


def load_trust_root(path: str | None) -> IOpenSSLTrustRoot:
    """
    The roots in the PEM file at C{path}, or the system's for C{None}.

    @raise ValueError: if the file cannot be read or holds no certificate.
    """
    trust: IOpenSSLTrustRoot
    if path is None:
        trust = ssl.platformTrust()
        return trust
    try:
        certificates = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: no PEM certificates ({e})") from None
    trust = ssl.trustRootFromCertificates(
        [ssl.Certificate.loadPEM(c.public_bytes(Encoding.PEM)) for c in certificates]
    )
    return trust


def parse_pin(text: str) -> str:
    """
    A base64 SHA-256 SPKI pin, checked.

    @raise ValueError: if it is not 32 bytes in base64.
    """
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{text!r} is not a base64 SHA-256 SPKI pin")
    return base64.b64encode(raw).decode("ascii")


@implementer(IOpenSSLClientConnectionCreator)
class _PinnedClientTLS:
    """
    Client TLS that authenticates the server by the SPKI pin of its
    certificate, sending SNI and offering ALPN C{dot}.
    """

    def __init__(self, name: str, pins: tuple[str, ...]) -> None:
        self.name = name
        self.pins = frozenset(pins)
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
        context.set_alpn_protos([ALPN_DOT])
        context.set_verify(SSL.VERIFY_PEER, self._verify)
        self.context = context

    def _verify(
        self, connection: SSL.Connection, certificate: X509, errno: int, depth: int, ok: int
    ) -> bool:
        if depth != 0:
            return True
        return spki_pin(certificate.to_cryptography()) in self.pins

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        connection.set_tlsext_host_name(self.name.encode("idna"))
        connection.set_connect_state()
        return connection


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

    #: Whether the TLS handshake finished.
    secure = False

    def handshakeCompleted(self) -> None:
        self.secure = True

    def __init__(self, lost: Callable[[_DoTConnection], None]) -> None:
        self._lost = lost
        self.decoder = FrameDecoder()
        self.pending: dict[int, tuple[dns.message.Message, Deferred[dns.message.Message]]] = {}
        self.closed = False

    def ask(self, query: dns.message.Message) -> Deferred[dns.message.Message]:
        """
        Send C{query} (with its ID changed to one not in flight); fires with
        the reply.
        """
        assert self.transport is not None
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
        from dnstls.forward import matching_reply

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
                waiting.callback(reply)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
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
        self.options: IOpenSSLClientConnectionCreator
        if upstream.pins:
            self.options = _PinnedClientTLS(upstream.name, upstream.pins)
        else:
            self.options = ssl.optionsForClientTLS(
                upstream.name,
                trustRoot=trust,
                acceptableProtocols=[ALPN_DOT],
                extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2},
            )
        self.timeout = timeout
        self._connection: _DoTConnection | None = None
        self._waiting: list[Deferred[_DoTConnection]] = []
        #: How many connections were opened (for tests and logs).
        self.connections = 0

    def _connected(self) -> Deferred[_DoTConnection]:
        if self._connection is not None and not self._connection.closed:
            return succeed(self._connection)
        waiting: Deferred[_DoTConnection] = Deferred()
        self._waiting.append(waiting)
        if len(self._waiting) == 1:
            kind = TCP6ClientEndpoint if ":" in self.upstream.host else TCP4ClientEndpoint
            endpoint = wrapClientTLS(
                self.options,
                kind(self.reactor, self.upstream.host, self.upstream.port, timeout=self.timeout),
            )
            self.connections += 1
            connection = _DoTConnection(self._lost)
            endpoint.connect(_Once(connection)).addCallbacks(self._opened, self._failed)
        return waiting

    def _opened(self, connection: Protocol) -> None:
        assert isinstance(connection, _DoTConnection)
        waiting, self._waiting = self._waiting, []
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
        Close the open connection, if any.
        """
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.loseConnection()
