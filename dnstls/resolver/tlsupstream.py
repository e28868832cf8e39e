# -*- test-case-name: tests.resolver.test_tlsupstream -*-
"""
A DNS-over-TLS upstream (C{--forward-tls HOST:PORT#NAME}, RFC 7858) and how
it is authenticated, for L{dnstls.resolver.forward_tls}.

Its certificate must be valid for C{NAME} under the roots of
C{--forward-tls-ca} (the system's by default, L{load_trust_root}), checked
by service-identity; or, when the upstream has SPKI pins
(C{--forward-tls-pin}, L{parse_pin}), its public key must hash to one of
them (RFC 7858 4.2), whatever signed it and whatever name it carries.
Either way the client offers TLS 1.2 or later, SNI C{NAME} and ALPN C{dot}
(L{client_tls}).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from OpenSSL.crypto import X509
from twisted.internet import ssl
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from dnstls.certs import spki_pin
from dnstls.resolver.exchange import Upstream
from dnstls.transport.listen import parse_address
from dnstls.transport.tls import ALPN_DOT


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
        return f"{Upstream(self.host, self.port)}#{self.name}"


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


def client_tls(upstream: TLSUpstream, trust: IOpenSSLTrustRoot) -> IOpenSSLClientConnectionCreator:
    """
    The client side of TLS for C{upstream}: its pins, or its name under the
    roots C{trust}.
    """
    options: IOpenSSLClientConnectionCreator
    if upstream.pins:
        options = _PinnedClientTLS(upstream.name, upstream.pins)
    else:
        options = ssl.optionsForClientTLS(
            upstream.name,
            trustRoot=trust,
            acceptableProtocols=[ALPN_DOT],
            extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2},
        )
    return options
