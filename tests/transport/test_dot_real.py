"""
DNS over TLS (RFC 7858) on real loopback sockets, against C{twistd dnstls}
servers started with certificates this module makes: kdig, dig, dnspython
and Python's C{ssl} as clients; the TLS profile, resumption, pipelining,
edns-tcp-keepalive (RFC 7828), padding (RFC 7830/8467), clear text on the
TLS port, the handshake and idle timeouts, the connection caps, and reload
on SIGHUP.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto

from dnstls.transport.framing import frame
from tests.certs import Issuer, Leaf, make_ca, make_leaf
from tests.support import ZONES, DnstlsProcess, recv_exact, require_tool, run_dnstls

#: Every socket operation gives up after this many seconds.
TIMEOUT = 5.0
NAME = "dns.example.test"
KEEPALIVE = dns.edns.OptionType.KEEPALIVE
PADDING = dns.edns.OptionType.PADDING

#: Questions whose answers over TLS must equal those over UDP: answers,
#: CNAME chains, NXDOMAIN, NODATA, wildcards, referrals, REFUSED.
QUESTIONS = [
    ("www.example.test", "A"),
    ("example.test", "SOA"),
    ("example.test", "NS"),
    ("example.test", "MX"),
    ("example.test", "TXT"),
    ("alias.example.test", "A"),
    ("nope.example.test", "A"),
    ("www.example.test", "MX"),
    ("x.wild.example.test", "TXT"),
    ("www.child.example.test", "A"),
    ("chain1.corner.test", "AAAA"),
    ("many.corner.test", "A"),
    ("host.sub.corner.test", "A"),
    ("host.child.corner.test", "A"),
    ("nothing.negttl.test", "A"),
    ("www.example.org", "A"),
]


@dataclass(frozen=True)
class PKI:
    """The module's CA and server certificates."""

    ca: Issuer
    main: Leaf
    other: Leaf
    expired: Leaf
    directory: Path


def independent_pin(leaf: Leaf) -> str:
    """The SHA-256 SPKI pin of C{leaf}, computed with pyOpenSSL rather than dnstls.certs."""
    certificate = crypto.load_certificate(crypto.FILETYPE_PEM, leaf.cert.read_bytes())
    der = crypto.dump_publickey(crypto.FILETYPE_ASN1, certificate.get_pubkey())
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A CA, a leaf for dns.example.test, another for the reload, and an expired one."""
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory)
    return PKI(
        ca,
        make_leaf(ca, directory, (NAME,), stem="main"),
        make_leaf(ca, directory, (NAME,), stem="other"),
        make_leaf(ca, directory, (NAME,), stem="expired", expired=True),
        directory,
    )


def start(pki: PKI, *extra: str, leaf: Leaf | None = None, listen: tuple[str, ...] = ()) -> DnstlsProcess:
    """A dnstls on UDP/TCP and TLS ports of 127.0.0.1 serving C{leaf} (the main one by default)."""
    leaf = leaf or pki.main
    args = ["--zones", str(ZONES), "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"]
    for address in listen:
        args += ["--listen-tls", address]
    args += ["--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key_path), *extra]
    return DnstlsProcess(args)


def tracebacks(server: DnstlsProcess) -> list[str]:
    """Log lines of a traceback or an unhandled error."""
    return [line for line in server.lines if "Traceback" in line or "Unhandled" in line]


@pytest.fixture(scope="module")
def server(pki: PKI) -> Iterator[DnstlsProcess]:
    """A dnstls with default timeouts and caps, also on TLS at [::1]."""
    process = start(pki, listen=("[::1]:0",))
    try:
        yield process
        assert not tracebacks(process), "\n".join(process.lines)
    finally:
        process.stop()


def context(
    pki: PKI,
    maximum: ssl.TLSVersion | None = None,
    minimum: ssl.TLSVersion | None = None,
    alpn: list[str] | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A client context trusting the test CA and checking the name."""
    ctx = ssl.create_default_context(cafile=str(pki.ca.path))
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tcp_connect(address: tuple[str, int], source: str | None = None) -> socket.socket:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    if source is not None:
        sock.bind((source, 0))
    sock.connect(address)
    return sock


def tls_connect(
    address: tuple[str, int],
    ctx: ssl.SSLContext,
    session: ssl.SSLSession | None = None,
    source: str | None = None,
    hostname: str = NAME,
    suppress_ragged_eofs: bool = True,
) -> ssl.SSLSocket:
    """A TLS connection to C{address}, handshake done."""
    sock = tcp_connect(address, source)
    try:
        return ctx.wrap_socket(
            sock, server_hostname=hostname, session=session,
            suppress_ragged_eofs=suppress_ragged_eofs,
        )
    except BaseException:
        sock.close()
        raise


def read_wire(sock: socket.socket) -> bytes:
    (length,) = struct.unpack("!H", recv_exact(sock, 2))
    return recv_exact(sock, length)


def query(
    name: str = "www.example.test.",
    rdtype: str = "A",
    qid: int = 1,
    options: list[dns.edns.Option] | None = None,
    edns: bool = True,
    pad: int = 0,
) -> dns.message.Message:
    q = dns.message.make_query(
        name, rdtype, use_edns=0 if edns else False, options=options or [], pad=pad
    )
    q.id = qid
    return q


def ask_stream(sock: socket.socket, q: dns.message.Message) -> tuple[dns.message.Message, bytes]:
    """Send C{q} on a stream, return the reply and its wire form."""
    sock.sendall(frame(q.to_wire()))
    wire = read_wire(sock)
    reply = dns.message.from_wire(wire)
    assert reply.id == q.id and reply.question == q.question
    return reply, wire


def ask_udp(address: tuple[str, int], q: dns.message.Message) -> tuple[dns.message.Message, bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(q.to_wire(), address)
        wire = sock.recv(65535)
    return dns.message.from_wire(wire), wire


def option(reply: dns.message.Message, code: int) -> list[dns.edns.Option]:
    return [o for o in reply.options if o.otype == code]


def keepalive_value(reply: dns.message.Message) -> int | None:
    found = option(reply, KEEPALIVE)
    if not found:
        return None
    assert len(found) == 1
    (value,) = struct.unpack("!H", found[0].to_wire())
    return int(value)


def closed_after(sock: socket.socket, limit: float) -> tuple[float, bytes, BaseException | None]:
    """Read C{sock} until the server closes it: seconds taken, bytes read, the error that ended it."""
    start = time.monotonic()
    sock.settimeout(limit)
    received = b""
    error: BaseException | None = None
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {limit} s") from None
    except (ConnectionResetError, ssl.SSLError) as e:
        error = e
    return time.monotonic() - start, received, error


def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


# Every client gets the same answers as UDP


def kdig_sections(output: str) -> tuple[str, list[str], dict[str, list[str]]]:
    """The status, the flags and the sections (sorted records) of one kdig answer."""
    status = re.search(r"status: (\w+)", output)
    flags = re.search(r";; Flags: ([a-z ]*);", output)
    assert status and flags, output
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        heading = re.match(r";; (QUESTION|ANSWER|AUTHORITY|ADDITIONAL) SECTION:", line)
        if heading:
            current = heading.group(1)
            sections[current] = []
        elif not line.strip() or (line.startswith(";;") and current != "QUESTION"):
            current = None
        elif current is not None:
            sections[current].append(" ".join(line.lstrip(";").split()))
    return status.group(1), sorted(flags.group(1).split()), {k: sorted(v) for k, v in sections.items()}


def kdig(*args: str) -> str:
    result = subprocess.run(
        [require_tool("kdig"), *args], capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("auth", ["ca", "pin"])
def test_kdig_tls_same_as_udp(server: DnstlsProcess, pki: PKI, auth: str) -> None:
    """kdig over TLS (+tls-ca with +tls-hostname, or +tls-pin) gets the same sections as over UDP."""
    host, tls_port = server.address("tls")
    _, udp_port = server.address("udp")
    if auth == "ca":
        tls = [f"+tls-ca={pki.ca.path}", f"+tls-hostname={NAME}"]
    else:
        tls = [f"+tls-pin={independent_pin(pki.main)}"]
    for name, rdtype in QUESTIONS:
        over_tls = kdig(f"@{host}", "-p", str(tls_port), *tls, name, rdtype)
        over_udp = kdig(f"@{host}", "-p", str(udp_port), "+edns", "+bufsize=1232", name, rdtype)
        assert ";; TLS session (TLS1.3)" in over_tls
        assert "(UDP)" in over_udp
        assert kdig_sections(over_tls) == kdig_sections(over_udp), (name, rdtype)


@pytest.mark.parametrize(
    "args",
    [
        ["+tls-hostname=wrong.example.test"],
        ["+tls-pin=" + base64.b64encode(b"\0" * 32).decode()],
    ],
    ids=["wrong-name", "wrong-pin"],
)
def test_kdig_tls_authentication_fails(
    server: DnstlsProcess, pki: PKI, args: list[str]
) -> None:
    """kdig refuses the server for a name its certificate does not carry, or a pin it does not match."""
    host, port = server.address("tls")
    extra = [f"+tls-ca={pki.ca.path}"] if "hostname" in args[0] else []
    result = subprocess.run(
        [require_tool("kdig"), f"@{host}", "-p", str(port), *extra, *args, "www.example.test", "A"],
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert "192.0.2.80" not in result.stdout
    assert "NOERROR" not in result.stdout
    # kdig gives up with a close_notify in the middle of the handshake:
    # the server just drops the connection, without a traceback
    time.sleep(0.2)
    assert not tracebacks(server), "\n".join(server.lines)


def test_kdig_ipv6(server: DnstlsProcess, pki: PKI) -> None:
    """The TLS listener on [::1] answers kdig like the IPv4 one."""
    host, port = server.address("tls", socket.AF_INET6)
    output = kdig(f"@{host}", "-p", str(port), f"+tls-ca={pki.ca.path}", f"+tls-hostname={NAME}",
                  "+short", "www.example.test", "A")
    assert output.split() == ["192.0.2.80"]


def test_dig_tls(server: DnstlsProcess) -> None:
    """dig +tls gets the answer over TLS."""
    dig = require_tool("dig")
    host, port = server.address("tls")
    result = subprocess.run(
        [dig, "+tls", f"@{host}", "-p", str(port), "www.example.test", "A"],
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"www\.example\.test\.\s+3600\s+IN\s+A\s+192\.0\.2\.80", result.stdout)
    assert "status: NOERROR" in result.stdout
    assert "(TLS)" in result.stdout


def test_dnspython_tls(server: DnstlsProcess, pki: PKI) -> None:
    """dnspython's dns.query.tls, verifying the name against the test CA, gets the UDP answers."""
    host, tls_port = server.address("tls")
    _, udp_port = server.address("udp")
    for name, rdtype in QUESTIONS:
        q = dns.message.make_query(name, rdtype, use_edns=0)
        over_tls = dns.query.tls(
            q, host, port=tls_port, ssl_context=context(pki), server_hostname=NAME, timeout=TIMEOUT
        )
        over_udp = dns.query.udp(q, host, port=udp_port, timeout=TIMEOUT)
        assert over_tls.rcode() == over_udp.rcode()
        assert over_tls.flags == over_udp.flags
        for section in ("answer", "authority", "additional"):
            assert records(getattr(over_tls, section)) == records(getattr(over_udp, section)), (
                name, rdtype, section
            )


def records(section: list[dns.rrset.RRset]) -> list[str]:
    """The records of a message section as sorted lines (servers may rotate RRsets)."""
    return sorted(line for rrset in section for line in rrset.to_text().splitlines())


# The Python ssl client: versions, suites, ALPN, resumption


def test_ssl_defaults(server: DnstlsProcess, pki: PKI) -> None:
    """A default Python ssl client gets TLS 1.3, an AEAD suite, no compression and the right certificate."""
    with tls_connect(server.address("tls"), context(pki)) as sock:
        assert sock.version() == "TLSv1.3"
        assert sock.cipher()[0] in {
            "TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"
        }
        assert sock.compression() is None
        assert sock.selected_alpn_protocol() is None
        assert sock.getpeercert(binary_form=True) == pki.main.der
        reply, _ = ask_stream(sock, query())
        assert [str(r) for r in reply.answer[0]] == ["192.0.2.80"]


def test_ssl_tls12(server: DnstlsProcess, pki: PKI) -> None:
    """A TLS 1.2-only client gets an ECDHE AES-GCM suite."""
    with tls_connect(server.address("tls"), context(pki, maximum=ssl.TLSVersion.TLSv1_2)) as sock:
        assert sock.version() == "TLSv1.2"
        name = sock.cipher()[0]
        assert name.startswith("ECDHE-ECDSA-") and ("GCM" in name or "CHACHA20" in name), name
        ask_stream(sock, query())


def test_ssl_tls12_chosen_suite(server: DnstlsProcess, pki: PKI) -> None:
    """A TLS 1.2 client offering only ECDHE-ECDSA-AES128-GCM-SHA256 gets it."""
    ctx = context(pki, maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    with tls_connect(server.address("tls"), ctx) as sock:
        assert sock.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    ("maximum", "ciphers", "alert"),
    [
        (ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0", "alert protocol version"),
        (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256:@SECLEVEL=0", "alert handshake failure"),
        (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0", "alert handshake failure"),
    ],
    ids=["TLSv1.1", "CBC-SHA256", "CBC-SHA"],
)
def test_ssl_refused(
    server: DnstlsProcess, pki: PKI, maximum: ssl.TLSVersion, ciphers: str, alert: str
) -> None:
    """A client limited to TLS 1.1, or to TLS 1.2 CBC suites, gets the server's alert."""
    ctx = context(pki, maximum=maximum, ciphers=ciphers)
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with pytest.raises(ssl.SSLError, match=alert):
        tls_connect(server.address("tls"), ctx).close()


@pytest.mark.parametrize("offered", [["dot"], ["h2", "dot"]])
def test_ssl_alpn_dot(server: DnstlsProcess, pki: PKI, offered: list[str]) -> None:
    """A client offering dot among its ALPN protocols gets dot and an answer."""
    with tls_connect(server.address("tls"), context(pki, alpn=offered)) as sock:
        assert sock.selected_alpn_protocol() == "dot"
        ask_stream(sock, query())


def test_ssl_alpn_h2_refused(server: DnstlsProcess, pki: PKI) -> None:
    """A client offering only h2 gets the no_application_protocol alert."""
    with pytest.raises(ssl.SSLError, match="(?i)no.application.protocol"):
        tls_connect(server.address("tls"), context(pki, alpn=["h2"])).close()


def resume(address: tuple[str, int], ctx: ssl.SSLContext) -> tuple[ssl.SSLSession, ssl.SSLSocket]:
    """A first session (a query answered: TLS 1.3 tickets arrived), then a connection offering it."""
    with tls_connect(address, ctx) as first:
        assert not first.session_reused
        ask_stream(first, query(qid=1))
        session = first.session
    assert session is not None
    second = tls_connect(address, ctx, session=session)
    return session, second


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["1.2", "1.3"])
def test_resumption(server: DnstlsProcess, pki: PKI, version: ssl.TLSVersion) -> None:
    """A second connection offering the first one's session resumes it, with a ticket, and answers."""
    ctx = context(pki, maximum=version, minimum=version)
    session, second = resume(server.address("tls"), ctx)
    with second:
        assert second.version() == ("TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
        assert session.has_ticket
        assert second.session_reused
        reply, _ = ask_stream(second, query(qid=2))
        assert reply.rcode() == dns.rcode.NOERROR


@pytest.fixture(scope="module")
def no_tickets(pki: PKI) -> Iterator[DnstlsProcess]:
    """A dnstls started with --no-tls-tickets."""
    process = start(pki, "--no-tls-tickets")
    try:
        yield process
        assert not tracebacks(process), "\n".join(process.lines)
    finally:
        process.stop()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["1.2", "1.3"])
def test_resumption_without_tickets(
    no_tickets: DnstlsProcess, pki: PKI, version: ssl.TLSVersion
) -> None:
    """With --no-tls-tickets, TLS 1.2 gets no ticket and resumes by session ID from the server's cache;
    TLS 1.3 resumes from the cache too (OpenSSL's stateful tickets), even after the client closed
    without close_notify."""
    ctx = context(pki, maximum=version, minimum=version)
    session, second = resume(no_tickets.address("tls"), ctx)
    with second:
        if version == ssl.TLSVersion.TLSv1_2:
            assert not session.has_ticket
            assert len(session.id) > 0
        assert second.session_reused
        ask_stream(second, query(qid=2))


# Streams: pipelining


def test_pipelining(server: DnstlsProcess, pki: PKI) -> None:
    """Twenty queries in one TLS write get twenty answers, each with its ID and question."""
    names = ["www.example.test.", "example.test.", "nope.example.test.", "x.wild.example.test."]
    queries = [query(names[i % len(names)], "A", qid=1000 + i) for i in range(20)]
    with tls_connect(server.address("tls"), context(pki)) as sock:
        sock.sendall(b"".join(frame(q.to_wire()) for q in queries))
        replies = [dns.message.from_wire(read_wire(sock)) for _ in queries]
    by_id = {r.id: r for r in replies}
    assert sorted(by_id) == [q.id for q in queries]
    for q in queries:
        assert by_id[q.id].question == q.question
    assert by_id[1002].rcode() == dns.rcode.NXDOMAIN


def test_connection_reused(server: DnstlsProcess, pki: PKI) -> None:
    """After an answer the session stays open and the next query on it, a second later, is answered."""
    with tls_connect(server.address("tls"), context(pki)) as sock:
        ask_stream(sock, query(qid=1))
        time.sleep(1)
        reply, _ = ask_stream(sock, query(qid=2))
        assert reply.answer


# Keepalive (RFC 7828)


def test_keepalive_tls(server: DnstlsProcess, pki: PKI) -> None:
    """A TLS query with an empty keepalive option gets the TLS idle timeout, 30 s as 300."""
    with tls_connect(server.address("tls"), context(pki)) as sock:
        reply, _ = ask_stream(sock, query(options=[dns.edns.GenericOption(KEEPALIVE, b"")]))
        assert keepalive_value(reply) == 300
        reply, _ = ask_stream(sock, query(qid=2))
        assert keepalive_value(reply) is None
        reply, _ = ask_stream(sock, query(qid=3, edns=False))
        assert reply.edns < 0


def test_keepalive_tcp(server: DnstlsProcess) -> None:
    """A TCP/53 query with the keepalive option gets the TCP idle timeout, 10 s as 100."""
    with tcp_connect(server.address("tcp")) as sock:
        reply, _ = ask_stream(sock, query(options=[dns.edns.GenericOption(KEEPALIVE, b"")]))
        assert keepalive_value(reply) == 100


def test_keepalive_never_on_udp(server: DnstlsProcess) -> None:
    """A UDP query with the keepalive option gets a reply without it."""
    reply, _ = ask_udp(server.address("udp"), query(options=[dns.edns.GenericOption(KEEPALIVE, b"")]))
    assert reply.edns == 0
    assert keepalive_value(reply) is None


@pytest.fixture(scope="module")
def capped(pki: PKI) -> Iterator[DnstlsProcess]:
    """A dnstls taking at most three connections at once."""
    process = start(pki, "--max-connections", "3")
    try:
        yield process
    finally:
        process.stop()


def test_keepalive_zero_near_cap(capped: DnstlsProcess, pki: PKI) -> None:
    """
    Keepalive says 300 with 1 of 3 connections open, a tenth of it (30) past half the table (2 of
    3), and 0 near the cap (3 of 3).
    """
    address = capped.address("tls")
    asked = [dns.edns.GenericOption(KEEPALIVE, b"")]
    with tls_connect(address, context(pki)) as held:
        reply, _ = ask_stream(held, query(qid=1, options=asked))
        assert keepalive_value(reply) == 300
        with tls_connect(address, context(pki)) as sock:
            reply, _ = ask_stream(sock, query(qid=2, options=asked))
            assert keepalive_value(reply) == 30
            with tls_connect(address, context(pki)) as third:
                reply, _ = ask_stream(third, query(qid=3, options=asked))
                assert keepalive_value(reply) == 0
                reply, _ = ask_stream(sock, query(qid=4, options=asked))
                assert keepalive_value(reply) == 0
            # the third one's close may not have reached the server yet

            def over_tcp() -> int | None:
                try:
                    with tcp_connect(capped.address("tcp")) as plain:
                        return keepalive_value(ask_stream(plain, query(qid=5, options=asked))[0])
                except (ConnectionError, OSError):
                    return None

            wait_for(lambda: over_tcp() == 0)
    assert not tracebacks(capped), "\n".join(capped.lines)


# Padding (RFC 7830, RFC 8467)


@pytest.mark.parametrize(("name", "rdtype"), [("www.example.test.", "A"), ("example.test.", "MX"),
                                             ("corner.test.", "NS"), ("nope.example.test.", "A")])
def test_padding_tls(server: DnstlsProcess, pki: PKI, name: str, rdtype: str) -> None:
    """A TLS query with the padding option gets a reply padded to a multiple of 468 octets, minimally."""
    with tls_connect(server.address("tls"), context(pki)) as sock:
        plain_reply, plain = ask_stream(sock, query(name, rdtype, qid=1))
        padded_reply, padded = ask_stream(sock, query(name, rdtype, qid=2, pad=128))
    assert not option(plain_reply, PADDING)
    assert len(option(padded_reply, PADDING)) == 1
    assert len(padded) % 468 == 0
    assert len(padded) - 468 < len(plain) + 4
    assert padded_reply.answer == plain_reply.answer


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_no_padding_in_clear(server: DnstlsProcess, transport: str) -> None:
    """A TCP/53 or UDP query with the padding option gets a reply without it (RFC 7830 section 6)."""
    q = query(pad=128)
    assert any(o.otype == PADDING for o in dns.message.from_wire(q.to_wire()).options)
    if transport == "udp":
        reply, wire = ask_udp(server.address("udp"), q)
    else:
        with tcp_connect(server.address("tcp")) as sock:
            reply, wire = ask_stream(sock, q)
    assert reply.edns == 0
    assert not option(reply, PADDING)
    assert len(wire) < 468


# Clear text on the TLS port


def tls_records(data: bytes) -> list[int]:
    """The content types of the TLS records C{data} consists of; fails if it is not TLS records."""
    types = []
    while data:
        assert len(data) >= 5, data
        kind, version, length = struct.unpack("!BHH", data[:5])
        assert kind in (20, 21, 22, 23), data
        assert version in (0x0301, 0x0302, 0x0303), data
        types.append(kind)
        data = data[5 + length :]
    return types


def test_clear_text_on_tls_port(server: DnstlsProcess) -> None:
    """A clear-text DNS query to the TLS port gets no DNS reply, at most an alert, and is closed."""
    with tcp_connect(server.address("tls")) as sock:
        sock.sendall(frame(query(qid=0x4141).to_wire()))
        _, received, _ = closed_after(sock, TIMEOUT)
    assert b"www" not in received
    assert set(tls_records(received)) <= {21}


def test_clear_text_after_client_hello(server: DnstlsProcess, pki: PKI) -> None:
    """A client that sends a ClientHello, then clear-text DNS instead of finishing, gets no DNS bytes back."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context(pki).wrap_bio(incoming, outgoing, server_hostname=NAME)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    with tcp_connect(server.address("tls")) as sock:
        sock.sendall(outgoing.read())
        time.sleep(0.2)
        sock.sendall(frame(query(qid=0x4242).to_wire()))
        _, received, _ = closed_after(sock, TIMEOUT)
    assert b"www" not in received
    kinds = tls_records(received)
    assert kinds and kinds[0] == 22


# Timeouts


@pytest.fixture(scope="module")
def short_handshake(pki: PKI) -> Iterator[DnstlsProcess]:
    """A dnstls that drops a TLS client without a finished handshake after 1 s."""
    process = start(pki, "--tls-handshake-timeout", "1")
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("sends", [b"", b"\x16\x03\x01\x02\x00\x01"], ids=["silent", "partial-hello"])
def test_handshake_timeout(short_handshake: DnstlsProcess, sends: bytes) -> None:
    """A client that connects and never completes a ClientHello is dropped after the 1 s handshake timeout."""
    with tcp_connect(short_handshake.address("tls")) as sock:
        sock.sendall(sends)
        took, received, _ = closed_after(sock, 5)
    assert 0.8 <= took <= 3.0, took
    assert received == b""
    assert not tracebacks(short_handshake), "\n".join(short_handshake.lines)


@pytest.fixture(scope="module")
def short_idle(pki: PKI) -> Iterator[DnstlsProcess]:
    """A dnstls that closes a TLS session after 1 s without a query."""
    process = start(pki, "--tls-idle-timeout", "1")
    try:
        yield process
    finally:
        process.stop()


def test_idle_timeout_close_notify(short_idle: DnstlsProcess, pki: PKI) -> None:
    """An idle TLS session is closed after the 1 s idle timeout with close_notify: a clean EOF."""
    sock = tls_connect(short_idle.address("tls"), context(pki), suppress_ragged_eofs=False)
    with sock:
        reply, _ = ask_stream(sock, query(options=[dns.edns.GenericOption(KEEPALIVE, b"")]))
        assert keepalive_value(reply) == 10
        start_time = time.monotonic()
        sock.settimeout(5)
        try:
            data = sock.recv(100)
        except ssl.SSLZeroReturnError:
            data = b""
        took = time.monotonic() - start_time
        assert data == b""
    assert 0.8 <= took <= 3.0, took


def test_idle_timeout_reset_by_queries(short_idle: DnstlsProcess, pki: PKI) -> None:
    """Queries every 0.5 s keep a session with a 1 s idle timeout open."""
    with tls_connect(short_idle.address("tls"), context(pki)) as sock:
        for qid in range(5):
            ask_stream(sock, query(qid=qid))
            time.sleep(0.5)
        ask_stream(sock, query(qid=99))


# Caps


@pytest.fixture(scope="module")
def per_client(pki: PKI) -> Iterator[DnstlsProcess]:
    """A dnstls taking at most two connections from one client address."""
    process = start(pki, "--max-connections-per-client", "2")
    try:
        yield process
    finally:
        process.stop()


def refused(address: tuple[str, int], pki: PKI, source: str | None = None) -> bool:
    """Whether a TLS connection from C{source} is closed before it can be used."""
    try:
        sock = tls_connect(address, context(pki), source=source)
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    with sock:
        try:
            ask_stream(sock, query(qid=7))
        except (ssl.SSLError, ConnectionError, OSError):
            return True
    return False


def test_per_client_cap(per_client: DnstlsProcess, pki: PKI) -> None:
    """A third connection from 127.0.0.1 is closed at once; 127.0.0.2 and the first two are served."""
    address = per_client.address("tls")
    one = tls_connect(address, context(pki))
    two = tls_connect(address, context(pki))
    with one, two:
        ask_stream(one, query(qid=1))
        ask_stream(two, query(qid=2))
        start_time = time.monotonic()
        assert refused(address, pki)
        assert time.monotonic() - start_time < 2
        assert not refused(address, pki, source="127.0.0.2")
        with tcp_connect(per_client.address("tcp")) as plain:
            with pytest.raises((ConnectionError, OSError)):
                ask_stream(plain, query(qid=3))
        ask_stream(one, query(qid=4))
        ask_stream(two, query(qid=5))
    # once they are gone, 127.0.0.1 is served again
    wait_for(lambda: not refused(address, pki))
    assert not tracebacks(per_client), "\n".join(per_client.lines)


# Start-up


def test_tls_on_port_53_refused() -> None:
    """--listen-tls on port 53 stops twistd dnstls with one line (RFC 7858 3.1)."""
    result = run_dnstls(["--zones", str(ZONES), "--listen-tls", "127.0.0.1:53"])
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, output
    assert "53" in lines[0] and "--listen-tls" in lines[0]


def test_pin_logged(server: DnstlsProcess, pki: PKI) -> None:
    """The start-up log gives the certificate's SHA-256 SPKI pin, as kdig's +tls-pin takes it."""
    pin = independent_pin(pki.main)
    assert any(f"SPKI pin sha256 {pin}" in line for line in server.lines), server.lines


def test_expired_certificate_warned(pki: PKI) -> None:
    """A server given an expired certificate says so in its log at start-up."""
    process = start(pki, leaf=pki.expired)
    try:
        warnings = [line for line in process.lines if "#warn" in line]
        assert any(f"{pki.expired.cert} expired on" in line for line in warnings), (
            "\n".join(process.lines)
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_connect(process.address("tls"), context(pki)).close()
    finally:
        process.stop()


# Reload on SIGHUP


def test_sighup_reload(pki: PKI, tmp_path: Path) -> None:
    """SIGHUP serves a replaced certificate to new handshakes while open sessions go on; an unreadable
    replacement leaves the last good one serving, with an error in the log."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(pki.main.cert, cert)
    shutil.copy(pki.main.key_path, key)
    process = DnstlsProcess(
        ["--zones", str(ZONES), "--listen-tls", "127.0.0.1:0", "--tls-cert", str(cert),
         "--tls-key", str(key)]
    )
    try:
        address = process.address("tls")

        def loaded() -> int:
            return sum("TLS certificate" in line for line in process.lines)

        def reload_errors() -> list[str]:
            return [line for line in process.lines if "reload: keeping the TLS" in line]

        def hangup() -> None:
            process.process.send_signal(signal.SIGHUP)

        before = tls_connect(address, context(pki))
        with before:
            assert before.getpeercert(binary_form=True) == pki.main.der
            ask_stream(before, query(qid=1))

            shutil.copy(pki.other.cert, cert)
            shutil.copy(pki.other.key_path, key)
            count = loaded()
            hangup()
            wait_for(lambda: loaded() > count)
            assert any(independent_pin(pki.other) in line for line in process.lines[-2:])
            with tls_connect(address, context(pki)) as after:
                assert after.getpeercert(binary_form=True) == pki.other.der
                ask_stream(after, query(qid=2))
            ask_stream(before, query(qid=3))

            cert.write_text("garbage\n")
            key.write_bytes(
                pki.main.key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            errors = len(reload_errors())
            hangup()
            wait_for(lambda: len(reload_errors()) > errors)
            error_line = reload_errors()[-1]
            assert "#error" in error_line and str(cert) in error_line
            with tls_connect(address, context(pki)) as after:
                assert after.getpeercert(binary_form=True) == pki.other.der
                ask_stream(after, query(qid=4))
            ask_stream(before, query(qid=5))
        assert process.process.poll() is None
        assert not tracebacks(process), "\n".join(process.lines)
    finally:
        process.stop()
