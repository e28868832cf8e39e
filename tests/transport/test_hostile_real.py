"""
Hostile stream clients on real loopback sockets (issue 19): clients that
pipeline queries and never read the answers, on TCP and inside TLS, must
not grow the server's memory and are cut off; a client that reads slowly
loses nothing; a client that starts a message and never finishes it is
closed after the I/O timeout, not the idle timeout.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest

from dnstls.transport.framing import frame
from tests.certs import make_ca, make_leaf
from tests.support import ZONES, DnstlsProcess, recv_exact
from tests.transport.test_tcp_real import closed_within

#: Every socket operation gives up after this many seconds.
TIMEOUT = 5.0
NAME = "dns.example.test"
#: The idle timeout the servers here run with, in seconds.
IDLE = 2.0
#: How much the server's resident memory may grow under a client that
#: never reads, in kB (its answers, unbounded, would be some 50 MB).
RSS_SLACK_KB = 24 * 1024
#: TCP_INFO's state of a socket the peer reset (CLOSE) or closed (CLOSE_WAIT).
_GONE = (7, 8)


@pytest.fixture(scope="module")
def leaf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The test CA's file, and a leaf certificate and key for dns.example.test."""
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory)
    made = make_leaf(ca, directory, (NAME,))
    return ca.path, made.cert, made.key_path


@pytest.fixture(scope="module")
def server(leaf: tuple[Path, Path, Path]) -> Iterator[DnstlsProcess]:
    """A dnstls on TCP and TLS whose idle timeouts are two seconds."""
    yield from _served(leaf, IDLE)


def _served(leaf: tuple[Path, Path, Path], idle: float, *extra: str) -> Iterator[DnstlsProcess]:
    """A dnstls on TCP and TLS with the leaf's certificate, idle timeouts of C{idle} and C{extra}
    options, stopped at the end."""
    _, cert, key = leaf
    process = DnstlsProcess(
        [
            "--zones", str(ZONES), "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
            "--tls-cert", str(cert), "--tls-key", str(key),
            "--tcp-idle-timeout", str(idle), "--tls-idle-timeout", str(idle),
            *extra,
        ]
    )
    try:
        yield process
    finally:
        process.stop()


def rss_kb(pid: int) -> int:
    """The resident memory of process C{pid}, in kB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError("no VmRSS")


def big_query(qid: int) -> bytes:
    """A framed query whose answer is about 1900 octets."""
    query = dns.message.make_query("big.corner.test.", "TXT")
    query.id = qid
    return frame(query.to_wire())


def small_receiver(address: tuple[str, int]) -> socket.socket:
    """A TCP socket to C{address} with a 4 kB receive buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect(address)
    return sock


def gone(sock: socket.socket) -> bool:
    """Whether the peer of C{sock} has reset or closed it (read from TCP_INFO, reading nothing)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] in _GONE


def flood(send: object, count: int, seconds: float) -> int:
    """
    Send C{count} big queries in batches of 100 through C{send} (a
    socket's or an SSL socket's C{send}, with a short timeout) for at most
    C{seconds}; the number of queries sent.
    """
    batch = b"".join(big_query(n % 65536) for n in range(100))
    sent = 0
    deadline = time.monotonic() + seconds
    while sent < count and time.monotonic() < deadline:
        try:
            n = send(batch)  # type: ignore[operator]
        except (TimeoutError, ssl.SSLWantWriteError, BlockingIOError):
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        if n < len(batch):
            # the rest of a batch is never sent: the stream is broken from here
            break
        sent += 100
    return sent


def never_reader(server: DnstlsProcess, sock: socket.socket, send: object) -> tuple[int, int, float | None]:
    """
    Pipeline big queries on C{sock} and never read: the queries sent, the
    server's peak RSS growth in kB until it let go of C{sock}, and the
    seconds until then after the flood (C{None}: it kept it 15 s).
    """
    before = rss_kb(server.ready.pid)
    sent = flood(send, 30000, 6.0)
    peak = rss_kb(server.ready.pid)
    start = time.monotonic()
    cut: float | None = None
    while cut is None and time.monotonic() - start < 15:
        time.sleep(0.1)
        peak = max(peak, rss_kb(server.ready.pid))
        if gone(sock):
            cut = time.monotonic() - start
    return sent, peak - before, cut


def test_tcp_never_reader_bounded_and_cut_off(server: DnstlsProcess) -> None:
    """A TCP client pipelining queries and reading nothing keeps the server's memory flat; it is cut off."""
    with small_receiver(server.address("tcp")) as sock:
        sock.settimeout(0.2)
        sent, grown, cut = never_reader(server, sock, sock.send)
    assert sent >= 1000
    assert grown < RSS_SLACK_KB, f"RSS grew {grown} kB for {sent} queries"
    assert cut is not None and cut <= IDLE + 1.5


def test_tls_never_reader_bounded_and_cut_off(server: DnstlsProcess, leaf: tuple[Path, Path, Path]) -> None:
    """A TLS client pipelining queries and reading nothing keeps the server's memory flat; it is cut off."""
    ca, _, _ = leaf
    ctx = ssl.create_default_context(cafile=str(ca))
    raw = small_receiver(server.address("tls"))
    with ctx.wrap_socket(raw, server_hostname=NAME) as sock:
        sock.settimeout(0.2)
        sent, grown, cut = never_reader(server, sock, sock.send)
    assert sent >= 1000
    assert grown < RSS_SLACK_KB, f"RSS grew {grown} kB for {sent} queries"
    assert cut is not None and cut <= IDLE + 1.5


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_slow_reader_gets_every_answer(
    server: DnstlsProcess, leaf: tuple[Path, Path, Path], kind: str
) -> None:
    """A client pipelining 6000 big queries and reading slowly gets every answer, in order."""
    count = 6000
    stream = b"".join(big_query(n) for n in range(count))
    sock: socket.socket = small_receiver(server.address(kind))
    if kind == "tls":
        ctx = ssl.create_default_context(cafile=str(leaf[0]))
        sock = ctx.wrap_socket(sock, server_hostname=NAME)
    with sock:
        ids = pipeline_slowly(sock, stream, count, 0.002)
    assert ids == list(range(count))


#: What a non-blocking socket or SSL socket raises when it must wait.
_WAIT = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def pipeline_slowly(sock: socket.socket, stream: bytes, count: int, pause: float) -> list[int]:
    """
    Send C{stream} and read the ids of C{count} replies from C{sock} in one
    thread (an SSL socket may not be read and written from two at once),
    sleeping C{pause} every 20 replies; within L{TIMEOUT} of the last
    progress.
    """
    sock.setblocking(False)
    sent, data, ids = 0, b"", []
    last = time.monotonic()
    while len(ids) < count:
        assert time.monotonic() - last < TIMEOUT, f"stuck after {len(ids)} replies"
        want_write = sent < len(stream)
        select.select([sock], [sock] if want_write else [], [], 0.05)
        if want_write:
            try:
                sent += sock.send(stream[sent : sent + 16384])
                last = time.monotonic()
            except _WAIT:
                pass
        try:
            chunk = sock.recv(4096)
        except _WAIT:
            continue
        if not chunk:
            raise ConnectionError(f"closed after {len(ids)} replies")
        data += chunk
        last = time.monotonic()
        while len(data) >= 2 and len(data) >= 2 + struct.unpack("!H", data[:2])[0]:
            length = struct.unpack("!H", data[:2])[0]
            ids.append(struct.unpack("!H", data[2:4])[0])
            data = data[2 + length :]
            if len(ids) % 20 == 0:
                time.sleep(pause)
    return ids


@pytest.fixture(scope="module")
def slow_idle_server(leaf: tuple[Path, Path, Path]) -> Iterator[DnstlsProcess]:
    """A dnstls on TCP and TLS with idle timeouts of 10 s and the default I/O timeout."""
    _, cert, key = leaf
    process = DnstlsProcess(
        [
            "--zones", str(ZONES), "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
            "--tls-cert", str(cert), "--tls-key", str(key), "--tls-idle-timeout", "10",
        ]
    )
    try:
        yield process
    finally:
        process.stop()


def stream_to(
    server: DnstlsProcess, leaf: tuple[Path, Path, Path], kind: str
) -> socket.socket:
    """A TCP connection, or a TLS session with its handshake done, to C{server}."""
    sock = socket.create_connection(server.address(kind), timeout=TIMEOUT)
    if kind == "tls":
        ctx = ssl.create_default_context(cafile=str(leaf[0]))
        return ctx.wrap_socket(sock, server_hostname=NAME)
    return sock


@pytest.mark.parametrize("kind", ["tcp", "tls"])
@pytest.mark.parametrize("part", [1, 20], ids=["one-length-octet", "half-a-message"])
def test_partial_message_closed_after_io_timeout(
    slow_idle_server: DnstlsProcess, leaf: tuple[Path, Path, Path], kind: str, part: int
) -> None:
    """A client sending part of a message, then nothing, is closed after the 1 s I/O timeout, not the idle."""
    with stream_to(slow_idle_server, leaf, kind) as sock:
        sock.sendall(big_query(7)[:part])
        elapsed = closed_within(sock, 6)
    assert elapsed is not None
    assert 0.8 <= elapsed <= 2.5


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_trickle_within_io_timeout_answered(
    slow_idle_server: DnstlsProcess, leaf: tuple[Path, Path, Path], kind: str
) -> None:
    """A message sent one octet every 10 ms (under the I/O timeout in all) is answered, twice in a row."""
    with stream_to(slow_idle_server, leaf, kind) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for qid in (1, 2):
            message = big_query(qid)
            # 36 octets: about 0.4 s from the first to the last
            for octet in message:
                sock.sendall(bytes([octet]))
                time.sleep(0.01)
            (length,) = struct.unpack("!H", recv_exact(sock, 2))
            assert struct.unpack("!H", recv_exact(sock, length)[:2])[0] == qid



#: The idle timeout, and the bound on unsent replies, of L{tight_server}.
TIGHT_IDLE = 0.5
TIGHT_BOUND = 65536


@pytest.fixture(scope="module")
def tight_server(leaf: tuple[Path, Path, Path]) -> Iterator[DnstlsProcess]:
    """A dnstls on TCP and TLS with idle timeouts of 0.5 s and 64 kB of unsent replies per connection."""
    yield from _served(leaf, TIGHT_IDLE, "--max-unsent-per-connection", str(TIGHT_BOUND))


def read_slowly(
    sock: socket.socket, count: int, chunk: int, pause: float, then: bytes = b"", at: int = 0
) -> list[int]:
    """
    The ids of C{count} replies read from C{sock}, C{chunk} octets at most
    every C{pause} seconds, C{then} sent once C{at} have come; within
    L{TIMEOUT} of the last progress.
    """
    data, ids = b"", []
    sock.settimeout(TIMEOUT)
    while len(ids) < count:
        time.sleep(pause)
        got = sock.recv(chunk)
        if not got:
            raise ConnectionError(f"closed after {len(ids)} replies")
        data += got
        while len(data) >= 2 and len(data) >= 2 + struct.unpack("!H", data[:2])[0]:
            length = struct.unpack("!H", data[:2])[0]
            ids.append(struct.unpack("!H", data[2:4])[0])
            data = data[2 + length :]
            if then and len(ids) == at:
                sock.sendall(then)
    return ids


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_slow_reader_outlasting_idle_timeout_kept(
    tight_server: DnstlsProcess, leaf: tuple[Path, Path, Path], kind: str
) -> None:
    """A client reading 4 kB per 50 ms for many 0.5 s idle timeouts gets all answers, and one more after."""
    count = 150  # some 285 kB of answers: about 3.5 s of reading
    sock: socket.socket = small_receiver(tight_server.address(kind))
    if kind == "tls":
        ctx = ssl.create_default_context(cafile=str(leaf[0]))
        sock = ctx.wrap_socket(sock, server_hostname=NAME)
    with sock:
        sock.sendall(b"".join(big_query(n) for n in range(count)))
        start = time.monotonic()
        ids = read_slowly(sock, count + 1, 4096, 0.05, big_query(count), count - 5)
        elapsed = time.monotonic() - start
    assert ids == list(range(count + 1))
    assert elapsed > 4 * TIGHT_IDLE  # reading took many idle timeouts


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_never_reader_still_cut_off_after_idle_timeout(
    tight_server: DnstlsProcess, leaf: tuple[Path, Path, Path], kind: str
) -> None:
    """A client that floods queries and reads nothing is cut off within two idle timeouts of its flood."""
    sock: socket.socket = small_receiver(tight_server.address(kind))
    if kind == "tls":
        ctx = ssl.create_default_context(cafile=str(leaf[0]))
        sock = ctx.wrap_socket(sock, server_hostname=NAME)
    with sock:
        sent = flood(sock.send, 1000, 3.0)
        start = time.monotonic()
        while not gone(sock) and time.monotonic() - start < 5:
            time.sleep(0.05)
        assert sent >= 1000
        assert gone(sock)
        assert time.monotonic() - start < 2.5
