# -*- test-case-name: tests.transport.test_limits -*-
"""
A stream connection as the connection table sees it under pressure
(L{dnstls.transport.limits}): its idle timeout shortened, brought forward
when the table fills, and whether it may be closed to make room.  A part
of L{dnstls.transport.connection.StreamConnection}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

if TYPE_CHECKING:
    from dnstls.transport.stream import DNSStreamFactory


class Eviction:
    """
    The part of a stream connection that the table's pressure acts on.
    """

    log: Logger
    factory: DNSStreamFactory
    peer: tuple[str, int]
    idle_timeout: float
    closed: bool
    _closing: bool
    _owed: int
    _idle: IDelayedCall | None

    if TYPE_CHECKING:

        def _close(self) -> None: ...

        def _force_close(self) -> None: ...

    def _timeout_now(self) -> float:
        """
        This connection's idle timeout now: shorter while the table is
        under pressure (L{dnstls.transport.limits}).
        """
        limits = self.factory.limits
        return limits.idle_timeout(self.idle_timeout, limits.is_told_zero(self))

    @property
    def evictable(self) -> bool:
        """
        Whether the connection may be closed to make room: it owes no
        answer, or it is closing already.
        """
        return not self.closed and (self._owed == 0 or self._closing)

    def evict(self) -> None:
        """
        Close to make room for a new connection: gracefully, or at once if
        it was closing already.
        """
        self.log.debug("closing stream from {peer} to make room", peer=self.peer)
        if self._closing:
            self._force_close()
        else:
            self._close()

    def pressed(self) -> None:
        """
        The table is fuller: an idle clock due later than this connection's
        idle timeout now is brought forward to it.
        """
        idle = self._idle
        if idle is not None and idle.active():
            timeout = self._timeout_now()
            if idle.getTime() - self.factory.clock.seconds() > timeout:
                idle.reset(timeout)
