# -*- test-case-name: tests.transport.test_limits -*-
"""
The default timeouts of stream connections and the caps on how many are
open at once, shared by every stream listener (TCP and TLS alike), and
what the server does as its table fills (issue 19 item 3, after Unbound's
C{setup_tcp_handler} and RFC 7766 6.2.3 / RFC 7828 3.3.2):

 - from half the table on (L{Pressure.SHORT}), every connection's idle
   timeout is a tenth of the configured one, never under
   L{SHORT_IDLE_FLOOR}, and keepalive advertises that; connections
   already open have their idle clocks cut down to it;
 - from nine tenths on (L{Pressure.BUSY}), keepalive advertises 0 ("close
   soon") and a connection told so has L{KEEPALIVE_ZERO_GRACE} to close
   before the server closes it;
 - with the table full, a new client is let in by closing the connection
   that has been idle longest among those told keepalive 0, else among
   the others; only when every connection owes an answer is it refused;
 - a client address has at most C{per_client} connections, and its prefix
   (/24 for IPv4, /56 for IPv6 by default) at most C{per_prefix}: those
   caps refuse, they close nothing.

The levels come down a tenth of the table below where they went up, so
that a table hovering at a threshold does not cut every clock at each
new connection.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dnstls.transport.connection import StreamConnection

#: RFC 7766 6.2.3 asks for an idle timeout "on the order of seconds"; Knot
#: DNS and RFC-draft authoritative advice use 10.
DEFAULT_IDLE_TIMEOUT = 10.0
#: DNS over TLS keeps idle sessions longer (RFC 7858 3.4; Unbound uses 30).
DEFAULT_TLS_IDLE_TIMEOUT = 30.0
#: A TLS client must finish its handshake within this many seconds.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Connections one client address may hold at once.
DEFAULT_MAX_PER_CLIENT = 32
#: Connections one client prefix may hold, as a multiple of the per-address
#: cap: a few busy hosts of one network (a NAT pool, an office) each at
#: their cap, but not a whole /24 of them.
PREFIX_SHARE = 4
#: The prefix lengths a client's network is counted by: a /24 is the
#: smallest IPv4 block routed between networks; a /56 is what RIPE-690
#: advises giving a home or small office, so one site holds many /64s.
DEFAULT_PREFIX_V4 = 24
DEFAULT_PREFIX_V6 = 56
#: From this share of the table on, idle timeouts are short.
SHORT_SHARE = 0.5
#: From this share of the table on, keepalive tells clients 0.
BUSY_SHARE = 0.9
#: A level ends this share of the table below where it began.
HYSTERESIS = 0.1
#: Under pressure the idle timeout is the configured one divided by this...
SHORT_IDLE_DIVISOR = 10
#: ... but never shorter than this many seconds (nor longer than configured).
SHORT_IDLE_FLOOR = 1.0
#: A connection told keepalive 0 is closed after this many idle seconds.
KEEPALIVE_ZERO_GRACE = 0.5
#: Candidates looked at, oldest first, for one to close when full.
_EVICTION_SCAN = 64


class Pressure(IntEnum):
    """
    How full the table is.
    """

    NORMAL = 0
    SHORT = 1
    BUSY = 2


def prefix_key(host: str, v4: int = DEFAULT_PREFIX_V4, v6: int = DEFAULT_PREFIX_V6) -> str:
    """
    The network C{host} is counted in: its C{v4}- or C{v6}-bit prefix (an
    IPv4-mapped IPv6 address as IPv4), e.g. C{192.0.2.0/24}; a host that
    is not an address is its own key.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    bits = v4 if address.version == 4 else v6
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


class ConnectionLimits:
    """
    The caps on open connections, shared by every stream listener (TCP and
    TLS alike): a total, a share per client address and per client prefix;
    and the pressure the total puts on idle timeouts and keepalive.

    @ivar connections: the open connections the table counts (one closed
        to make room leaves it at once).
    @ivar pressure: how full the table is.
    @ivar evicted: how many connections were closed to make room.
    """

    def __init__(
        self,
        total: int = 1000,
        per_client: int = DEFAULT_MAX_PER_CLIENT,
        per_prefix: int | None = None,
        prefix_v4: int = DEFAULT_PREFIX_V4,
        prefix_v6: int = DEFAULT_PREFIX_V6,
    ) -> None:
        """
        @param per_prefix: the cap per client prefix; by default
            L{PREFIX_SHARE} times C{per_client}.
        """
        self.total = total
        self.per_client = per_client
        self.per_prefix = per_prefix if per_prefix is not None else PREFIX_SHARE * per_client
        self.prefix_v4 = prefix_v4
        self.prefix_v6 = prefix_v6
        self.connections: set[StreamConnection] = set()
        self.pressure = Pressure.NORMAL
        self.evicted = 0
        self._by_client: Counter[str] = Counter()
        self._by_prefix: Counter[str] = Counter()
        self._prefixes: dict[StreamConnection, str] = {}
        # least recently active first: those told keepalive 0, the others
        self._told_zero: OrderedDict[StreamConnection, None] = OrderedDict()
        self._others: OrderedDict[StreamConnection, None] = OrderedDict()
        self._rise = (total * SHORT_SHARE, total * BUSY_SHARE)

    def refusal(self, host: str) -> str | None:
        """
        Why a new connection from C{host} must be refused, or C{None}; with
        the table full, the connection idle longest is closed to make room
        if there is one.
        """
        if self._by_client[host] >= self.per_client:
            return f"{self._by_client[host]} connections from {host}"
        prefix = prefix_key(host, self.prefix_v4, self.prefix_v6)
        if self._by_prefix[prefix] >= self.per_prefix:
            return f"{self._by_prefix[prefix]} connections from {prefix}"
        if len(self.connections) >= self.total and not self._make_room():
            return f"{len(self.connections)} connections open, none idle"
        return None

    def _make_room(self) -> bool:
        """
        Close the connection idle longest, those told keepalive 0 first;
        whether one was found.
        """
        for order in (self._told_zero, self._others):
            for scanned, connection in enumerate(order):
                if scanned >= _EVICTION_SCAN:
                    break
                if connection.evictable:
                    self._forget(connection)
                    self.evicted += 1
                    connection.evict()
                    return True
        return False

    def opened(self, protocol: StreamConnection) -> None:
        """
        Count a connection that has started.
        """
        self.connections.add(protocol)
        self._by_client[protocol.peer[0]] += 1
        prefix = prefix_key(protocol.peer[0], self.prefix_v4, self.prefix_v6)
        self._prefixes[protocol] = prefix
        self._by_prefix[prefix] += 1
        self._others[protocol] = None
        self._update()

    def closed(self, protocol: StreamConnection) -> None:
        """
        Forget a connection that has ended.
        """
        if protocol in self.connections:
            self._forget(protocol)

    def _forget(self, protocol: StreamConnection) -> None:
        self.connections.discard(protocol)
        host = protocol.peer[0]
        self._by_client[host] -= 1
        if self._by_client[host] <= 0:
            del self._by_client[host]
        prefix = self._prefixes.pop(protocol)
        self._by_prefix[prefix] -= 1
        if self._by_prefix[prefix] <= 0:
            del self._by_prefix[prefix]
        self._told_zero.pop(protocol, None)
        self._others.pop(protocol, None)
        self._update()

    def _update(self) -> None:
        """
        Move the pressure up or down with the count; going up, cut the idle
        clocks of the connections open.
        """
        count = len(self.connections)
        level = self.pressure
        while level < Pressure.BUSY and count >= self._rise[level]:
            level = Pressure(level + 1)
        while level > Pressure.NORMAL and count < self._rise[level - 1] - self.total * HYSTERESIS:
            level = Pressure(level - 1)
        rose = level > self.pressure
        self.pressure = level
        if rose:
            for connection in list(self.connections):
                connection.pressed()

    def active(self, protocol: StreamConnection) -> None:
        """
        C{protocol} has just been active: the last to be closed for room.
        """
        order = self._told_zero if protocol in self._told_zero else self._others
        if protocol in order:
            order.move_to_end(protocol)

    def told(self, protocol: StreamConnection, keepalive: int) -> None:
        """
        C{protocol} is being told keepalive C{keepalive} (in units of 100
        ms): told 0, it is among the first closed for room until it is told
        otherwise.
        """
        if protocol not in self.connections:
            return
        if keepalive == 0:
            if protocol not in self._told_zero:
                self._others.pop(protocol, None)
                self._told_zero[protocol] = None
        elif protocol in self._told_zero:
            del self._told_zero[protocol]
            self._others[protocol] = None

    def idle_timeout(self, configured: float, told_zero: bool = False) -> float:
        """
        The idle timeout a connection configured with C{configured} seconds
        has now: shorter under pressure, and L{KEEPALIVE_ZERO_GRACE} once it
        has been told keepalive 0 while the table is busy.
        """
        if self.pressure is Pressure.NORMAL:
            return configured
        if told_zero and self.pressure is Pressure.BUSY:
            return min(configured, KEEPALIVE_ZERO_GRACE)
        return min(configured, max(SHORT_IDLE_FLOOR, configured / SHORT_IDLE_DIVISOR))

    def is_told_zero(self, protocol: object) -> bool:
        """
        Whether C{protocol} was last told keepalive 0.
        """
        return protocol in self._told_zero

    @property
    def busy(self) -> bool:
        """
        Whether the server is near its cap, so clients should close idle
        connections (RFC 7828 3.3.2: keepalive 0).
        """
        return self.pressure is Pressure.BUSY
