"""
Many DNS-over-TCP connections from many loopback source addresses, held
open by one thread: each sends one query every C{period} seconds whatever
the keepalive it is told (a client that ignores edns-tcp-keepalive 0), and
may open a new connection when the server closes one.  Used to fill a
server's connection table.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import random
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.message

from dnstls.transport.framing import frame


def addresses(count: int, second: int = 1) -> list[str]:
    """
    C{count} loopback addresses, each in its own /24: 127.C{second}.y.1.
    """
    return [f"127.{second + y // 256}.{y % 256}.1" for y in range(count)]


@dataclass
class Stats:
    """What a L{Flood} saw."""

    #: connections opened
    opened: int = 0
    #: connections the server closed (or reset)
    closed: int = 0
    #: connect attempts that failed
    failed: int = 0
    #: replies read (framed messages)
    replies: int = 0
    #: the source addresses of the connections the server closed
    closed_from: set[str] = field(default_factory=set)


class _Conn:
    __slots__ = ("sock", "source", "buffer")

    def __init__(self, sock: socket.socket, source: str) -> None:
        self.sock = sock
        self.source = source
        self.buffer = b""


class Flood:
    """
    C{per_address} TCP connections from each of C{sources} to C{address},
    each sending one query every C{period} seconds (the first at once),
    reading and dropping the replies; one the server closes is opened again
    C{reconnect} seconds later, unless C{reconnect} is C{None}.
    """

    def __init__(
        self,
        address: tuple[str, int],
        sources: Sequence[str],
        per_address: int,
        period: float,
        reconnect: float | None = 0.1,
        name: str = "www.example.test.",
    ) -> None:
        self.address = address
        self.sources = list(sources)
        self.per_address = per_address
        self.period = period
        self.reconnect = reconnect
        self.stats = Stats()
        self._query = frame(dns.message.make_query(name, "A").to_wire())
        self._selector = selectors.DefaultSelector()
        self._conns: dict[int, _Conn] = {}
        self._pending: list[tuple[float, str]] = []
        #: (when, tie-breaker, connection) of the next query of each
        self._due: list[tuple[float, int, _Conn]] = []
        self._order = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def start(self) -> Flood:
        """
        Open every connection (blocking), then run in the background.
        """
        now = time.monotonic()
        for source in self.sources:
            for _ in range(self.per_address):
                self._open(source, now + random.uniform(0, self.period))
        self._thread.start()
        return self

    @property
    def open(self) -> int:
        """How many connections are open now."""
        return len(self._conns)

    def _open(self, source: str, due: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(2.0)
        try:
            sock.bind((source, 0))
            sock.connect(self.address)
            sock.sendall(self._query)
        except OSError:
            sock.close()
            self.stats.failed += 1
            if self.reconnect is not None:
                self._pending.append((time.monotonic() + max(self.reconnect, 0.1), source))
            return
        sock.setblocking(False)
        conn = _Conn(sock, source)
        self._conns[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)
        heapq.heappush(self._due, (due, next(self._order), conn))
        self.stats.opened += 1

    def _lost(self, conn: _Conn) -> None:
        self._selector.unregister(conn.sock)
        del self._conns[conn.sock.fileno()]
        conn.sock.close()
        self.stats.closed += 1
        self.stats.closed_from.add(conn.source)
        if self.reconnect is not None and not self._stop.is_set():
            self._pending.append((time.monotonic() + self.reconnect, conn.source))

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost(conn)
            return
        buffer = conn.buffer + data
        while len(buffer) >= 2:
            length = int.from_bytes(buffer[:2], "big")
            if len(buffer) < 2 + length:
                break
            buffer = buffer[2 + length :]
            self.stats.replies += 1
        conn.buffer = buffer

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                _, _, conn = heapq.heappop(self._due)
                if self._conns.get(conn.sock.fileno()) is not conn:
                    continue
                heapq.heappush(self._due, (now + self.period, next(self._order), conn))
                try:
                    conn.sock.send(self._query)
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        self._lost(conn)
            if self._pending:
                due, self._pending = self._pending, []
                for when, source in due:
                    if when <= now:
                        self._open(source, now + self.period)
                    else:
                        self._pending.append((when, source))
            for key, _ in self._selector.select(timeout=0.02):
                conn = key.data
                if self._conns.get(conn.sock.fileno()) is conn:
                    self._read(conn)

    def stop(self) -> None:
        """Stop and close every connection."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for conn in list(self._conns.values()):
            conn.sock.close()
        self._conns.clear()
        self._selector.close()
