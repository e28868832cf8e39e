"""
Tests for L{dnstls.transport.tls.TLSPolicy} in memory: a server and a client
L{TLSMemoryBIOFactory} joined by L{twisted.test.iosim}, or two pyOpenSSL
connections over memory BIOs, for the TLS profile (RFC 9325, RFC 8310),
ALPN, SNI, resumption and reload.

Where a test says a client is refused, a control handshake with the same
client against a permissive server shows the client could have done it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from OpenSSL import SSL
from OpenSSL._util import lib as _lib
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient
from zope.interface import implementer

from dnstls.certs import Credential, load_credential
from dnstls.transport.tls import DoTServerProtocol, TLSPolicy, TLSServerFactory
from tests.certs import Issuer, Leaf, make_ca, make_leaf
from tests.tlsmemory import handshake, move, pem_certificate


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """One side's application: what it received, whether it shook hands, why it was lost."""

    def __init__(self) -> None:
        self.data = b""
        self.reads: list[bytes] = []
        self.handshook = False
        self.made = False
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        self.reads.append(data)

    def handshakeCompleted(self) -> None:
        self.handshook = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason


class Recorders(Factory):
    """Builds L{Recorder}s, or refuses (returns C{None}) like a connection cap."""

    def __init__(self, refuse: bool = False) -> None:
        self.built: list[Recorder] = []
        self.refuse = refuse

    def buildProtocol(self, addr: object) -> Recorder | None:  # type: ignore[override]
        if self.refuse:
            return None
        protocol = Recorder()
        self.built.append(protocol)
        return protocol


class TLSClient:
    """
    One client configuration (one OpenSSL context, so that its sessions can
    be resumed), making connections with their own SNI, ALPN and session.
    """

    def __init__(
        self,
        trust: Issuer | None = None,
        min_version: int | None = None,
        max_version: int | None = None,
        ciphers: bytes | None = None,
        options: int = 0,
    ) -> None:
        self.context = SSL.Context(SSL.TLS_METHOD)
        self.context.set_options(options)
        if min_version is not None:
            self.context.set_min_proto_version(min_version)
        if max_version is not None:
            self.context.set_max_proto_version(max_version)
        if ciphers is not None:
            self.context.set_cipher_list(ciphers)
        if trust is not None:
            self.context.load_verify_locations(str(trust.path))
            self.context.set_verify(SSL.VERIFY_PEER)
        self.context.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)

    def connection(
        self, sni: str | None = None, alpn: Sequence[bytes] = (), session: SSL.Session | None = None
    ) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        if sni is not None:
            connection.set_tlsext_host_name(sni.encode("ascii"))
        if alpn:
            connection.set_alpn_protos(list(alpn))
        if session is not None:
            connection.set_session(session)
        connection.set_connect_state()
        return connection


@implementer(IOpenSSLClientConnectionCreator)
class _ClientCreator:
    def __init__(self, connection: SSL.Connection) -> None:
        self.connection = connection

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return self.connection


@implementer(IOpenSSLServerConnectionCreator)
class _Spy:
    """Passes through to a server connection creator and keeps what it made."""

    def __init__(self, creator: IOpenSSLServerConnectionCreator) -> None:
        self.creator = creator
        self.connections: list[SSL.Connection] = []

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        connection = self.creator.serverConnectionForTLS(tlsProtocol)
        self.connections.append(connection)
        return connection


@dataclass
class Pair:
    """A client and a server joined in memory, after the handshake was pumped."""

    client: Recorder
    server: Recorder | None
    client_tls: SSL.Connection
    server_tls: SSL.Connection
    client_transport: TLSMemoryBIOProtocol
    server_transport: TLSMemoryBIOProtocol
    pump: IOPump
    clock: Clock

    @property
    def ok(self) -> bool:
        """Both sides finished the handshake and neither was lost."""
        return (
            self.client.handshook
            and self.server is not None
            and self.server.handshook
            and self.client.lost is None
            and self.server.lost is None
        )

    @property
    def version(self) -> str:
        return str(self.client_tls.get_protocol_version_name())

    @property
    def cipher(self) -> str:
        return str(self.client_tls.get_cipher_name())

    @property
    def alpn(self) -> bytes:
        return bytes(self.client_tls.get_alpn_proto_negotiated())

    @property
    def peer(self) -> x509.Certificate:
        certificate = self.client_tls.get_peer_certificate()
        assert certificate is not None
        return certificate.to_cryptography()

    @property
    def resumed(self) -> bool:
        return bool(_lib.SSL_session_reused(self.client_tls._ssl))

    def client_error(self) -> str:
        """The client's reason for losing the connection, as text."""
        assert self.client.lost is not None
        return str(self.client.lost.value)

    def exchange(self, request: bytes = b"ping", answer: bytes = b"pong") -> None:
        """Send application data both ways and check it arrived."""
        assert self.server is not None
        before = (self.server.data, self.client.data)
        self.client_transport.write(request)
        self.pump.flush()
        self.server_transport.write(answer)
        self.pump.flush()
        assert self.server.data == before[0] + request
        assert self.client.data == before[1] + answer

    def session(self) -> SSL.Session:
        """The client's session, taken after data was read so that TLS 1.3 tickets arrived."""
        self.exchange()
        return self.client_tls.get_session()


def connect(
    server: IOpenSSLServerConnectionCreator,
    client: TLSClient,
    sni: str | None = None,
    alpn: Sequence[bytes] = (),
    session: SSL.Session | None = None,
    dot_port: bool = False,
) -> Pair:
    """
    A client connected to C{server} in memory, the handshake pumped to its
    end; with C{dot_port}, the server side is the DoT port's TLS layer and
    the client sends each write as a record of its own.
    """
    clock = Clock()
    spy = _Spy(server)
    client_connection = client.connection(sni, alpn, session)
    servers, clients = Recorders(), Recorders()
    server_factory: TLSMemoryBIOFactory
    if dot_port:
        server_factory = TLSServerFactory(spy, servers)
    else:
        server_factory = TLSMemoryBIOFactory(spy, False, servers, clock=clock)
    client_factory = TLSMemoryBIOFactory(
        _ClientCreator(client_connection), True, clients, clock=clock
    )
    if dot_port:
        client_factory.protocol = TLSMemoryBIOProtocol
    client_transport, server_transport, pump = connectedServerAndClient(
        lambda: server_factory.buildProtocol(None),
        lambda: client_factory.buildProtocol(None),
        greet=False,
        clock=clock,
    )
    pump.flush()
    return Pair(
        clients.built[0],
        servers.built[0] if servers.built else None,
        client_connection,
        spy.connections[0],
        client_transport,
        server_transport,
        pump,
        clock,
    )


#: OpenSSL 3's SSL_OP_ALLOW_CLIENT_RENEGOTIATION (not exported by pyOpenSSL).
_OP_ALLOW_CLIENT_RENEGOTIATION = 1 << 8


@implementer(IOpenSSLServerConnectionCreator)
class Permissive:
    """A server that takes anything OpenSSL can do: the control for refusals."""

    def __init__(self, leaf: Leaf, dh: Path | None = None) -> None:
        self.context = SSL.Context(SSL.TLS_METHOD)
        self.context.set_options(_OP_ALLOW_CLIENT_RENEGOTIATION)
        self.context.set_min_proto_version(0)
        self.context.set_cipher_list(b"ALL:@SECLEVEL=0")
        self.context.use_certificate_file(str(leaf.cert))
        self.context.use_privatekey_file(str(leaf.key_path))
        if dh is not None:
            self.context.load_tmp_dh(str(dh))

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self.context, None)


@dataclass(frozen=True)
class Certs:
    """The certificates of one test: a CA and leaves signed by it."""

    ca: Issuer
    main: Leaf
    other: Leaf
    wild: Leaf
    rsa: Leaf
    directory: Path

    def credential(self, leaf: Leaf) -> Credential:
        return load_credential(leaf.cert, leaf.key_path)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA and four leaves: dns.example.test, other.test, *.wild.test (all ECDSA) and an RSA one."""
    directory = tmp_path_factory.mktemp("certs")
    ca = make_ca(directory)
    return Certs(
        ca,
        make_leaf(ca, directory, ("dns.example.test",)),
        make_leaf(ca, directory, ("other.test", "alias.test")),
        make_leaf(ca, directory, ("*.wild.test",)),
        make_leaf(ca, directory, ("rsa.test",), kind="rsa"),
        directory,
    )


@pytest.fixture(scope="module")
def policy(certs: Certs) -> TLSPolicy:
    """The policy with dns.example.test as the default, and other.test and *.wild.test by SNI."""
    return TLSPolicy([certs.credential(leaf) for leaf in (certs.main, certs.other, certs.wild)])


@pytest.fixture(scope="module")
def rsa_policy(certs: Certs) -> TLSPolicy:
    """The policy serving the RSA certificate."""
    return TLSPolicy([certs.credential(certs.rsa)])


# The profile


def test_tls13_by_default(policy: TLSPolicy, certs: Certs) -> None:
    """A client allowing every version gets TLS 1.3, the default certificate, and data both ways."""
    pair = connect(policy, TLSClient(certs.ca))
    assert pair.ok
    assert pair.version == "TLSv1.3"
    assert pair.peer == certs.main.certificate
    pair.exchange()


@pytest.mark.parametrize(
    ("suite", "rsa"),
    [
        ("ECDHE-ECDSA-AES128-GCM-SHA256", False),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", False),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", False),
        ("ECDHE-RSA-AES128-GCM-SHA256", True),
        ("ECDHE-RSA-AES256-GCM-SHA384", True),
    ],
)
def test_tls12_ecdhe_aead(
    policy: TLSPolicy, rsa_policy: TLSPolicy, certs: Certs, suite: str, rsa: bool
) -> None:
    """A TLS 1.2-only client offering one ECDHE suite with AEAD gets it (RFC 9325 4.2)."""
    client = TLSClient(certs.ca, max_version=SSL.TLS1_2_VERSION, ciphers=suite.encode())
    pair = connect(rsa_policy if rsa else policy, client)
    assert pair.ok, pair.client.lost
    assert (pair.version, pair.cipher) == ("TLSv1.2", suite)
    pair.exchange()


def test_tls12_default_client_gets_aead(policy: TLSPolicy, certs: Certs) -> None:
    """A TLS 1.2-only client offering OpenSSL's whole default list gets an ECDHE AEAD suite."""
    pair = connect(policy, TLSClient(certs.ca, max_version=SSL.TLS1_2_VERSION))
    assert pair.ok
    assert pair.version == "TLSv1.2"
    assert pair.cipher.startswith("ECDHE-") and ("GCM" in pair.cipher or "CHACHA20" in pair.cipher)


@pytest.mark.parametrize(
    "version", [SSL.TLS1_VERSION, SSL.TLS1_1_VERSION], ids=["TLSv1.0", "TLSv1.1"]
)
def test_old_versions_refused(policy: TLSPolicy, certs: Certs, version: int) -> None:
    """A client that can speak at most TLS 1.0 or 1.1 fails the handshake (RFC 9325 3.1.1)."""
    client = TLSClient(max_version=version, ciphers=b"DEFAULT:@SECLEVEL=0")
    control = connect(Permissive(certs.rsa), client)
    assert control.client.handshook, "the client cannot speak the old version at all"
    pair = connect(policy, client)
    assert not pair.client.handshook
    assert pair.server is not None and not pair.server.handshook
    assert "protocol version" in pair.client_error()


@pytest.fixture(scope="module")
def dh_params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ffdhe2048 parameters for the permissive control server's DHE suites."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    path = tmp_path_factory.mktemp("dh") / "dh.pem"
    subprocess.run(
        [openssl, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
         "-out", str(path)],
        check=True, capture_output=True,
    )
    return path


@pytest.mark.parametrize(
    ("suite", "rsa"),
    [
        ("ECDHE-ECDSA-AES128-SHA256", False),  # CBC, not AEAD
        ("ECDHE-ECDSA-AES256-SHA", False),  # CBC with SHA-1
        ("ECDHE-RSA-AES128-SHA", True),
        ("AES128-GCM-SHA256", True),  # AEAD, but static RSA key exchange
        ("AES256-SHA256", True),
        ("DHE-RSA-AES128-GCM-SHA256", True),  # finite-field DHE
    ],
)
def test_weak_tls12_suites_refused(
    policy: TLSPolicy,
    rsa_policy: TLSPolicy,
    certs: Certs,
    dh_params: Path,
    suite: str,
    rsa: bool,
) -> None:
    """A TLS 1.2 client offering only a non-AEAD or non-ECDHE suite fails the handshake (RFC 9325 4.1)."""
    client = TLSClient(max_version=SSL.TLS1_2_VERSION, ciphers=suite.encode() + b":@SECLEVEL=0")
    control = connect(Permissive(certs.rsa if rsa else certs.main, dh_params), client)
    assert control.client.handshook and control.cipher == suite
    pair = connect(rsa_policy if rsa else policy, client)
    assert not pair.client.handshook
    assert "handshake failure" in pair.client_error()


def test_no_compression(policy: TLSPolicy, certs: Certs) -> None:
    """Every session the policy makes has TLS compression switched off (RFC 9325 3.3, RFC 7830 6)."""
    for sni in (None, "other.test", "x.wild.test"):
        pair = connect(policy, TLSClient(certs.ca), sni=sni)
        assert pair.ok
        assert _lib.SSL_get_options(pair.server_tls._ssl) & SSL.OP_NO_COMPRESSION


def test_no_early_data(policy: TLSPolicy, certs: Certs) -> None:
    """A TLS 1.3 session ticket allows no 0-RTT early data (RFC 9325 3.10)."""
    pair = connect(policy, TLSClient(certs.ca))
    session = pair.session()
    assert _lib.SSL_SESSION_get_max_early_data(session._session) == 0


def _renegotiate(server: SSL.Connection) -> SSL.Error | None:
    """Ask C{server} for a renegotiation from a TLS 1.2 client over memory BIOs; the client's error."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    client = SSL.Connection(context, None)
    client.set_connect_state()
    handshake(client, server)
    assert client.get_protocol_version_name() == "TLSv1.2"
    client.renegotiate()
    try:
        for _ in range(5):
            try:
                client.do_handshake()
            except SSL.WantReadError:
                pass
            move(client, server)
            try:
                server.recv(100)
            except SSL.WantReadError:
                pass
            if not move(server, client) and not client.renegotiate_pending():
                break
        client.send(b"after")
        move(client, server)
        assert server.recv(100) == b"after"
    except SSL.Error as e:
        return e
    return None


def test_no_renegotiation(policy: TLSPolicy, certs: Certs) -> None:
    """A TLS 1.2 client asking to renegotiate is refused with the no_renegotiation alert (RFC 9325 3.5)."""
    assert _renegotiate(Permissive(certs.main).serverConnectionForTLS(None)) is None
    error = _renegotiate(policy.serverConnectionForTLS(None))
    assert error is not None and "no renegotiation" in str(error)


# ALPN


@pytest.mark.parametrize("offered", [[b"dot"], [b"h2", b"dot"], [b"dot", b"http/1.1"]])
def test_alpn_dot_selected(policy: TLSPolicy, certs: Certs, offered: list[bytes]) -> None:
    """A client offering dot among its ALPN protocols gets dot."""
    pair = connect(policy, TLSClient(certs.ca), alpn=offered)
    assert pair.ok
    assert pair.alpn == b"dot"


@pytest.mark.parametrize("offered", [[b"h2"], [b"h2", b"http/1.1"], [b"doq"]])
def test_alpn_without_dot_refused(policy: TLSPolicy, certs: Certs, offered: list[bytes]) -> None:
    """A client offering only other ALPN protocols gets a fatal no_application_protocol alert."""
    pair = connect(policy, TLSClient(certs.ca), alpn=offered)
    assert not pair.client.handshook
    assert pair.server is not None and not pair.server.handshook
    assert "no application protocol" in pair.client_error()


def test_alpn_none_accepted(policy: TLSPolicy, certs: Certs) -> None:
    """A client offering no ALPN at all (most DoT stubs) is accepted and no protocol is selected."""
    pair = connect(policy, TLSClient(certs.ca))
    assert pair.ok
    assert pair.alpn == b""


def test_alpn_tls12(policy: TLSPolicy, certs: Certs) -> None:
    """ALPN works the same over TLS 1.2: dot selected, h2 alone refused."""
    client = TLSClient(certs.ca, max_version=SSL.TLS1_2_VERSION)
    assert connect(policy, client, alpn=[b"dot"]).alpn == b"dot"
    assert not connect(policy, client, alpn=[b"h2"]).client.handshook


# SNI


@pytest.mark.parametrize(
    ("sni", "which"),
    [
        ("dns.example.test", "main"),
        ("other.test", "other"),
        ("alias.test", "other"),
        ("OTHER.Test", "other"),
        ("x.wild.test", "wild"),
        ("Y.WILD.test", "wild"),
        ("a.b.wild.test", "main"),  # a wildcard covers one label only
        ("wild.test", "main"),
        ("unknown.test", "main"),
        (None, "main"),
    ],
)
def test_sni_picks_certificate(
    policy: TLSPolicy, certs: Certs, sni: str | None, which: str
) -> None:
    """SNI picks the certificate naming the host (exact, then wildcard); else the default."""
    pair = connect(policy, TLSClient(certs.ca), sni=sni)
    assert pair.ok
    assert pair.peer == getattr(certs, which).certificate


def test_sni_tls12(policy: TLSPolicy, certs: Certs) -> None:
    """SNI picks the certificate over TLS 1.2 too."""
    client = TLSClient(certs.ca, max_version=SSL.TLS1_2_VERSION)
    assert connect(policy, client, sni="other.test").peer == certs.other.certificate
    assert connect(policy, client, sni="q.wild.test").peer == certs.wild.certificate


def test_sni_keeps_profile_and_alpn(policy: TLSPolicy, certs: Certs) -> None:
    """A certificate chosen by SNI is served with the same profile: ALPN dot, h2 refused, no TLS 1.1."""
    assert connect(policy, TLSClient(certs.ca), sni="other.test", alpn=[b"dot"]).alpn == b"dot"
    assert not connect(policy, TLSClient(certs.ca), sni="other.test", alpn=[b"h2"]).client.handshook
    old = TLSClient(max_version=SSL.TLS1_1_VERSION, ciphers=b"DEFAULT:@SECLEVEL=0")
    assert not connect(policy, old, sni="x.wild.test").client.handshook


def test_chain_sent(certs: Certs) -> None:
    """A chain file's intermediate is sent after the leaf, so a client trusting only the root verifies it."""
    intermediate = make_ca(certs.directory, "chain intermediate", issuer=certs.ca)
    leaf = make_leaf(intermediate, certs.directory, ("chain.test",), chain=(intermediate,))
    policy = TLSPolicy([load_credential(leaf.cert, leaf.key_path)])
    pair = connect(policy, TLSClient(certs.ca))
    assert pair.ok
    chain = pair.client_tls.get_peer_cert_chain()
    assert chain is not None
    assert [c.to_cryptography() for c in chain] == [leaf.certificate, intermediate.certificate]
    assert pem_certificate(policy.default) == leaf.cert.read_bytes()


def test_untrusted_refused_by_verifying_client(policy: TLSPolicy, certs: Certs, tmp_path: Path) -> None:
    """A client trusting another CA fails to verify the server (the test client really verifies)."""
    pair = connect(policy, TLSClient(make_ca(tmp_path, "someone else")))
    assert not pair.client.handshook
    assert "certificate verify failed" in pair.client_error()


# Resumption


@pytest.mark.parametrize("tickets", [True, False], ids=["tickets", "no-tickets"])
@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION], ids=["1.2", "1.3"])
def test_resumption(certs: Certs, tickets: bool, version: int) -> None:
    """A second connection offering the first one's session resumes it, with tickets on or off."""
    policy = TLSPolicy([certs.credential(certs.main)], tickets=tickets)
    client = TLSClient(certs.ca, max_version=version)
    first = connect(policy, client)
    assert first.ok and not first.resumed
    session = first.session()
    second = connect(policy, client, session=session)
    assert second.ok
    assert second.resumed
    second.exchange()


def test_resumption_tickets_off_means_no_ticket_option(certs: Certs) -> None:
    """With tickets off the server's contexts carry OP_NO_TICKET; with tickets on they do not."""
    on = connect(TLSPolicy([certs.credential(certs.main)]), TLSClient(certs.ca))
    off = connect(TLSPolicy([certs.credential(certs.main)], tickets=False), TLSClient(certs.ca))
    assert not _lib.SSL_get_options(on.server_tls._ssl) & SSL.OP_NO_TICKET
    assert _lib.SSL_get_options(off.server_tls._ssl) & SSL.OP_NO_TICKET


def test_session_from_other_server_not_resumed(certs: Certs) -> None:
    """A session from another server (another ticket key) is not resumed: a full handshake follows."""
    client = TLSClient(certs.ca)
    one = TLSPolicy([certs.credential(certs.main)])
    two = TLSPolicy([certs.credential(certs.main)])
    session = connect(one, client).session()
    pair = connect(two, client, session=session)
    assert pair.ok and not pair.resumed


# Reload


def test_reload_new_handshakes(certs: Certs) -> None:
    """After reload() new handshakes get the new certificate; a session opened before goes on."""
    policy = TLSPolicy([certs.credential(certs.main)])
    client = TLSClient(certs.ca)
    before = connect(policy, client)
    assert before.peer == certs.main.certificate
    policy.reload([certs.credential(certs.other)])
    assert policy.default.leaf == certs.other.certificate
    after = connect(policy, client)
    assert after.ok
    assert after.peer == certs.other.certificate
    before.exchange(b"still", b"here")
    assert before.client.lost is None


def test_reload_sni_table(certs: Certs) -> None:
    """reload() replaces the SNI names: a name no longer served falls back to the new default."""
    policy = TLSPolicy([certs.credential(certs.main), certs.credential(certs.other)])
    client = TLSClient(certs.ca)
    assert connect(policy, client, sni="other.test").peer == certs.other.certificate
    policy.reload([certs.credential(certs.main), certs.credential(certs.wild)])
    assert connect(policy, client, sni="other.test").peer == certs.main.certificate
    assert connect(policy, client, sni="z.wild.test").peer == certs.wild.certificate


def test_reload_nothing_keeps_old(certs: Certs) -> None:
    """reload() with no credential raises and leaves the old certificate serving."""
    policy = TLSPolicy([certs.credential(certs.main)])
    with pytest.raises(ValueError):
        policy.reload([])
    assert connect(policy, TLSClient(certs.ca)).peer == certs.main.certificate


def test_reload_mismatched_key_keeps_old(certs: Certs) -> None:
    """reload() with a key that is not the certificate's raises and leaves the old certificate serving."""
    policy = TLSPolicy([certs.credential(certs.main)])
    good = certs.credential(certs.other)
    bad = Credential(good.chain, certs.credential(certs.wild).key, "mismatched")
    with pytest.raises(SSL.Error):
        policy.reload([bad])
    assert connect(policy, TLSClient(certs.ca)).peer == certs.main.certificate


# Refused connections


def test_refused_connection_closed_before_handshake(policy: TLSPolicy) -> None:
    """
    A connection the stream factory refuses (a cap) gets no protocol from the
    TLS port's factory, so the port closes it before any TLS byte: no OpenSSL
    connection is even made.  (On real sockets: test_dot_real's per-client
    cap test.)
    """
    spy = _Spy(policy)
    servers = Recorders(refuse=True)
    assert TLSServerFactory(spy, servers).buildProtocol(None) is None
    assert spy.connections == []
    assert servers.built == []


def test_tls_port_factory_wraps_what_it_is_given(policy: TLSPolicy) -> None:
    """When the stream factory builds a protocol, the TLS port's factory wraps it in TLS."""
    servers = Recorders()
    built = TLSServerFactory(policy, servers).buildProtocol(None)
    assert isinstance(built, TLSMemoryBIOProtocol)
    assert built.wrappedProtocol is servers.built[0]


@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION], ids=["1.2", "1.3"])
def test_resumption_after_close_without_close_notify(certs: Certs, version: int) -> None:
    """With tickets off, a session whose client closed TCP without close_notify still resumes."""
    policy = TLSPolicy([certs.credential(certs.main)], tickets=False)
    # The client ignores the EOF too: OpenSSL would otherwise mark its own
    # copy of the session not resumable.
    client = TLSClient(certs.ca, max_version=version, options=SSL.OP_IGNORE_UNEXPECTED_EOF)
    first = connect(policy, client)
    session = first.session()
    # the TCP connection goes away under the client's TLS layer
    first.client_transport.transport.loseConnection()
    first.pump.flush()
    assert first.server is not None and first.server.lost is not None
    second = connect(policy, client, session=session)
    assert second.ok
    assert second.resumed


class _RawClient(Protocol):
    """A client writing given bytes as soon as it is connected."""

    def __init__(self, data: bytes) -> None:
        self.to_send = data
        self.received = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.to_send)

    def dataReceived(self, data: bytes) -> None:
        self.received += data


def test_close_notify_during_handshake(policy: TLSPolicy) -> None:
    """A ClientHello then a close_notify (kdig on a pin mismatch) is a plain disconnection, nothing raised."""
    hello_client = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    hello_client.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        hello_client.do_handshake()
    hello = hello_client.bio_read(65536)
    close_notify = b"\x15\x03\x03\x00\x02\x01\x00"
    servers = Recorders()
    server_factory = TLSMemoryBIOFactory(policy, False, servers, clock=Clock())
    raw = _RawClient(hello + close_notify)
    # an exception in the server's TLS layer would propagate out of the pump
    _, server_transport, pump = connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), lambda: raw, greet=False
    )
    pump.flush()
    assert not servers.built[0].handshook
    assert servers.built[0].lost is not None
    assert server_transport.disconnecting or server_transport.disconnected


# What a session costs


@pytest.mark.parametrize("sni", [None, "other.test"], ids=["default", "sni"])
def test_idle_session_keeps_no_buffers(policy: TLSPolicy, certs: Certs, sni: str | None) -> None:
    """An open session's server side gives its OpenSSL read and write buffers back while idle."""
    pair = connect(policy, TLSClient(certs.ca), sni=sni)
    assert pair.ok
    pair.exchange()
    # SSL_set_mode adds the bits given (none) and returns the mode in force.
    assert _lib.SSL_set_mode(pair.server_tls._ssl, 0) & SSL.MODE_RELEASE_BUFFERS


@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION], ids=["1.2", "1.3"])
def test_released_buffers_carry_large_messages_and_resume(certs: Certs, version: int) -> None:
    """
    A session whose buffers are released between messages carries DNS
    messages of every size both ways, pipelined, and resumes afterwards.
    """
    policy = TLSPolicy([certs.credential(certs.main)])
    client = TLSClient(certs.ca, max_version=version)
    first = connect(policy, client)
    assert first.ok
    sizes = (12, 1232, 16384, 16385, 65535)
    messages = [len(m).to_bytes(2, "big") + m for m in (bytes([n % 251]) * n for n in sizes)]
    for message in messages:
        first.exchange(message, message[::-1])
    first.exchange(b"".join(messages), b"".join(reversed(messages)))
    second = connect(policy, client, session=first.session())
    assert second.ok and second.resumed
    second.exchange(messages[-1], messages[0])


def test_unexpected_eof_clean_only_after_handshake(policy: TLSPolicy, certs: Certs) -> None:
    """
    The server takes a TCP close without close_notify as a clean end of the
    session (so that it stays resumable) once the handshake is done, and not
    in the middle of one.
    """
    hello_client = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    hello_client.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        hello_client.do_handshake()
    spy = _Spy(policy)
    server_factory = TLSMemoryBIOFactory(spy, False, Recorders(), clock=Clock())
    raw = _RawClient(hello_client.bio_read(65536))
    _, _, pump = connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), lambda: raw, greet=False
    )
    pump.flush()
    assert raw.received  # the server answered the ClientHello: mid-handshake
    assert not _lib.SSL_get_options(spy.connections[0]._ssl) & SSL.OP_IGNORE_UNEXPECTED_EOF
    pair = connect(policy, TLSClient(certs.ca))
    assert pair.ok
    assert _lib.SSL_get_options(pair.server_tls._ssl) & SSL.OP_IGNORE_UNEXPECTED_EOF


@pytest.mark.parametrize("sni", [None, "dns.example.test", "unknown.test"], ids=["none", "its-name", "other"])
def test_single_certificate_serves_every_sni(certs: Certs, sni: str | None) -> None:
    """With one certificate, a client naming its host, another host or none gets it, and ALPN dot."""
    policy = TLSPolicy([certs.credential(certs.main)])
    pair = connect(policy, TLSClient(certs.ca), sni=sni, alpn=[b"dot"])
    assert pair.ok
    assert pair.alpn == b"dot"
    assert pair.peer.subject == certs.credential(certs.main).leaf.subject
    # what the query log reports as the session's SNI
    assert pair.server_tls.get_servername() == (sni.encode() if sni else None)
    pair.exchange()


# The DoT port's TLS layer


def test_dot_port_hands_up_a_read_at_once(policy: TLSPolicy, certs: Certs) -> None:
    """Three records that arrive in one read reach the DNS protocol as one string, in order."""
    pair = connect(policy, TLSClient(certs.ca), dot_port=True)
    assert pair.ok and pair.server is not None
    assert isinstance(pair.server_transport, DoTServerProtocol)
    for message in (b"first", b"second", b"third"):
        pair.client_transport.write(message)
    pair.pump.flush()
    assert pair.server.reads == [b"firstsecondthird"]


def test_dot_port_data_then_close_notify(policy: TLSPolicy, certs: Certs) -> None:
    """Queries and the client's close_notify in one read: the queries are handed up, then a clean end."""
    pair = connect(policy, TLSClient(certs.ca), dot_port=True)
    assert pair.server is not None
    pair.client_transport.write(b"query")
    pair.client_transport.loseConnection()
    pair.pump.flush()
    assert pair.server.data == b"query"
    assert pair.server.lost is not None
    assert pair.server.lost.check(ConnectionDone)


def test_dot_port_large_answers(policy: TLSPolicy, certs: Certs) -> None:
    """Answers larger than a TLS record, and many written together, all reach the client whole."""
    pair = connect(policy, TLSClient(certs.ca), dot_port=True)
    assert pair.ok
    pair.exchange(b"ask", bytes(range(256)) * 300)
    pair.exchange(b"ask again", b"x" * 70000)


def test_dot_port_corrupt_record_ends_session(policy: TLSPolicy, certs: Certs) -> None:
    """A tampered record ends the session with the TLS error, and nothing is handed up."""
    pair = connect(policy, TLSClient(certs.ca), dot_port=True)
    assert pair.server is not None
    pair.client_tls.send(b"tampered")
    wire = bytearray(pair.client_tls.bio_read(65536))
    wire[-1] ^= 0xFF
    pair.server_transport.dataReceived(bytes(wire))
    pair.pump.flush()
    assert pair.server.data == b""
    assert pair.server.lost is not None
    assert pair.server.lost.check(SSL.Error)


def test_dot_port_good_record_then_tampered_one(policy: TLSPolicy, certs: Certs) -> None:
    """A good record and a tampered one in one read: the session ends with the tampering error, unanswered."""
    pair = connect(policy, TLSClient(certs.ca), dot_port=True)
    assert pair.server is not None
    server = pair.server
    recorded = server.dataReceived

    def answer(data: bytes) -> None:
        recorded(data)
        server.transport.write(b"answer")

    server.dataReceived = answer  # type: ignore[method-assign]
    pair.client_tls.send(b"good")
    good = pair.client_tls.bio_read(65536)
    pair.client_tls.send(b"tampered")
    tampered = bytearray(pair.client_tls.bio_read(65536))
    tampered[-1] ^= 0xFF
    pair.server_transport.dataReceived(good + bytes(tampered))
    pair.pump.flush()
    assert server.lost is not None
    assert server.lost.check(SSL.Error)
    assert "bad record mac" in str(server.lost.value) or "decryption failed" in str(server.lost.value)
    # no answer reached the client, only the server's alert
    assert pair.client.data == b""
    assert pair.client.lost is not None
    assert "alert" in str(pair.client.lost.value)


def _has_ticket(pair: Pair, policy: TLSPolicy, client: TLSClient) -> bool:
    """Whether a TLS 1.3 ticket reached the client: its session resumes a second connection."""
    again = connect(policy, client, session=pair.client_tls.get_session(), dot_port=True)
    return again.ok and again.resumed


def _server_writes(pair: Pair) -> list[bytes]:
    """Record what the DoT port's TLS layer writes to the network from now on, write by write."""
    writes: list[bytes] = []
    network = pair.server_transport.transport
    assert network is not None
    original = network.write

    def write(data: bytes) -> None:
        writes.append(data)
        original(data)

    network.write = write  # type: ignore[method-assign]
    return writes


def test_dot_port_tls13_tickets_go_with_the_first_answer(policy: TLSPolicy, certs: Certs) -> None:
    """TLS 1.3 tickets wait after the handshake and leave in one write with the first answer."""
    client = TLSClient(certs.ca)
    pair = connect(policy, client, dot_port=True)
    assert pair.ok and pair.version == "TLSv1.3"
    assert not _has_ticket(pair, policy, client)
    server = pair.server
    assert server is not None
    recorded = server.dataReceived

    def answer(data: bytes) -> None:  # as the DNS protocol: the answer written on reading
        recorded(data)
        server.transport.write(b"answer")

    server.dataReceived = answer  # type: ignore[method-assign]
    writes = _server_writes(pair)
    pair.client_transport.write(b"query")
    pair.pump.flush()
    assert pair.client.data == b"answer"
    assert len(writes) == 1
    assert _has_ticket(pair, policy, client)
    assert pair.clock.getDelayedCalls() == []


def test_dot_port_tls13_tickets_go_with_the_next_read(policy: TLSPolicy, certs: Certs) -> None:
    """Whatever the client sends next releases the held tickets, answered or not."""
    client = TLSClient(certs.ca)
    pair = connect(policy, client, dot_port=True)
    writes = _server_writes(pair)
    pair.client_transport.write(b"partial")
    pair.pump.flush()
    assert len(writes) == 1
    assert _has_ticket(pair, policy, client)


def test_dot_port_tls12_last_flight_not_held(policy: TLSPolicy, certs: Certs) -> None:
    """A TLS 1.2 handshake ends without waiting: the server's last flight is sent at once."""
    pair = connect(policy, TLSClient(certs.ca, max_version=SSL.TLS1_2_VERSION), dot_port=True)
    assert pair.ok and pair.version == "TLSv1.2"
    pair.exchange()
