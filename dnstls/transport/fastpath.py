# -*- test-case-name: tests.transport.test_fastpath -*-
"""
The fast answer path: a cache of rendered replies in front of the
L{Handler}, so that a question asked before costs a dictionary look-up and
two slices instead of a dnspython parse, a look-up and a render.

An entry's key is everything that can change the reply: the query's bytes
after its ID (the flags, the question exactly as the client wrote it, case
included, and the OPT record with its payload size, DO bit and options),
and the I{shape} of its context: the transport, whether the client may
recurse (RA), on a stream the keepalive value it would be told, over TLS
whether padding is allowed, and whether the connection was upgraded.  Its
value is the reply after the ID; a hit is C{wire[:2] + value}, byte for
byte what the handler would have said (dnspython renders the records of an
RRset in a random order: a kept reply keeps the order it was first rendered
in, as Knot DNS keeps one order).

Only replies the handler gave at once, as bytes, are kept: a recursive
answer comes as a Deferred and goes through the recursion cache, whose TTLs
count down, never through this one.  Nor is any reply to a query with RD=0
from a client that may recurse: for a name outside our zones the handler
answers it at once from the recursion cache (or REFUSED while that holds
nothing), which changes with time.  The query that grants a STARTTLS
upgrade (TO=1) is never kept.  A server with hooks (the test kit's fault
injector, see L{dnstls.transport.hooks}) keeps this cache: the hooks sit in
front of it, so that they see every query.

The entries were made from one zone store; when the handler's store is
swapped (a reload), the cache is emptied before the next look-up.  The
cache is bounded in entries and in octets; when either bound is reached the
oldest entry goes first (insertion order: a hit costs no bookkeeping), so a
flood of unique queries cycles through it without growing it.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet.defer import Deferred

from dnstls.context import QueryContext, Transport
from dnstls.handler import Handler
from dnstls.transport.templates import Templates

#: Entries kept at most.
DEFAULT_MAX_ENTRIES = 20_000
#: Octets of keys and replies kept at most (plus a per-entry allowance).
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: What one entry costs beyond its query and reply octets: the key tuple,
#: two bytes objects and the dictionary slot, roughly.
ENTRY_OVERHEAD = 200
#: RD in the first flags octet.
_RD = 0x01
#: Client addresses whose recursion right is remembered at most.
_MAX_HOSTS = 4096

#: What, besides the query bytes, an answer depends on: transport, whether
#: the client may recurse, keepalive (streams), padding (TLS), upgraded.
#: The transport is its value (a str): an enum hashes in Python code.
Shape = tuple[str, bool, "int | None", bool, bool]


class FastAnswerer:
    """
    An L{Answerer} that remembers the handler's rendered replies.

    @ivar handler: the handler answering what the cache does not hold.
    @ivar max_entries: the most entries kept.
    @ivar max_bytes: the most octets kept (see L{ENTRY_OVERHEAD}).
    @ivar hits: look-ups answered from the cache.
    @ivar misses: look-ups answered by neither the cache nor a template.
    @ivar templates: the frames new questions are answered from.
    """

    def __init__(
        self,
        handler: Handler,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.handler = handler
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.templates = Templates()
        self._entries: OrderedDict[tuple[Shape, bytes], bytes] = OrderedDict()
        self._bytes = 0
        self._zones = handler.zones
        self._recurse: dict[str, bool] = {}
        self._udp: dict[str, Shape] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """
        The octets the entries are counted as (see L{ENTRY_OVERHEAD}).
        """
        return self._bytes

    def clear(self) -> None:
        """
        Forget every entry, and take the handler's zones as current.
        """
        self._entries.clear()
        self._bytes = 0
        self._zones = self.handler.zones
        self.templates.clear()

    def may_recurse(self, host: str) -> bool:
        """
        Whether a client at C{host} gets recursion (and RA), as the handler
        decides it, remembered per address.
        """
        known = self._recurse.get(host)
        if known is None:
            if len(self._recurse) >= _MAX_HOSTS:
                self._recurse.clear()
                self._udp.clear()
            known = self.handler.may_recurse(QueryContext(Transport.UDP, (host, 0)))
            self._recurse[host] = known
        return known

    def udp_shape(self, host: str) -> Shape:
        """
        The shape of a UDP query from C{host}.
        """
        shape = self._udp.get(host)
        if shape is None:
            shape = ("udp", self.may_recurse(host), None, False, False)
            self._udp[host] = shape
        return shape

    def stream_shape(
        self, transport: Transport, host: str, keepalive: int | None, padding: bool, upgraded: bool
    ) -> Shape:
        """
        The shape of a query on a stream.
        """
        return (
            transport.value,
            self.may_recurse(host),
            keepalive,
            padding and transport is Transport.TLS,
            upgraded,
        )

    def shape(self, context: QueryContext) -> Shape | None:
        """
        The shape of C{context}, or C{None} when its reply must never be
        kept (the query that grants an upgrade).
        """
        if context.upgrade:
            return None
        if context.transport is Transport.UDP:
            return self.udp_shape(context.peer[0])
        return self.stream_shape(
            context.transport, context.peer[0], context.keepalive, context.padding, context.upgraded
        )

    def cached(self, wire: bytes, shape: Shape) -> bytes | None:
        """
        The kept reply to C{wire} in C{shape}, with C{wire}'s ID, or
        C{None}.  A question not asked before gets a reply assembled from
        a template (see L{dnstls.transport.templates}) when one fits.
        """
        if self.handler.zones is not self._zones:
            self.clear()
        value = self._entries.get((shape, wire[2:]))
        if value is None:
            assembled = self.templates.reply(wire, shape, self._zones)
            if assembled is None:
                self.misses += 1
            return assembled
        self.hits += 1
        return wire[:2] + value

    def remember(self, wire: bytes, shape: Shape, reply: bytes) -> None:
        """
        Keep C{reply} as the answer to C{wire} in C{shape}, evicting the
        oldest entries to stay within the bounds.
        """
        if self.handler.zones is not self._zones:
            self.clear()
        key = (shape, wire[2:])
        entries = self._entries
        if key in entries:
            return
        size = len(wire) + len(reply) + ENTRY_OVERHEAD
        if size > self.max_bytes or self.max_entries < 1:
            return
        while entries and (len(entries) >= self.max_entries or self._bytes + size > self.max_bytes):
            (_, old_query), old_reply = entries.popitem(last=False)
            self._bytes -= len(old_query) + 2 + len(old_reply) + 2 + ENTRY_OVERHEAD
        entries[key] = reply[2:]
        self._bytes += size

    def handle(self, wire: bytes, context: QueryContext) -> bytes | None | Deferred[bytes | None]:
        """
        The kept reply to C{wire}, or the handler's, kept for next time when
        it came at once.
        """
        shape = self.shape(context)
        if shape is None:
            return self.handler.handle(wire, context)
        hit = self.cached(wire, shape)
        if hit is not None:
            return hit
        return self.missed(wire, context, shape)

    def missed(
        self, wire: bytes, context: QueryContext, shape: Shape
    ) -> bytes | None | Deferred[bytes | None]:
        """
        The handler's reply to C{wire}, which the cache was just asked for
        in C{shape} and did not hold, kept for next time when it came at
        once.
        """
        zones = self.handler.zones
        reply = self.handler.handle(wire, context)
        if (
            isinstance(reply, bytes)
            and self.handler.zones is zones
            and len(wire) > 2
            and reply[:2] == wire[:2]
            and (wire[2] & _RD or not shape[1])
        ):
            self.remember(wire, shape, reply)
            self.templates.learn(wire, shape, zones, reply)
        return reply
