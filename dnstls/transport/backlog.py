# -*- test-case-name: tests.transport.test_backlog -*-
"""
How many octets of replies stream connections may hold unsent, that their
clients have not read: a bound for each connection, and a total across
them all, shared by every stream listener (TCP and TLS alike).

A connection over its own bound stops reading (Twisted pauses it as a
producer once its transport's buffer passes the bound,
L{dnstls.transport.connection}); once the total is passed, the
connections holding more than an even share of it stop reading too.  Each
reads again once its client has taken everything queued for it.  So a
client that pipelines queries and never reads the replies costs at most
its bound, and its queries wait in the kernel, unread and not lost.
Unbound caps the replies queued on all its streams at C{stream-wait-size}
(4 MB by default); Knot DNS closes such a client.
"""

from __future__ import annotations

from typing import Protocol

#: The unsent replies one connection may hold before it stops reading:
#: some 130 answers of 2 kB, or 4,000 of 60 octets.
DEFAULT_MAX_UNSENT = 256 * 1024
#: The unsent replies all connections together may hold before the
#: biggest holders stop reading.
DEFAULT_MAX_UNSENT_TOTAL = 64 * 1024 * 1024


class Holder(Protocol):
    """
    A connection holding unsent replies.
    """

    def unsent(self) -> int:
        """
        The octets of replies written and not yet taken by the network.
        """

    def hold(self) -> None:
        """
        Stop reading until everything queued is taken by the network.
        """


class Backlog:
    """
    The unsent replies of every stream connection, and their bounds.

    @ivar per_connection: the most octets one connection may hold unsent
        before it stops reading.
    @ivar total: the most octets all connections may hold unsent before
        the connections holding more than an even share stop reading.
    """

    def __init__(
        self, per_connection: int = DEFAULT_MAX_UNSENT, total: int = DEFAULT_MAX_UNSENT_TOTAL
    ) -> None:
        self.per_connection = per_connection
        self.total = total
        #: what each connection held unsent when last told, if anything
        self._held: dict[Holder, int] = {}
        self._sum = 0

    @property
    def held(self) -> int:
        """
        The octets unsent, as last told (a connection that has since sent
        part of its replies may hold less).
        """
        return self._sum

    def wrote(self, holder: Holder, unsent: int) -> None:
        """
        C{holder} just wrote and holds C{unsent} octets; past the total,
        the biggest holders stop reading.
        """
        self._sum += unsent - self._held.get(holder, 0)
        self._held[holder] = unsent
        if self._sum > self.total:
            self._relieve()

    def drained(self, holder: Holder) -> None:
        """
        C{holder} holds nothing unsent any more (or is gone).
        """
        self._sum -= self._held.pop(holder, 0)

    def _relieve(self) -> None:
        """
        Count again what every holder holds now; if that is still past the
        total, hold every connection holding more than an even share.
        """
        held = {holder: holder.unsent() for holder in self._held}
        self._held = {holder: unsent for holder, unsent in held.items() if unsent}
        self._sum = sum(self._held.values())
        if self._sum <= self.total:
            return
        share = self.total // len(self._held)
        for holder, unsent in self._held.items():
            if unsent > share:
                holder.hold()
