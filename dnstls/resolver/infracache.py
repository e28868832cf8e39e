# -*- test-case-name: tests.resolver.test_infracache -*-
"""
The iterative resolver's infrastructure cache: the NS sets and addresses
it has learnt (delegations and glue), and what it knows of each server
address (smoothed round-trip time, whether it takes EDNS, whether it is
lame for a zone, whether it is down: silent L{DOWN_AFTER} times in a row,
then not asked for L{DOWN_FOR} seconds but by one probe at a time).

Records are ranked as RFC 2181 section 5.4.1 says (and a TTL with its most
significant bit set counts as 0, as its section 8 says): an authoritative answer
outranks a non-authoritative one, which outranks the authority section of a
reply, which outranks glue (the additional section).  A record of lower
rank never replaces one of higher rank that has not expired.  Every entry
counts down on the injected clock, and the cache keeps at most C{size}
entries of each kind, dropping the least recently used.  Only A, AAAA and
NS RRsets are kept here, and the names of name servers found to have no
address (NXDOMAIN or NODATA, for the negative TTL of RFC 2308, at most
L{MAX_NEGATIVE_TTL}); final answers are cached by L{dnstls.resolver.cache.Cache}.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

import dns.name
import dns.rrset
from twisted.internet.interfaces import IReactorTime

#: Entries of each kind kept at most.
DEFAULT_SIZE = 10000
#: The longest a record is kept, in seconds.
DEFAULT_MAX_TTL = 86400
#: The longest a name server's name is remembered to have no address
#: (Unbound's cache-max-negative-ttl).
MAX_NEGATIVE_TTL = 3600
#: How long what we learnt of a server (RTT, EDNS, lameness) is kept (Unbound's infra-host-ttl).
SERVER_TTL = 900.0
#: The RTT assumed for a server never asked (Unbound's UNKNOWN_SERVER_NICENESS).
UNKNOWN_RTT = 0.376
#: The most a timed-out server's RTT is backed off to.
MAX_RTT = 120.0
#: Timeouts in a row after which a server is taken for down...
DOWN_AFTER = 2
#: ...and not asked for this many seconds, after which one query probes it
#: (Unbound's probe of a server at its top timeout, every 12 s at most).
DOWN_FOR = 30.0


class Rank(enum.IntEnum):
    """
    How trustworthy a record is (RFC 2181 5.4.1), lowest first.
    """

    #: the additional section of a reply: glue
    ADDITIONAL = 1
    #: the authority section of a referral or an answer
    AUTHORITY = 2
    #: the answer section of a non-authoritative reply
    ANSWER = 3
    #: the answer section of an authoritative reply (AA=1)
    AUTHORITATIVE = 4


@dataclass
class _Record:
    rrset: dns.rrset.RRset
    rank: Rank
    stored: float
    expires: float


@dataclass
class _Server:
    rtt: float | None
    edns: bool
    expires: float
    #: timeouts since it last answered
    timeouts: int = 0
    #: not asked before this time (on the clock), once taken for down
    down_until: float = float("-inf")


def _ttl(ttl: int) -> int:
    """
    A TTL as received, except that one with the most significant bit set
    counts as 0 (RFC 2181 8).
    """
    return 0 if ttl >= 2**31 else int(ttl)


_K = TypeVar("_K")
_V = TypeVar("_V")


def _bounded(entries: OrderedDict[_K, _V], key: _K, value: _V, size: int) -> None:
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > size:
        entries.popitem(last=False)


class InfraCache:
    """
    NS sets, addresses and server state, by the clock's time.

    @ivar clock: what tells the time (C{IReactorTime.seconds}).
    """

    def __init__(
        self, clock: IReactorTime, size: int = DEFAULT_SIZE, max_ttl: int = DEFAULT_MAX_TTL
    ) -> None:
        if size < 1 or max_ttl < 0:
            raise ValueError("the cache needs a size of at least 1 and a max TTL of 0 or more")
        self.clock = clock
        self.size = size
        self.max_ttl = max_ttl
        self._records: OrderedDict[tuple[dns.name.Name, int], _Record] = OrderedDict()
        self._servers: OrderedDict[str, _Server] = OrderedDict()
        self._lame: OrderedDict[tuple[dns.name.Name, str], float] = OrderedDict()
        self._missing: OrderedDict[tuple[dns.name.Name, int], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def put(self, rrset: dns.rrset.RRset, rank: Rank) -> bool:
        """
        Keep C{rrset} for its TTL (at most C{max_ttl}) unless a record of
        higher rank for the same name and type is still alive.

        @return: whether it was kept.
        """
        key = (rrset.name.canonicalize(), int(rrset.rdtype))
        now = self.clock.seconds()
        current = self._records.get(key)
        if current is not None and now < current.expires and current.rank > rank:
            return False
        ttl = min(_ttl(rrset.ttl), self.max_ttl)
        if ttl <= 0:
            return False
        _bounded(self._records, key, _Record(rrset.copy(), rank, now, now + ttl), self.size)
        self._missing.pop(key, None)
        return True

    def put_missing(self, name: dns.name.Name, rdtype: int, ttl: int) -> None:
        """
        C{name} has no C{rdtype} records (an NXDOMAIN or NODATA answer with
        the negative TTL C{ttl}): remember it for that long, at most
        L{MAX_NEGATIVE_TTL} and C{max_ttl}.
        """
        ttl = min(_ttl(ttl), MAX_NEGATIVE_TTL, self.max_ttl)
        if ttl > 0:
            key = (name.canonicalize(), int(rdtype))
            _bounded(self._missing, key, self.clock.seconds() + ttl, self.size)

    def missing(self, name: dns.name.Name, rdtype: int) -> bool:
        """
        Whether C{name} was lately found to have no C{rdtype} records.
        """
        key = (name.canonicalize(), int(rdtype))
        expires = self._missing.get(key)
        if expires is None:
            return False
        if self.clock.seconds() >= expires:
            del self._missing[key]
            return False
        return True

    def get(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        """
        The live RRset of C{name} and C{rdtype}, with the TTL that remains.
        """
        key = (name.canonicalize(), int(rdtype))
        record = self._records.get(key)
        if record is None:
            return None
        now = self.clock.seconds()
        if now >= record.expires:
            del self._records[key]
            return None
        self._records.move_to_end(key)
        found: dns.rrset.RRset = record.rrset.copy()
        found.ttl = max(0, int(record.expires - now))
        return found

    def rank(self, name: dns.name.Name, rdtype: int) -> Rank | None:
        """
        The rank of the live RRset of C{name} and C{rdtype}, if any.
        """
        record = self._records.get((name.canonicalize(), int(rdtype)))
        if record is None or self.clock.seconds() >= record.expires:
            return None
        return record.rank

    def _server(self, address: str) -> _Server | None:
        server = self._servers.get(address)
        if server is None:
            return None
        if self.clock.seconds() >= server.expires:
            del self._servers[address]
            return None
        return server

    def _update(self, address: str, rtt: float | None = None, edns: bool | None = None) -> None:
        server = self._server(address) or _Server(None, True, 0.0)
        if rtt is not None:
            server.rtt = rtt
        if edns is not None:
            server.edns = edns
        server.expires = self.clock.seconds() + SERVER_TTL
        _bounded(self._servers, address, server, self.size)

    def rtt(self, address: str) -> float:
        """
        The smoothed round-trip time of the server at C{address}, in
        seconds; L{UNKNOWN_RTT} for a server not asked lately.
        """
        server = self._server(address)
        return UNKNOWN_RTT if server is None or server.rtt is None else server.rtt

    def answered(self, address: str, seconds: float) -> None:
        """
        The server at C{address} answered in C{seconds}: smooth it into its
        RTT (7/10 of the old value, 3/10 of the new).
        """
        server = self._server(address)
        old = None if server is None else server.rtt
        self._update(address, rtt=seconds if old is None else 0.7 * old + 0.3 * seconds)
        self._servers[address].timeouts = 0

    def timed_out(self, address: str, timeout: float) -> None:
        """
        The server at C{address} did not answer within C{timeout}: double
        its RTT, at least to C{timeout}.
        """
        server = self._server(address)
        old = UNKNOWN_RTT if server is None or server.rtt is None else server.rtt
        self._update(address, rtt=min(MAX_RTT, max(2 * old, timeout)))
        server = self._servers[address]
        server.timeouts += 1
        if server.timeouts >= DOWN_AFTER:
            server.down_until = self.clock.seconds() + DOWN_FOR

    def is_down(self, address: str) -> bool:
        """
        Whether the server at C{address} timed out L{DOWN_AFTER} times in a
        row, the last less than L{DOWN_FOR} seconds ago: not to be asked.
        Once that time has passed one query may probe it; the time starts
        again as that query is sent, so that other questions wait for it.
        """
        server = self._server(address)
        return (
            server is not None
            and server.timeouts >= DOWN_AFTER
            and self.clock.seconds() < server.down_until
        )

    def probing(self, address: str) -> None:
        """
        A query is being sent to the server at C{address}: if it was down,
        no other is sent to it until this one is answered or times out.
        """
        server = self._server(address)
        if server is not None and server.timeouts >= DOWN_AFTER:
            server.down_until = self.clock.seconds() + DOWN_FOR

    def edns(self, address: str) -> bool:
        """
        Whether to send EDNS to the server at C{address}: yes, unless it
        lately answered FORMERR or NOTIMP to EDNS and then answered without.
        """
        server = self._server(address)
        return server is None or server.edns

    def no_edns(self, address: str) -> None:
        """
        The server at C{address} does not take EDNS.
        """
        self._update(address, edns=False)

    def is_lame(self, zone: dns.name.Name, address: str) -> bool:
        """
        Whether the server at C{address} was lately lame for C{zone}.
        """
        key = (zone.canonicalize(), address)
        expires = self._lame.get(key)
        if expires is None:
            return False
        if self.clock.seconds() >= expires:
            del self._lame[key]
            return False
        return True

    def lame(self, zone: dns.name.Name, address: str) -> None:
        """
        The server at C{address} is not authoritative for C{zone} though it
        was named as such.
        """
        key = (zone.canonicalize(), address)
        _bounded(self._lame, key, self.clock.seconds() + SERVER_TTL, self.size)
