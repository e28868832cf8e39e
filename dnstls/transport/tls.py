# -*- test-case-name: tests.transport.test_tls -*-
"""
One TLS policy object for both doors into the server: the DNS-over-TLS port
(RFC 7858) and the TO-bit upgrade of a TCP/53 connection.

L{TLSPolicy} builds one OpenSSL context per certificate, picks one by SNI
(exact name, then a wildcard, then the default), and holds the profile of
RFC 9325 and RFC 8310: TLS 1.2 and 1.3 only; for 1.2 only ECDHE key
exchange with AEAD suites; no compression, no renegotiation, no 0-RTT; the
ALPN token C{dot} selected when offered, a list of other protocols refused,
and no ALPN at all accepted.  Session resumption is on (tickets, or a
server-side cache when tickets are switched off), also for sessions whose
client closed without close_notify.  A connection a cap refused is closed
before the handshake.  L{TLSPolicy.reload}
swaps the certificates for new handshakes without touching open sessions.

What a session costs is decided here too: an idle session keeps no read or
write buffer (OpenSSL's C{SSL_MODE_RELEASE_BUFFERS}: about 24 kB less per
open connection), and a handshake runs no Python callback but the ALPN one
and, when there are several certificates to choose from, the SNI one.  On
the DoT port, and under an upgraded TCP/53 connection, L{DoTServerProtocol}
hands up all a read brought at once and writes what it encrypts at once
(L{dnstls.transport.tlsio} makes the OpenSSL calls).
"""

from __future__ import annotations

from collections.abc import Sequence

from OpenSSL import SSL
from twisted.internet.interfaces import (
    IAddress,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from dnstls.certs import Credential
from dnstls.transport import tlsio
from dnstls.transport.directsend import write_now

ALPN_DOT = b"dot"
#: TLS 1.2 suites: ECDHE with AES-GCM or ChaCha20-Poly1305 (RFC 9325 4.2).
TLS12_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20"
#: The most plaintext one TLS record carries.
RECORD_WRITE = 2**14
#: How long a resumable session lives, in seconds.
SESSION_LIFETIME = 7200

_OPTIONS = (
    SSL.OP_NO_COMPRESSION
    | SSL.OP_NO_RENEGOTIATION
    | SSL.OP_CIPHER_SERVER_PREFERENCE
    | SSL.OP_NO_SSLv2
    | SSL.OP_NO_SSLv3
    | SSL.OP_NO_TLSv1
    | SSL.OP_NO_TLSv1_1
)


class ALPNRefused(SSL.Error):
    """
    The client offered ALPN protocols, and C{dot} was not among them.
    """


@implementer(IOpenSSLServerConnectionCreator)
class TLSPolicy:
    """
    The server side of every TLS session dnstls accepts.

    @ivar tickets: whether session tickets are issued.
    @ivar credentials: the certificates served, the default first.
    """

    log = Logger()

    def __init__(self, credentials: Sequence[Credential], tickets: bool = True) -> None:
        """
        @param credentials: the default credential first, then any others
            chosen by SNI.
        @param tickets: issue session tickets (RFC 5077, and TLS 1.3's).
        """
        self.tickets = tickets
        self.credentials: tuple[Credential, ...] = ()
        self._default: SSL.Context
        self._by_name: dict[str, SSL.Context] = {}
        self.reload(credentials)

    def reload(self, credentials: Sequence[Credential]) -> None:
        """
        Serve C{credentials} from the next handshake on; sessions already
        open keep theirs.
        """
        if not credentials:
            raise ValueError("at least one credential is needed")
        # With one certificate there is nothing for SNI to choose: no
        # callback, which OpenSSL would call on every handshake that names a host.
        sni = len(credentials) > 1
        contexts = [self._context(credential, sni) for credential in credentials]
        by_name: dict[str, SSL.Context] = {}
        for credential, context in zip(credentials, contexts, strict=True):
            for name in credential.names:
                by_name.setdefault(name, context)
        self._default = contexts[0]
        self._by_name = by_name
        self.credentials = tuple(credentials)

    def _context(self, credential: Credential, sni: bool) -> SSL.Context:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_max_proto_version(SSL.TLS1_3_VERSION)
        options = _OPTIONS | (0 if self.tickets else SSL.OP_NO_TICKET)
        context.set_options(options)
        context.set_cipher_list(TLS12_CIPHERS)
        context.use_certificate(credential.leaf)
        for intermediate in credential.chain[1:]:
            context.add_extra_chain_cert(intermediate)
        context.use_privatekey(credential.key)
        context.check_privatekey()
        # An idle session gives its 16 kB read and write buffers back; they
        # are allocated again for the next record.
        context.set_mode(SSL.MODE_RELEASE_BUFFERS)
        context.set_session_id(b"dnstls")
        context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        context.set_timeout(SESSION_LIFETIME)
        context.set_alpn_select_callback(_select_alpn)
        if sni:
            context.set_tlsext_servername_callback(self._servername)
        return context

    def _servername(self, connection: SSL.Connection) -> None:
        """
        Switch to the context whose certificate names the SNI host name.
        """
        raw = connection.get_servername()
        if not raw:
            return
        name = raw.decode("ascii", "replace").lower().rstrip(".")
        context = self._by_name.get(name)
        if context is None and "." in name:
            context = self._by_name.get("*." + name.split(".", 1)[1])
        if context is not None and context is not connection.get_context():
            connection.set_context(context)

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """
        A new server-side OpenSSL connection, starting on the default
        context.
        """
        return _ServerConnection(self._default, None)

    @property
    def default(self) -> Credential:
        """
        The credential served without SNI or for an unknown name.
        """
        return self.credentials[0]


class _ServerConnection(SSL.Connection):
    """
    An OpenSSL connection whose handshake reports a client's close_notify
    during the handshake as the end of the connection it is, and which takes
    a close without close_notify after the handshake as a clean end.

    pyOpenSSL raises C{ZeroReturnError()}, without the error list Twisted's
    TLS transport reads, so a client that gives up mid-handshake (kdig with
    a pin or a name the certificate does not match) would leave an
    C{IndexError} traceback in the log.

    Once the handshake is done, a client's close without close_notify (what
    most DNS clients do) is a clean end of the session.  OpenSSL otherwise
    counts such a close as a fatal error and drops the session from the
    server's cache, so that it cannot be resumed: with tickets off, TLS 1.2
    and TLS 1.3 resumption depend on that cache.  TLS 1.1 and later allow
    resuming such a session (RFC 5246 section 7.2.1).  Only after the
    handshake: a close in the middle of one is a failed handshake.  Twisted's
    TLS transport finishes every handshake through L{do_handshake}, so the
    option is set there rather than by an info callback, which OpenSSL
    would call some twenty times a handshake.
    """

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except SSL.ZeroReturnError:
            raise SSL.Error(
                [("SSL routines", "", "unexpected eof while reading: close_notify in the handshake")]
            ) from None
        self.set_options(SSL.OP_IGNORE_UNEXPECTED_EOF)


class DoTServerProtocol(TLSMemoryBIOProtocol):
    """
    The TLS layer of a DNS-over-TLS connection, made for many small
    messages: the plaintext of every record a read brought is handed up in
    one C{dataReceived} (so the queries it holds are answered together and
    their answers written, and encrypted, in one go), and what TLS has to
    send goes to the socket at once when nothing is queued before it.

    Twisted's default TLS transport instead hands up each record by itself
    and gathers small writes until the next turn of the reactor loop: for
    pipelined queries, one answer batch and one delayed call per query.

    The TLS 1.3 session tickets OpenSSL writes when the client's Finished
    arrives wait in its buffer for the next thing sent: the first answer,
    normally, in whose segment they then go.  Sent alone, a millisecond
    ahead of the answer, they cost a segment, and dnsperf 2.10 sat ~100 ms
    on a fifth of its new connections.  A client that never asks gets none
    (TLS 1.3 clients do not wait for tickets).  No timer is used: a timer
    per connection woke the reactor once more per handshake.  A TLS 1.2
    server's last flight is part of the handshake and is sent at once.
    """

    #: whether the read being handled is still part of the handshake
    _handshaking = False

    def dataReceived(self, data: bytes) -> None:
        """
        Feed what the network brought to TLS, and hand up the plaintext.
        """
        if not self._handshakeDone:
            self._handshaking = True
            try:
                super().dataReceived(data)  # type: ignore[no-untyped-call]
            finally:
                self._handshaking = False
            return
        tlsio.feed(self._tlsConnection, data)
        if self._appSendBuffer:
            self._unbufferPendingWrites()  # type: ignore[no-untyped-call]
        self._flushReceiveBIO()

    def _flushReceiveBIO(self) -> None:
        # Twisted's loop, but the plaintext is gathered and delivered once,
        # before a clean end of the session the same read brought. A fatal
        # error (a tampered record) ends the session first, with its own
        # reason: the plaintext before it is dropped, as no answer to it
        # could be encrypted on a session in error.
        if self._lostTLSConnection:
            return
        received, ending = tlsio.read_all(self._tlsConnection)
        if ending is not None and not isinstance(ending, SSL.ZeroReturnError):
            self._flushSendBIO()  # the alert OpenSSL wrote
            self._tlsShutdownFinished(Failure(ending))  # type: ignore[no-untyped-call]
            return
        if received and not self._aborted:
            ProtocolWrapper.dataReceived(self, received)
        if ending is not None and not self._lostTLSConnection:
            self._shutdownTLS()  # type: ignore[no-untyped-call]
            self._tlsShutdownFinished(None)  # type: ignore[no-untyped-call]
        elif self._handshaking and not received and self._tls13():
            # the handshake just ended on the client's Finished: what
            # OpenSSL wrote is the tickets; they wait for the first answer
            return
        self._flushSendBIO()

    def _tls13(self) -> bool:
        return bool(self._tlsConnection.get_protocol_version_name() == "TLSv1.3")

    def _write(self, octets: bytes) -> None:
        # Twisted's loop of one record's worth at a time, with the
        # ciphertext sent once at the end.
        if self._lostTLSConnection:
            return
        connection = self._tlsConnection
        done = 0
        try:
            while done < len(octets):
                chunk = octets if done == 0 and len(octets) <= RECORD_WRITE else (
                    octets[done : done + RECORD_WRITE]
                )
                done += tlsio.write(connection, chunk)
        except SSL.WantReadError:
            self._bufferedWrite(octets[done:])
        except SSL.Error:
            self._flushSendBIO()
            self._tlsShutdownFinished(Failure())  # type: ignore[no-untyped-call]
            return
        self._flushSendBIO()

    def _bufferedWrite(self, octets: bytes) -> None:
        # Twisted's, without pausing the producer: the DNS protocol above
        # stops reading when paused, and this buffer is written out only
        # once the client's next record is read.  What it holds counts as
        # unsent (StreamConnection.unsent).
        self._appSendBuffer.append(octets)

    def _flushSendBIO(self) -> None:
        octets = tlsio.drain(self._tlsConnection)
        if octets:
            transport = self.transport
            write_now(transport, getattr(transport, "socket", None), octets)


class TLSServerFactory(TLSMemoryBIOFactory):
    """
    The TLS port's factory: TLS around a stream factory, which refuses a
    connection (a connection cap) by building no protocol.  The layers of
    upgraded TCP/53 connections come from one too
    (L{dnstls.transport.starttls}).

    Twisted's C{TLSMemoryBIOFactory} would wrap the missing protocol and go
    on with the handshake, then fail with a traceback; this one builds
    nothing either, so the port closes the connection before any TLS byte.
    """

    noisy = False
    protocol = DoTServerProtocol

    def __init__(
        self,
        policy: IOpenSSLServerConnectionCreator,
        factory: IProtocolFactory,
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__(policy, False, factory, clock)

    def buildProtocol(self, addr: IAddress | None) -> TLSMemoryBIOProtocol | None:  # type: ignore[override]
        """
        TLS around the stream factory's protocol, or C{None} when it refused.
        """
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return self.protocol(self, wrapped)  # type: ignore[no-untyped-call]


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> bytes:
    """
    Select C{dot}; refuse a handshake whose ALPN list lacks it (RFC 7858
    section 3.2 and the IANA registration of C{dot}).
    """
    if ALPN_DOT in offered:
        return ALPN_DOT
    # The (library, function, reason) list form of OpenSSL's error queue,
    # which Twisted's TLS transport reads when the handshake fails.
    raise ALPNRefused([("SSL routines", "", "no application protocol: dot not offered")])
