# -*- test-case-name: tests.client.test_client -*-
"""
A blocking DNS client for the four ways dnstls is reached: UDP, TCP, DNS over
TLS, and the TO-bit STARTTLS upgrade of a TCP/53 connection.

It is what the tests, the C{dnstls-query} command and the pytest fixture
use, and what a program that wants to talk to a STARTTLS server can use::

    from dnstls.client import Client, TLSAuth
    client = Client("127.0.0.1", 53, "starttls", TLSAuth(hostname="dns.example.test",
                                                          ca_file="ca.pem"))
    answers = client.query_many([query1, query2])

The STARTTLS transport sends the probe C{STARTTLS. CH TXT} with TO=1 and RD=0,
waits for its reply, and on TO=1 starts a TLS handshake on the same
connection, authenticates the server (by name with service-identity against
a CA file or the system's roots, or by SPKI pin), then sends the real queries
pipelined.  On TO=0 a strict client fails with L{UpgradeDeclined}; an
opportunistic one goes on in clear text and remembers, for C{remember}
seconds (an hour, as the draft suggests), that the server declined, so that
it does not ask again.  A failed handshake is remembered the same way.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname

from dnstls.errors import DNSTLSError
from dnstls.transport.upgrade import PROBE_NAME, TO

TRANSPORTS = ("udp", "tcp", "tls", "starttls")
#: How long an opportunistic client remembers that a server declined.
REMEMBER_DECLINE = 3600.0


class ClientError(DNSTLSError):
    """
    A query could not be completed: no answer, a broken connection, a
    failed or refused TLS handshake.
    """


class UpgradeDeclined(ClientError):
    """
    The server answered the STARTTLS probe with TO=0, or its handshake
    failed, and the client is strict.
    """


class HandshakeFailed(ClientError):
    """
    The TLS handshake did not complete.
    """


class AuthenticationFailed(ClientError):
    """
    The server's certificate does not match the name or pin required.
    """


@dataclass(frozen=True)
class TLSAuth:
    """
    How a client authenticates the TLS server.

    @ivar hostname: the name the certificate must carry (checked with
        service-identity), also sent as SNI.
    @ivar ca_file: PEM roots for the chain; the system's when C{None}.
    @ivar pin: base64 SHA-256 of the server's SubjectPublicKeyInfo; when set
        it is checked instead of the chain.
    @ivar alpn: the ALPN protocols offered.
    """

    hostname: str | None = None
    ca_file: str | None = None
    pin: str | None = None
    alpn: tuple[str, ...] = ("dot",)

    @property
    def opportunistic(self) -> bool:
        """
        Whether nothing is checked (no name and no pin).
        """
        return self.hostname is None and self.pin is None

    def context(self) -> ssl.SSLContext:
        """
        An C{ssl} client context: TLS 1.2 or later, the chain checked
        against C{ca_file} when a name is to be checked.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False  # service-identity checks the name
        if self.hostname is not None and self.pin is None:
            context.verify_mode = ssl.CERT_REQUIRED
            if self.ca_file:
                context.load_verify_locations(cafile=self.ca_file)
            else:
                context.load_default_certs()
        else:
            context.verify_mode = ssl.CERT_NONE
        if self.alpn:
            context.set_alpn_protocols(list(self.alpn))
        return context

    def check(self, tls: ssl.SSLSocket) -> None:
        """
        Check the server's certificate on the established session C{tls}.

        @raise AuthenticationFailed: if the pin or the name does not match.
        """
        der = tls.getpeercert(binary_form=True)
        if der is None:
            raise AuthenticationFailed("the server sent no certificate")
        certificate = x509.load_der_x509_certificate(der)
        if self.pin is not None:
            spki = certificate.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            actual = base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")
            if actual != self.pin:
                raise AuthenticationFailed(f"SPKI pin {actual} is not the expected {self.pin}")
        if self.hostname is not None:
            try:
                verify_certificate_hostname(certificate, self.hostname)
            except VerificationError as e:
                raise AuthenticationFailed(f"the certificate is not for {self.hostname}: {e}") from None


@dataclass
class DeclineMemory:
    """
    The servers that declined the upgrade, and until when to believe them.
    """

    remember: float = REMEMBER_DECLINE
    clock: Callable[[], float] = time.monotonic
    _until: dict[tuple[str, int], float] = field(default_factory=dict)

    def declined(self, server: tuple[str, int]) -> None:
        """
        Remember that C{server} declined just now.
        """
        self._until[server] = self.clock() + self.remember

    def has_declined(self, server: tuple[str, int]) -> bool:
        """
        Whether C{server} declined less than C{remember} seconds ago.
        """
        until = self._until.get(server)
        if until is None:
            return False
        if self.clock() >= until:
            del self._until[server]
            return False
        return True


def probe_query() -> dns.message.Message:
    """
    C{STARTTLS. CH TXT} with RD=0 and TO=1: the recommended first query.
    """
    query = dns.message.make_query(PROBE_NAME, dns.rdatatype.TXT, dns.rdataclass.CH, use_edns=0)
    query.flags = 0
    query.ednsflags |= TO
    return query


def _frame(message: dns.message.Message) -> bytes:
    wire = message.to_wire()
    return struct.pack("!H", len(wire)) + wire


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ClientError("the server closed the connection")
        data += chunk
    return data


def _read_message(sock: socket.socket) -> dns.message.Message:
    (length,) = struct.unpack("!H", _read_exactly(sock, 2))
    try:
        return dns.message.from_wire(_read_exactly(sock, length))
    except dns.exception.DNSException as e:
        raise ClientError(f"unreadable reply: {e}") from None


@dataclass
class Client:
    """
    Queries one server over one transport.

    @ivar transport: C{udp}, C{tcp}, C{tls} or C{starttls}.
    @ivar auth: how to authenticate a TLS server; opportunistic without it.
    @ivar strict: for C{starttls}, fail instead of falling back to clear
        text when the server declines or the handshake fails.
    @ivar last_upgraded: for C{starttls}, whether the last exchange went
        over TLS.
    """

    host: str
    port: int
    transport: str = "udp"
    auth: TLSAuth = field(default_factory=TLSAuth)
    timeout: float = 5.0
    strict: bool = True
    memory: DeclineMemory = field(default_factory=DeclineMemory)
    last_upgraded: bool = False
    last_probe_reply: dns.message.Message | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")

    def query(self, message: dns.message.Message) -> dns.message.Message:
        """
        Send C{message} and return its reply.

        @raise ClientError: on a timeout or a transport failure.
        """
        return self.query_many([message])[0]

    def query_many(self, messages: Sequence[dns.message.Message]) -> list[dns.message.Message]:
        """
        Send C{messages} and return their replies in the same order; on a
        stream they are pipelined on one connection.
        """
        try:
            if self.transport == "udp":
                return [self._udp(message) for message in messages]
            return self._stream(messages)
        except (OSError, dns.exception.DNSException) as e:
            raise ClientError(f"{self.transport} {self.host}:{self.port}: {e}") from None

    def _udp(self, message: dns.message.Message) -> dns.message.Message:
        return dns.query.udp(message, self.host, port=self.port, timeout=self.timeout)

    def _stream(self, messages: Sequence[dns.message.Message]) -> list[dns.message.Message]:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream: socket.socket = sock
            if self.transport == "tls":
                stream = self._handshake(sock)
            elif self.transport == "starttls":
                upgraded = self._starttls(sock)
                if upgraded is None:
                    sock.close()
                    sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                    upgraded = sock
                stream = upgraded
            return self._exchange(stream, messages)
        finally:
            sock.close()

    def _handshake(self, sock: socket.socket) -> ssl.SSLSocket:
        context = self.auth.context()
        try:
            tls = context.wrap_socket(sock, server_hostname=self.auth.hostname)
        except (ssl.SSLError, OSError) as e:
            raise HandshakeFailed(f"TLS handshake with {self.host}:{self.port} failed: {e}") from None
        self.auth.check(tls)
        return tls

    def _starttls(self, sock: socket.socket) -> socket.socket | None:
        """
        Probe and upgrade.  Return the stream to query on, or C{None} when
        an opportunistic client must start again on a new clear-text
        connection (after a failed handshake).
        """
        server = (self.host, self.port)
        self.last_upgraded = False
        if not self.strict and self.memory.has_declined(server):
            return sock
        sock.sendall(_frame(probe_query()))
        reply = _read_message(sock)
        self.last_probe_reply = reply
        if not (reply.edns >= 0 and reply.ednsflags & TO):
            self.memory.declined(server)
            if self.strict:
                raise UpgradeDeclined(f"{self.host}:{self.port} declined the upgrade (TO=0)")
            return sock
        try:
            tls = self._handshake(sock)
        except HandshakeFailed as e:
            self.memory.declined(server)
            if self.strict:
                raise UpgradeDeclined(f"the upgrade was granted, then {e}") from None
            return None
        except ClientError:
            self.memory.declined(server)
            if self.strict:
                raise
            return None
        self.last_upgraded = True
        return tls

    def _exchange(
        self, stream: socket.socket, messages: Sequence[dns.message.Message]
    ) -> list[dns.message.Message]:
        """
        Write every query in one call and match the replies by ID and
        question, whatever their order.
        """
        stream.sendall(b"".join(_frame(message) for message in messages))
        pending = {id(message): message for message in messages}
        replies: dict[int, dns.message.Message] = {}
        while pending:
            reply = _read_message(stream)
            for key, message in list(pending.items()):
                if message.is_response(reply):
                    replies[key] = reply
                    del pending[key]
                    break
        return [replies[id(message)] for message in messages]
