"""
DNS over TCP on real loopback sockets (RFC 7766): framing across writes,
pipelining, connection isolation, the idle timeout, the connection cap and
clients that leave early; checked with plain sockets, dnspython, kdig and dig.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from dnstls.transport.framing import frame
from tests.support import ZONES, DnstlsProcess, recv_exact, require_tool

#: Every socket operation in this file gives up after this many seconds.
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def idle_server() -> Iterator[DnstlsProcess]:
    """A dnstls that closes TCP connections after 1 s without a complete query."""
    server = DnstlsProcess(
        ["--zones", str(ZONES), "--listen", "127.0.0.1:0", "--tcp-idle-timeout", "1"]
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def capped_server() -> Iterator[DnstlsProcess]:
    """A dnstls that holds at most two TCP connections at once."""
    server = DnstlsProcess(
        ["--zones", str(ZONES), "--listen", "127.0.0.1:0", "--max-connections", "2"]
    )
    try:
        yield server
    finally:
        server.stop()


def connect(address: tuple[str, int]) -> socket.socket:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(address)
    return sock


def read_reply(sock: socket.socket) -> dns.message.Message:
    (length,) = struct.unpack("!H", recv_exact(sock, 2))
    return dns.message.from_wire(recv_exact(sock, length))


def make_query(name: str = "www.example.test.", rdtype: str = "A", qid: int = 1) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    query.id = qid
    return query


def ask(sock: socket.socket, qid: int, name: str = "www.example.test.") -> dns.message.Message:
    sock.sendall(frame(make_query(name, qid=qid).to_wire()))
    reply = read_reply(sock)
    assert reply.id == qid
    return reply


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closes C{sock} (reading and dropping data), or None."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    finally:
        sock.settimeout(TIMEOUT)
    return time.monotonic() - start


def tracebacks(server: DnstlsProcess, since: int = 0) -> list[str]:
    return [line for line in server.lines[since:] if "Traceback" in line]


def test_prefix_and_message_in_separate_writes(dnstls_server: DnstlsProcess) -> None:
    """The two length octets and the message sent in five writes 100 ms apart are answered."""
    stream = frame(make_query(qid=501).to_wire())
    with connect(dnstls_server.address("tcp")) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (stream[:1], stream[1:2], stream[2:10], stream[10:20], stream[20:]):
            sock.sendall(piece)
            time.sleep(0.1)
        reply = read_reply(sock)
    assert reply.id == 501
    assert [str(r) for r in reply.answer[0]] == ["192.0.2.80"]


def test_hundred_pipelined(dnstls_server: DnstlsProcess) -> None:
    """100 queries written back to back on one connection get 100 answers with matching IDs."""
    names = ["www.example.test.", "big.corner.test.", "nope.example.test.", "example.org."]
    queries = {1000 + n: make_query(names[n % 4], "TXT" if n % 4 == 1 else "A", 1000 + n) for n in range(100)}
    with connect(dnstls_server.address("tcp")) as sock:
        sock.sendall(b"".join(frame(q.to_wire()) for q in queries.values()))
        replies = [read_reply(sock) for _ in queries]
    assert sorted(r.id for r in replies) == sorted(queries)
    for reply in replies:
        assert reply.question == queries[reply.id].question
        assert not reply.flags & dns.flags.TC
    rcodes = {r.id: r.rcode() for r in replies}
    assert rcodes[1002] == dns.rcode.NXDOMAIN
    assert rcodes[1003] == dns.rcode.REFUSED


def test_connections_get_only_their_own_ids(dnstls_server: DnstlsProcess) -> None:
    """Two connections querying in turn each receive only the IDs they sent."""
    address = dnstls_server.address("tcp")
    with connect(address) as first, connect(address) as second:
        for n in range(30):
            first.sendall(frame(make_query(qid=n).to_wire()))
            second.sendall(frame(make_query("www.corner.test.", qid=30000 + n).to_wire()))
        got_first = sorted(read_reply(first).id for _ in range(30))
        got_second = sorted(read_reply(second).id for _ in range(30))
    assert got_first == list(range(30))
    assert got_second == list(range(30000, 30030))


def test_ipv6_tcp(dnstls_server: DnstlsProcess) -> None:
    """The ::1 TCP listener answers dnspython's dns.query.tcp."""
    host, port = dnstls_server.address("tcp", socket.AF_INET6)
    reply = dns.query.tcp(make_query(), host, port=port, timeout=TIMEOUT)
    assert [str(r) for r in reply.answer[0]] == ["192.0.2.80"]


def test_dnspython_tcp_large_answer(dnstls_server: DnstlsProcess) -> None:
    """dns.query.tcp gets the whole 18-string TXT RRset that UDP must truncate."""
    host, port = dnstls_server.address("tcp")
    query = make_query("big.corner.test.", "TXT")
    reply = dns.query.tcp(query, host, port=port, timeout=TIMEOUT)
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 18
    udp_reply = dns.query.udp(query, host, port=port, timeout=TIMEOUT)
    assert udp_reply.flags & dns.flags.TC


def test_connection_reuse(dnstls_server: DnstlsProcess) -> None:
    """Fifty queries asked one after another on one connection all succeed."""
    with connect(dnstls_server.address("tcp")) as sock:
        for n in range(50):
            assert ask(sock, 2000 + n).rcode() == dns.rcode.NOERROR


def test_idle_connection_closed(idle_server: DnstlsProcess) -> None:
    """With --tcp-idle-timeout 1 an idle connection is closed after about one second."""
    with connect(idle_server.address("tcp")) as sock:
        elapsed = closed_within(sock, 4)
    assert elapsed is not None
    assert 0.7 <= elapsed <= 2.5


def test_query_restarts_idle_clock(idle_server: DnstlsProcess) -> None:
    """A complete query at 0.6 s keeps the connection open past 1 s; it closes 1 s later."""
    with connect(idle_server.address("tcp")) as sock:
        time.sleep(0.6)
        ask(sock, 7)
        elapsed = closed_within(sock, 4)
    assert elapsed is not None
    assert 0.7 <= elapsed <= 2.5


def test_trickle_does_not_keep_connection(idle_server: DnstlsProcess) -> None:
    """A message trickled one byte every 0.2 s and never finished does not hold the connection."""
    stream = frame(make_query().to_wire())
    with connect(idle_server.address("tcp")) as sock:
        start = time.monotonic()
        closed = False
        for byte in stream[:-1]:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closed_within(sock, 0.2) is not None:
                closed = True
                break
        elapsed = time.monotonic() - start
    assert closed
    assert elapsed <= 2.5


def _send_buffer_limit() -> int:
    """The most octets the kernel may buffer for one TCP sender (tcp_wmem's maximum)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * 1024 * 1024


def test_reader_that_never_reads_is_cut_off(idle_server: DnstlsProcess) -> None:
    """A client that pipelines big queries and never reads the answers is disconnected anyway."""
    query = frame(make_query("big.corner.test.", "TXT").to_wire())
    # answers of about 1900 octets: well beyond what the kernel buffers hold
    count = max(3000, 2 * _send_buffer_limit() // 1900)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(TIMEOUT)
        sock.connect(idle_server.address("tcp"))
        sock.sendall(query * count)
        deadline = time.monotonic() + 15
        cut_off = False
        while time.monotonic() < deadline and not cut_off:
            time.sleep(0.5)
            try:
                # part of a length (257) that never completes: not a message
                sock.send(b"\x01")
            except (BrokenPipeError, ConnectionResetError):
                cut_off = True
        assert cut_off
    finally:
        sock.close()
    assert tracebacks(idle_server) == []


def test_connection_cap(capped_server: DnstlsProcess) -> None:
    """
    With --max-connections 2 a third connection is served, and the second (told keepalive 0 at 2 of 2)
    is closed to make room.
    """
    address = capped_server.address("tcp")
    with connect(address) as first, connect(address) as second:
        ask(first, 1)
        ask(second, 2)
        with connect(address) as third:
            ask(third, 3)
        assert closed_within(second, 2) is not None


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_client_gone_before_answer(dnstls_server: DnstlsProcess, reset: bool) -> None:
    """Clients that send queries and close (or reset) at once leave no traceback in the log."""
    since = len(dnstls_server.lines)
    address = dnstls_server.address("tcp")
    for n in range(20):
        sock = connect(address)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        burst = (make_query("big.corner.test.", "TXT", n * 10 + k).to_wire() for k in range(10))
        sock.sendall(b"".join(frame(query) for query in burst))
        sock.close()
    time.sleep(0.3)
    with connect(address) as sock:
        ask(sock, 9)
    assert tracebacks(dnstls_server, since) == []


def test_kdig_tcp(dnstls_server: DnstlsProcess) -> None:
    """kdig +tcp gets an authoritative answer over TCP."""
    kdig = require_tool("kdig")
    host, port = dnstls_server.address("tcp")
    out = subprocess.run(
        [kdig, f"@{host}", "-p", str(port), "+tcp", "+timeout=3", "+retry=0", "www.corner.test.", "A"],
        capture_output=True, text=True, timeout=15, check=False,
    ).stdout
    assert "status: NOERROR" in out
    assert "(TCP)" in out
    assert "192.0.2.80" in out
    assert "Flags: qr aa" in out


def test_dig_tcp_keepopen(dnstls_server: DnstlsProcess) -> None:
    """dig +tcp +keepopen asks two questions on one connection, one too big for UDP."""
    dig = require_tool("dig")
    host, port = dnstls_server.address("tcp")
    out = subprocess.run(
        [
            dig, f"@{host}", "-p", str(port), "+tcp", "+keepopen", "+time=3", "+tries=1",
            "www.example.test.", "A", "big.corner.test.", "TXT",
        ],
        capture_output=True, text=True, timeout=15, check=False,
    ).stdout
    assert out.count("status: NOERROR") == 2
    assert out.count("(TCP)") == 2
    assert "192.0.2.80" in out
    answers = [line for line in out.splitlines() if line.startswith("big.corner.test.")]
    assert len(answers) == 18 and all("TXT" in line for line in answers)
    assert "truncated" not in out.lower()
