"""
The TO-bit upgrade end to end: real dnstls servers on 127.0.0.1, driven by
a client written here directly on Python's C{socket} and C{ssl} (and
dnspython for the messages after the probe), so that the server is not only
checked against dnstls's own client, which shares its assumptions.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support import ZONES, DnstlsProcess, recv_exact, require_tool

NAME = "dns.example.test"
TO = 0x4000
TIMEOUT = 3.0

#: The probe, written out by hand from the draft: ID 0x1234, RD=0,
#: STARTTLS. CH TXT, OPT with payload 1232 and TO=1; length prefix first.
PROBE = bytes.fromhex(
    "0025"
    "1234 0000 0001 0000 0000 0001"
    "08 53 54 41 52 54 54 4c 53 00 0010 0003"
    "00 0029 04d0 0000 4000 0000"
)
#: What a willing server answers to it: RCODE 0, AA, TXT "STARTTLS" with
#: TTL 0, OPT payload 1232 with TO=1; 58 octets after the length.
PROBE_REPLY = bytes.fromhex(
    "003a"
    "1234 8400 0001 0001 0000 0001"
    "08 53 54 41 52 54 54 4c 53 00 0010 0003"
    "c00c 0010 0003 00000000 0009 08 53 54 41 52 54 54 4c 53"
    "00 0029 04d0 0000 4000 0000"
)
#: ... and a declining one: TXT "NO_TLS", TO=0.
PROBE_DECLINED = bytes.fromhex(
    "0038"
    "1234 8400 0001 0001 0000 0001"
    "08 53 54 41 52 54 54 4c 53 00 0010 0003"
    "c00c 0010 0003 00000000 0007 06 4e 4f 5f 54 4c 53"
    "00 0029 04d0 0000 0000 0000"
)


@dataclass
class Server:
    """
    A running dnstls and what a client needs to reach and trust it.
    """

    process: DnstlsProcess
    ca: Path

    @property
    def tcp(self) -> tuple[str, int]:
        return self.process.address("tcp")

    @property
    def udp(self) -> tuple[str, int]:
        return self.process.address("udp")

    @property
    def pin(self) -> str:
        found = re.search(r"pin sha256 (\S+)", "\n".join(self.process.lines))
        assert found is not None
        return found.group(1)


def start(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[Server]:
    state = tmp_path_factory.mktemp("state")
    process = DnstlsProcess(
        [
            "--zones", str(ZONES), "--listen", "127.0.0.1:0", "--tls-name", NAME,
            "--state-dir", str(state), *extra,
        ]
    )
    try:
        yield Server(process, state / "dnstls-selfsigned.pem")
    finally:
        process.stop()


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default policy, probe, with a handshake timeout of one second."""
    yield from start(tmp_path_factory, "--tls-handshake-timeout", "1")


@pytest.fixture(scope="module")
def any_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start(tmp_path_factory, "--starttls", "any")


@pytest.fixture(scope="module")
def off_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start(tmp_path_factory, "--starttls", "off")


@pytest.fixture(scope="module")
def advertising_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start(tmp_path_factory, "--advertise-to")


# The client.


def framed(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


def query(
    name: str = "www.example.test.", qtype: str = "A", ident: int = 0x2000, to: bool = False,
    rdclass: str = "IN", do: bool = False, rd: bool = True, edns: bool = True,
    options: list[dns.edns.Option] | None = None,
) -> bytes:
    message = dns.message.make_query(
        name, qtype, rdclass, use_edns=0 if edns else False, want_dnssec=do, options=options
    )
    message.id = ident
    if not rd:
        message.flags &= ~dns.flags.RD
    if to:
        message.ednsflags |= TO
    return message.to_wire()


def probe(ident: int = 0x1234, to: bool = True) -> bytes:
    return query("STARTTLS.", "TXT", ident, to=to, rdclass="CH", rd=False)


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(server.tcp, timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_framed(sock: socket.socket | ssl.SSLSocket) -> bytes:
    (length,) = struct.unpack("!H", recv_exact(sock, 2))
    return recv_exact(sock, length)


def read_message(sock: socket.socket | ssl.SSLSocket) -> dns.message.Message:
    return dns.message.from_wire(read_framed(sock))


def ask(sock: socket.socket | ssl.SSLSocket, wire: bytes) -> dns.message.Message:
    sock.sendall(framed(wire))
    reply = read_message(sock)
    assert reply.id == struct.unpack("!H", wire[:2])[0]
    return reply


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """
    Everything the server sends within C{timeout} seconds, and whether it
    closed the connection (a FIN or a reset) by then.
    """
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def nothing_within(sock: socket.socket | ssl.SSLSocket, seconds: float) -> bool:
    """
    Whether no byte arrives for C{seconds}.
    """
    sock.settimeout(seconds)
    try:
        return not sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(TIMEOUT)


def tls_context(server: Server) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def start_tls(server: Server, sock: socket.socket, alpn: list[str] | None = None) -> ssl.SSLSocket:
    """
    The client's TLS 1.3 handshake on the upgraded connection, verifying
    the certificate for L{NAME}.
    """
    context = tls_context(server)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    tls = context.wrap_socket(sock, server_hostname=NAME)
    assert tls.version() == "TLSv1.3"
    return tls


def txt(reply: dns.message.Message) -> list[bytes]:
    return [s for rrset in reply.answer for rdata in rrset for s in rdata.strings]


def addresses(reply: dns.message.Message) -> list[str]:
    return [rdata.to_text() for rrset in reply.answer for rdata in rrset]


def looks_like_dns(data: bytes) -> bool:
    """
    Whether C{data} starts with a length-prefixed DNS response (rather than
    a TLS record or nothing).
    """
    if len(data) < 14:
        return False
    (length,) = struct.unpack("!H", data[:2])
    return length >= 12 and bool(data[4] & 0x80) and data[2:4] != b"\x15\x03"


PIPELINED = {
    0x0101: ("www.example.test.", "A", ["192.0.2.80"]),
    0x0102: ("mail.example.test.", "A", ["192.0.2.25"]),
    0x0103: ("ns2.example.test.", "A", ["198.51.100.53"]),
    0x0104: ("www.example.test.", "AAAA", ["2001:db8::80"]),
}


def pipeline(tls: ssl.SSLSocket) -> None:
    """
    Send every query of L{PIPELINED} in one write, with TO set (which
    inside TLS means nothing), and check each answer.
    """
    tls.sendall(b"".join(framed(query(n, t, ident, to=True)) for ident, (n, t, _) in PIPELINED.items()))
    replies = {}
    for _ in PIPELINED:
        reply = read_message(tls)
        replies[reply.id] = reply
    assert sorted(replies) == sorted(PIPELINED)
    for ident, (_, _, expected) in PIPELINED.items():
        assert replies[ident].rcode() == dns.rcode.NOERROR
        assert addresses(replies[ident]) == expected
        assert replies[ident].ednsflags & TO == 0


# The tests.


def test_probe_upgrade(probe_server: Server) -> None:
    """
    The probe gets the documented STARTTLS reply with TO=1 in clear, then a TLS 1.3 session verified
    for dns.example.test answers pipelined queries.
    """
    with connect(probe_server) as sock:
        sock.sendall(PROBE)
        assert recv_exact(sock, len(PROBE_REPLY)) == PROBE_REPLY
        with start_tls(probe_server, sock) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            assert base64.b64encode(hashlib.sha256(spki).digest()).decode() == probe_server.pin
            pipeline(tls)


def test_probe_with_rd_upgrades(probe_server: Server) -> None:
    """The probe with RD=1 (the draft recommends RD=0; the README says RD is not looked at) is
    upgraded all the same: STARTTLS with TO=1 and RD copied, then answers inside TLS."""
    with connect(probe_server) as sock:
        sock.sendall(framed(query("STARTTLS.", "TXT", 0x1235, to=True, rdclass="CH", rd=True)))
        reply = read_message(sock)
        assert reply.flags & dns.flags.RD and reply.ednsflags & TO
        assert txt(reply) == [b"STARTTLS"]
        with start_tls(probe_server, sock) as tls:
            assert addresses(ask(tls, query())) == ["192.0.2.80"]


def test_probe_upgrade_with_alpn(probe_server: Server) -> None:
    """A client that offers ALPN "dot" on the upgraded connection gets it selected."""
    with connect(probe_server) as sock:
        sock.sendall(PROBE)
        assert recv_exact(sock, len(PROBE_REPLY)) == PROBE_REPLY
        with start_tls(probe_server, sock, alpn=["dot"]) as tls:
            assert tls.selected_alpn_protocol() == "dot"
            assert addresses(ask(tls, query(ident=7))) == ["192.0.2.80"]


#: First exchanges: the queries sent one after another on a new connection,
#: and per policy what the last reply says: (TO, TXT or address, upgrade).
MATRIX: dict[str, tuple[list[bytes], dict[str, tuple[bool, object, bool]]]] = {
    "probe with TO": (
        [probe()],
        {
            "off": (False, b"NO_TLS", False),
            "probe": (True, b"STARTTLS", True),
            "any": (True, b"STARTTLS", True),
        },
    ),
    "probe without TO": (
        [probe(to=False)],
        {policy: (False, b"NO_TLS", False) for policy in ("off", "probe", "any")},
    ),
    "ordinary query with TO": (
        [query(to=True, rd=False)],
        {
            "off": (False, "192.0.2.80", False),
            "probe": (False, "192.0.2.80", False),
            "any": (True, "192.0.2.80", True),
        },
    ),
    "TO only on the second query": (
        [probe(ident=1, to=False), probe(ident=2)],
        {policy: (False, b"NO_TLS", False) for policy in ("off", "probe", "any")},
    ),
    "CO-style query (DO and 0x4000)": (
        [query(to=True, do=True)],
        {
            "off": (False, "192.0.2.80", False),
            "probe": (False, "192.0.2.80", False),
            "any": (True, "192.0.2.80", True),
        },
    ),
}


@pytest.mark.parametrize("shape", list(MATRIX))
@pytest.mark.parametrize("policy", ["off", "probe", "any"])
def test_matrix(request: pytest.FixtureRequest, policy: str, shape: str) -> None:
    """
    Each policy answers each first-query shape with the documented TO and answer, and only a TO=1
    reply is followed by TLS.
    """
    server: Server = request.getfixturevalue(f"{policy}_server")
    queries, expectations = MATRIX[shape]
    expect_to, expect_answer, expect_tls = expectations[policy]
    with connect(server) as sock:
        for wire in queries:
            reply = ask(sock, wire)
            assert reply.rcode() == dns.rcode.NOERROR
        assert bool(reply.ednsflags & TO) is expect_to
        assert reply.ednsflags & ~(TO | dns.flags.DO) == 0
        if isinstance(expect_answer, bytes):
            assert txt(reply) == [expect_answer]
        else:
            assert addresses(reply) == [expect_answer]
        if expect_tls:
            with start_tls(server, sock) as tls:
                pipeline(tls)
        else:
            # still clear text; TO on a later query changes nothing
            later = ask(sock, probe(ident=0x5555))
            assert txt(later) == [b"NO_TLS"]
            assert later.ednsflags & TO == 0
            later = ask(sock, query(ident=0x5556, name="mail.example.test.", to=True))
            assert addresses(later) == ["192.0.2.25"]
            assert later.ednsflags & TO == 0


def test_clear_text_with_probe_never_answered(probe_server: Server) -> None:
    """
    Queries sent in the same segment as the probe are answered neither in clear nor inside the TLS
    session that follows.
    """
    with connect(probe_server) as sock:
        smuggled = framed(query(ident=0x6661)) + framed(query(ident=0x6662, name="mail.example.test."))
        sock.sendall(PROBE + smuggled)
        assert recv_exact(sock, len(PROBE_REPLY)) == PROBE_REPLY
        # the handshake succeeding shows no clear-text byte came before the ServerHello
        with start_tls(probe_server, sock) as tls:
            assert nothing_within(tls, 0.3)
            reply = ask(tls, query(ident=0x7001, name="ns1.example.test."))
            assert addresses(reply) == ["192.0.2.53"]
            assert nothing_within(tls, 0.3)


def test_no_handshake_dropped(probe_server: Server) -> None:
    """
    A client that gets TO=1 and never starts the handshake is disconnected after --tls-handshake-
    timeout (1 s), with no DNS bytes.
    """
    with connect(probe_server) as sock:
        sock.sendall(PROBE)
        assert recv_exact(sock, len(PROBE_REPLY)) == PROBE_REPLY
        began = time.monotonic()
        data, closed = read_until_closed(sock, 5.0)
        elapsed = time.monotonic() - began
        assert closed
        assert data == b""
        assert 0.7 <= elapsed <= 4.0


def test_stalled_handshake_dropped(probe_server: Server) -> None:
    """
    A client that sends its ClientHello after TO=1 and then stalls is disconnected after --tls-
    handshake-timeout (1 s).
    """
    with connect(probe_server) as sock:
        sock.sendall(PROBE)
        assert recv_exact(sock, len(PROBE_REPLY)) == PROBE_REPLY
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = tls_context(probe_server).wrap_bio(incoming, outgoing, server_hostname=NAME)
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        sock.sendall(outgoing.read())
        began = time.monotonic()
        data, closed = read_until_closed(sock, 5.0)
        assert closed
        assert 0.7 <= time.monotonic() - began <= 4.0
        assert data[:1] == b"\x16"  # the server's handshake flight, and nothing in clear
        assert not looks_like_dns(data)


def test_session_resumes_over_upgrade(probe_server: Server) -> None:
    """A TLS 1.3 session from one upgraded connection resumes on the next upgraded connection."""
    context = tls_context(probe_server)
    with connect(probe_server) as sock:
        sock.sendall(PROBE)
        assert recv_exact(sock, len(PROBE_REPLY)) == PROBE_REPLY
        with context.wrap_socket(sock, server_hostname=NAME) as tls:
            assert addresses(ask(tls, query(ident=5))) == ["192.0.2.80"]
            session = tls.session
            assert not tls.session_reused
    assert session is not None and session.has_ticket
    with connect(probe_server) as sock:
        sock.sendall(PROBE)
        assert recv_exact(sock, len(PROBE_REPLY)) == PROBE_REPLY
        with context.wrap_socket(sock, server_hostname=NAME, session=session) as tls:
            assert tls.session_reused
            assert addresses(ask(tls, query(ident=6))) == ["192.0.2.80"]


def handshake_by_hand(
    server: Server, sock: socket.socket
) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    """
    The client's TLS 1.3 handshake on the upgraded connection over memory BIOs, its Finished sent:
    the TLS object, the BIO the server's bytes go into and the one the client's come out of.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = tls_context(server).wrap_bio(incoming, outgoing, server_hostname=NAME)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            chunk = sock.recv(65536)
            assert chunk, "the server closed in the handshake"
            incoming.write(chunk)
    sock.sendall(outgoing.read())
    return tls, incoming, outgoing


def test_tickets_go_with_the_first_answer(probe_server: Server) -> None:
    """
    An upgraded TLS 1.3 session's tickets come in one read with the first answer, not after the
    handshake on their own, as on the TLS port.
    """
    with connect(probe_server) as sock:
        sock.sendall(PROBE)
        assert recv_exact(sock, len(PROBE_REPLY)) == PROBE_REPLY
        tls, incoming, outgoing = handshake_by_hand(probe_server, sock)
        assert tls.version() == "TLSv1.3"
        assert nothing_within(sock, 0.5)
        assert tls.session is None or not tls.session.has_ticket
        tls.write(framed(query(ident=9)))
        sock.sendall(outgoing.read())
        sock.settimeout(TIMEOUT)
        incoming.write(sock.recv(65536))
        data = tls.read(65536)
        (length,) = struct.unpack("!H", data[:2])
        assert len(data) == 2 + length
        assert addresses(dns.message.from_wire(data[2:])) == ["192.0.2.80"]
        assert tls.session is not None and tls.session.has_ticket


@pytest.mark.parametrize(
    "garbage",
    [framed(query(ident=0x6661)), b"GET / HTTP/1.0\r\n\r\n", bytes(range(256))],
    ids=["clear DNS query", "HTTP", "binary"],
)
def test_garbage_instead_of_client_hello(probe_server: Server, garbage: bytes) -> None:
    """Bytes that are not a ClientHello after TO=1 get the connection closed, never a clear-text DNS reply."""
    with connect(probe_server) as sock:
        sock.sendall(PROBE)
        assert recv_exact(sock, len(PROBE_REPLY)) == PROBE_REPLY
        sock.sendall(garbage)
        data, closed = read_until_closed(sock, 3.0)
        assert closed
        assert not looks_like_dns(data)
        assert data == b"" or data[:1] == b"\x15"  # at most a TLS alert


def test_failed_handshake_closes(probe_server: Server) -> None:
    """
    A handshake the client fails (it verifies a name the certificate lacks) ends the connection;
    clear text after it is never answered.
    """
    with connect(probe_server) as sock:
        sock.sendall(PROBE)
        assert recv_exact(sock, len(PROBE_REPLY)) == PROBE_REPLY
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = tls_context(probe_server).wrap_bio(incoming, outgoing, server_hostname="wrong.example.test")
        with pytest.raises(ssl.SSLCertVerificationError):
            for _ in range(20):
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pass
                finally:
                    if outgoing.pending:
                        sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        if outgoing.pending:
            sock.sendall(outgoing.read())  # the client's alert
        try:
            sock.sendall(framed(query(ident=0x6661)))
        except OSError:
            pass
        data, closed = read_until_closed(sock, 3.0)
        assert closed
        assert not looks_like_dns(data)


def udp_ask(server: Server, wire: bytes) -> dns.message.Message:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(wire, server.udp)
        reply = dns.message.from_wire(sock.recv(65535))
    assert reply.id == struct.unpack("!H", wire[:2])[0]
    return reply


def test_udp_to_ignored(probe_server: Server) -> None:
    """Over UDP, TO in a query changes nothing: the normal answer, TO=0, and the probe answered NO_TLS."""
    reply = udp_ask(probe_server, query(to=True))
    assert addresses(reply) == ["192.0.2.80"]
    assert reply.ednsflags & TO == 0
    reply = udp_ask(probe_server, PROBE[2:])
    assert txt(reply) == [b"NO_TLS"]
    assert reply.ednsflags & TO == 0


@pytest.mark.parametrize("to", [True, False], ids=["query TO", "query no TO"])
def test_udp_advertise_to(advertising_server: Server, to: bool) -> None:
    """With --advertise-to, UDP replies to queries with OPT carry TO=1 and still the normal answer."""
    reply = udp_ask(advertising_server, query(to=to))
    assert addresses(reply) == ["192.0.2.80"]
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.ednsflags & TO


def test_udp_advertise_to_needs_opt(advertising_server: Server) -> None:
    """With --advertise-to, a UDP query without OPT gets a reply without OPT."""
    reply = udp_ask(advertising_server, query(edns=False))
    assert reply.edns == -1
    assert addresses(reply) == ["192.0.2.80"]


def test_advertise_to_needs_a_tls_door(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With --advertise-to but no upgrade and no TLS port, UDP replies do not claim TLS (TO=0)."""
    for server in start(tmp_path_factory, "--starttls", "off", "--advertise-to"):
        reply = udp_ask(server, query(to=True))
        assert addresses(reply) == ["192.0.2.80"]
        assert reply.ednsflags & TO == 0


def test_advertise_to_not_on_tcp(advertising_server: Server) -> None:
    """With --advertise-to, TCP replies carry TO only when they grant the upgrade."""
    with connect(advertising_server) as sock:
        reply = ask(sock, query(to=True))
        assert reply.ednsflags & TO == 0
        assert addresses(reply) == ["192.0.2.80"]


def test_off_declines_and_stays_clear(off_server: Server) -> None:
    """
    With --starttls off, the probe with TO gets NO_TLS and TO=0, byte for byte, and the connection
    keeps answering in clear.
    """
    with connect(off_server) as sock:
        sock.sendall(PROBE)
        assert recv_exact(sock, len(PROBE_DECLINED)) == PROBE_DECLINED
        for ident, (name, qtype, expected) in PIPELINED.items():
            reply = ask(sock, query(name, qtype, ident, to=True))
            assert addresses(reply) == expected
            assert reply.ednsflags & TO == 0


def test_any_upgrades_ordinary_query(any_server: Server) -> None:
    """With --starttls any, an ordinary first query with TO gets its normal answer with TO=1, then TLS."""
    with connect(any_server) as sock:
        reply = ask(sock, query("txt.example.test.", "TXT", 0x0042, to=True))
        assert txt(reply) == [b"hello", b"world"]
        assert reply.ednsflags & TO
        with start_tls(any_server, sock) as tls:
            pipeline(tls)


def test_dig_and_kdig_unaffected(probe_server: Server) -> None:
    """
    kdig +tcp and dig +tcp, which cannot send TO, get their normal answers over TCP/53 of a probe-
    policy server.
    """
    host, port = probe_server.tcp
    kdig = require_tool("kdig")
    dig = require_tool("dig")
    for command in (
        [kdig, f"@{host}", "-p", str(port), "+tcp", "+time=3", "+retry=0", "www.example.test", "A"],
        [dig, f"@{host}", "-p", str(port), "+tcp", "+time=3", "+tries=1", "www.example.test", "A"],
        [
            kdig, f"@{host}", "-p", str(port), "+tcp", "+time=3", "+retry=0", "+keepopen", "+edns",
            "www.example.test", "A", "mail.example.test", "A",
        ],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=15, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "NOERROR" in result.stdout
        answer = r"www\.example\.test\.\s+3600\s+IN\s+A\s+192\.0\.2\.80"
        assert re.search(answer, result.stdout), result.stdout
