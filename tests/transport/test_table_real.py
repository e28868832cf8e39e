"""
A full connection table on real loopback sockets (issue 19 item 3): a
dnstls whose table is held by clients that send a query now and then and
ignore keepalive 0 still serves a fresh kdig +tls and a fresh Python TLS
client at once, by closing the idle ones; and the per-prefix cap.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.flood import Flood, addresses
from tests.support import DnstlsProcess, require_tool
from tests.transport.test_dot_real import (
    NAME,
    PKI,
    ask_stream,
    context,
    pki,
    query,
    start,
    tcp_connect,
    tls_connect,
    tracebacks,
)

__all__ = ["pki"]

#: The table's size in these tests.
TABLE = 200
#: A fresh client must be answered within this many seconds.
BOUND = 3.0


@pytest.fixture
def small_table(pki: PKI) -> Iterator[DnstlsProcess]:
    """A dnstls with room for 200 TCP and TLS connections and default idle timeouts."""
    process = start(pki, "--max-connections", str(TABLE))
    try:
        yield process
    finally:
        process.stop()


def kdig_tls(server: DnstlsProcess, pki: PKI, source: str) -> bool:
    """Whether one kdig +tls from C{source}, given one second, gets an answer."""
    host, port = server.address("tls")
    result = subprocess.run(
        [
            require_tool("kdig"), f"@{host}", "-p", str(port), "-b", source,
            f"+tls-ca={pki.ca.path}", f"+tls-hostname={NAME}",
            "+retry=0", "+timeout=1", "www.example.test", "A",
        ],
        capture_output=True, text=True, timeout=10, check=False,
    )
    return result.returncode == 0 and "status: NOERROR" in result.stdout


def served_within(attempt: object, bound: float) -> float | None:
    """Seconds until C{attempt()} first succeeds, trying again until C{bound}; or None."""
    start_time = time.monotonic()
    while time.monotonic() - start_time < bound:
        if attempt():  # type: ignore[operator]
            return time.monotonic() - start_time
        time.sleep(0.05)
    return None


def python_tls(server: DnstlsProcess, pki: PKI, source: str) -> bool:
    """Whether a Python ssl client from C{source} is answered."""
    try:
        with tls_connect(server.address("tls"), context(pki), source=source) as sock:
            ask_stream(sock, query(qid=5))
        return True
    except OSError:
        return False


def test_full_table_serves_fresh_client(small_table: DnstlsProcess, pki: PKI) -> None:
    """
    With the table held by clients querying every 2 s and ignoring keepalive 0, a fresh kdig +tls
    and a Python TLS client are answered within 3 s; the connections closed are the idle ones, not
    one querying every 0.2 s.
    """
    address = small_table.address("tcp")
    active = Flood(address, addresses(2, second=9), 5, period=0.2, reconnect=None).start()
    hostile = Flood(address, addresses(19), 10, period=2.0).start()
    try:
        time.sleep(1.0)
        assert active.stats.opened + hostile.stats.opened >= TABLE
        took = served_within(lambda: kdig_tls(small_table, pki, "127.0.0.1"), BOUND)
        assert took is not None, f"kdig +tls not answered in {BOUND} s"
        took = served_within(lambda: python_tls(small_table, pki, "127.0.0.2"), BOUND)
        assert took is not None, f"Python TLS client not answered in {BOUND} s"
        assert hostile.stats.closed > 0
        assert active.stats.closed == 0
        assert active.open == 10 and active.stats.replies > 0
    finally:
        hostile.stop()
        active.stop()
    assert not tracebacks(small_table), "\n".join(small_table.lines)


@pytest.fixture
def prefix_capped(pki: PKI) -> Iterator[DnstlsProcess]:
    """A dnstls taking two connections per address and three per /24."""
    process = start(pki, "--max-connections-per-client", "2", "--max-connections-per-prefix", "3")
    try:
        yield process
    finally:
        process.stop()


def tcp_served(address: tuple[str, int], source: str, qid: int) -> socket.socket | None:
    """A TCP connection from C{source} that got its answer, or None when it was closed."""
    sock = tcp_connect(address, source)
    try:
        ask_stream(sock, query(qid=qid))
    except OSError:
        sock.close()
        return None
    return sock


def test_per_prefix_cap(prefix_capped: DnstlsProcess) -> None:
    """A fourth connection from one /24 (its third address) is refused while another /24 is served."""
    address = prefix_capped.address("tcp")
    sources = ["127.5.5.1", "127.5.5.1", "127.5.5.2"]
    held = [tcp_served(address, source, n) for n, source in enumerate(sources)]
    try:
        assert all(held)
        assert tcp_served(address, "127.5.5.3", 9) is None
        other = tcp_served(address, "127.5.6.1", 10)
        assert other is not None
        other.close()
    finally:
        for sock in held:
            if sock is not None:
                sock.close()
    assert not tracebacks(prefix_capped), "\n".join(prefix_capped.lines)
