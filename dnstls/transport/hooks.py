# -*- test-case-name: tests.transport.test_upgrade_protocol -*-
"""
The points where something outside the server may change how it behaves:
the test kit's fault injector (L{dnstls.testing.faults.FaultInjector}) is
the one user.  The server owns this interface and never imports the test
kit.

A listener is given a L{ServerHooks} or C{None}; with C{None} (every
production server) no hook is ever called, and the protocols take their
fast paths: the reply cache asked directly, replies ready at once written
together.  With hooks, every query goes through L{ServerHooks.query} (in
front of the reply cache, which stays in place) and every reply is written
by itself, so that the connection-level knobs see each one.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from dnstls.context import Answerer, QueryContext
from dnstls.transport.tlsinfo import TLSInfo, negotiated


class ServerHooks:
    """
    Hooks that change nothing: each method answers as the server does
    without hooks.  Override the ones needed.
    """

    def query(
        self, wire: bytes, context: QueryContext, answerer: Answerer
    ) -> bytes | None | Deferred[bytes | None]:
        """
        The reply to one query, now or later, or C{None} for none; by
        default C{answerer}'s.
        """
        return answerer.handle(wire, context)

    def handshake_done(self, transport: object) -> TLSInfo | None:
        """
        A TLS handshake on C{transport} is done: what the session
        negotiated, for the L{QueryContext} of its queries.
        """
        return negotiated(transport)

    def idle_timeout(self) -> float | None:
        """
        The idle timeout of every stream connection, in place of the
        listener's (and after an upgrade, of the TLS one), or C{None}.
        """
        return None

    def keepalive_zero(self) -> bool:
        """
        Whether to advertise edns-tcp-keepalive 0 whatever the load.
        """
        return False

    def padding(self) -> bool:
        """
        Whether replies over TLS may be padded.
        """
        return True

    def reverse(self) -> bool:
        """
        Whether to answer the queries of one read of a stream in reverse
        order.
        """
        return False

    def decline_upgrade(self) -> bool:
        """
        Whether to answer the STARTTLS probe with TO=0 whatever the policy.
        """
        return False

    def abort_handshake(self) -> bool:
        """
        Whether to grant the upgrade, then close instead of starting TLS.
        """
        return False

    def close_after(self) -> int | None:
        """
        Close a stream connection after this many answers, or never.
        """
        return None
