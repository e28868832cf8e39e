# -*- test-case-name: tests.transport.test_starttls,tests.transport.test_upgrade_protocol -*-
"""
The TO-bit upgrade of one TCP/53 connection, as a state machine: which
first query upgrades is L{dnstls.transport.upgrade}'s to say (and the bytes
on the wire are documented there); what the connection does about it is
here, in one table, L{TRANSITIONS} (each state's events, and where each
leads)::

    FIRST_QUERY --DECLINE--> CLEAR             answered in clear; TO ignored from then on
    FIRST_QUERY --GRANT--> GRANTING            its reply (TO=1) owed, in clear, unpadded
    GRANTING --CLEAR_BYTES--> GRANTING         discarded, never answered (STARTTLS injection)
    GRANTING --GRANT_SENT--> HANDSHAKING       TLS put under it; the handshake clock runs
    GRANTING --GRANT_FAILED--> CLOSING         no reply to grant with
    HANDSHAKING --CLEAR_BYTES--> HANDSHAKING   discarded (the TLS layer has the bytes)
    HANDSHAKING --HANDSHAKE_DONE--> TLS        as a connection on the TLS port
    HANDSHAKING --HANDSHAKE_FAILED--> CLOSING  failed, or timed out
    any --CLOSE--> CLOSING                     the connection closes, or is lost
    CLOSING --any--> CLOSING                   nothing more is answered

A pair the table does not hold is a bug: it is logged and the connection
closed, never raised into the reactor.

The TLS layer put under an upgraded connection is the TLS port's,
L{DoTServerProtocol}, built by the same L{TLSServerFactory} with the same
L{TLSPolicy}: once the granting reply is written, the layer becomes the
TCP connection's protocol (what reads are handed to, and told of the
connection's end) and the DNS protocol's transport (what replies are
written to), as on port 853 where the factory builds it around the DNS
protocol from the start.  Twisted's C{startTLS} instead puts its own
buffering layer there, behind the TCP transport's C{write}.  So an
upgraded session gets what a port-853 session gets: every record of a read
handed up at once, what it encrypts written at once, and TLS 1.3 session
tickets in the segment of the first answer.  The connection becomes a TLS
one (L{Transport.TLS}: padding, the TLS idle timeout in keepalive, never a
direct send of clear text), flagged as upgraded for the query log.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnstls.context import Transport
from dnstls.transport.framing import FrameDecoder
from dnstls.transport.tls import DoTServerProtocol, TLSServerFactory
from dnstls.transport.upgrade import Upgrade, should_upgrade

if TYPE_CHECKING:
    from dnstls.transport.stream import DNSStreamProtocol


class State(enum.Enum):
    """
    Where a TCP/53 connection is in its upgrade.
    """

    #: waiting for its first query, which decides
    FIRST_QUERY = "first query"
    #: the reply granting the upgrade is owed or being written, in clear
    GRANTING = "granting"
    #: TLS started as the server; the handshake clock runs
    HANDSHAKING = "handshaking"
    #: the handshake is done: a connection as on the TLS port
    TLS = "tls"
    #: declined: a clear-text connection for good
    CLEAR = "clear"
    #: closing or closed: nothing more is answered
    CLOSING = "closing"


class Event(enum.Enum):
    """
    What happens to a TCP/53 connection that may be upgraded.
    """

    #: its first query does not upgrade it (or the hooks decline)
    DECLINE = "decline"
    #: its first query upgrades it
    GRANT = "grant"
    #: clear-text bytes after the first query
    CLEAR_BYTES = "clear bytes"
    #: the granting reply is written
    GRANT_SENT = "grant sent"
    #: there is no granting reply to write (the answerer failed or gave none)
    GRANT_FAILED = "grant failed"
    #: the TLS handshake is done
    HANDSHAKE_DONE = "handshake done"
    #: the TLS handshake failed or took too long
    HANDSHAKE_FAILED = "handshake failed"
    #: the connection closes or is lost
    CLOSE = "close"


_ = State
#: The upgrade of a TCP/53 connection: for each state, the events it
#: expects and the state each leads to.
TRANSITIONS: dict[State, dict[Event, State]] = {
    _.FIRST_QUERY: {Event.DECLINE: _.CLEAR, Event.GRANT: _.GRANTING, Event.CLOSE: _.CLOSING},
    _.GRANTING: {
        Event.CLEAR_BYTES: _.GRANTING,
        Event.GRANT_SENT: _.HANDSHAKING,
        Event.GRANT_FAILED: _.CLOSING,
        Event.CLOSE: _.CLOSING,
    },
    _.HANDSHAKING: {
        Event.CLEAR_BYTES: _.HANDSHAKING,
        Event.HANDSHAKE_DONE: _.TLS,
        Event.HANDSHAKE_FAILED: _.CLOSING,
        Event.CLOSE: _.CLOSING,
    },
    _.TLS: {Event.CLOSE: _.CLOSING},
    _.CLEAR: {Event.CLOSE: _.CLOSING},
    _.CLOSING: dict.fromkeys(Event, _.CLOSING),
}
del _


class StartTLS:
    """
    The upgrade of one TCP/53 connection, from its first query to TLS (or
    to staying clear).

    @ivar state: where the connection is, a L{State}.
    @ivar layer: the TLS layer under the connection, once started.
    """

    log = Logger()

    def __init__(
        self, connection: DNSStreamProtocol, upgrade: Upgrade, layers: TLSServerFactory
    ) -> None:
        """
        @param connection: the DNS protocol of the connection.
        @param upgrade: the listener's upgrade settings.
        @param layers: builds the TLS layer, with the upgrade's TLS policy.
        """
        self.connection = connection
        self.upgrade = upgrade
        self._layers = layers
        self.state = State.FIRST_QUERY
        #: whether a read goes through L{discards} first: until the
        #: connection is clear or TLS for good
        self.gated = True
        self.layer: DoTServerProtocol | None = None

    def fire(self, event: Event) -> State:
        """
        Move to the state C{event} leads to from the current one; an event
        the table does not expect here closes the connection.
        """
        after = TRANSITIONS[self.state].get(event)
        if after is None:
            self.log.error(
                "bug: {event} while {state} on the connection from {peer}",
                event=event.value, state=self.state.value, peer=self.connection.peer,
            )
            self.state, self.gated = State.CLOSING, True
            self.connection._close()
            return self.state
        self.state = after
        self.gated = after is not State.CLEAR and after is not State.TLS
        return after

    def idle_timeout(self) -> float:
        """
        The idle timeout of the connection once upgraded: the TLS one, or
        the one the hooks impose on every stream.
        """
        hooks = self.connection.factory.hooks
        override = hooks.idle_timeout() if hooks is not None else None
        return override or self.upgrade.idle_timeout

    def discards(self) -> bool:
        """
        Whether a read is discarded: any after the first query, until TLS
        (in clear, and never answered) or once closing.
        """
        if self.state is State.FIRST_QUERY:
            return False
        self.fire(Event.CLEAR_BYTES)
        return True

    def first_query(self, message: bytes) -> bool:
        """
        Decide on the first query: grant the upgrade (answer it with TO=1,
        then start TLS) or decline it (the caller answers it in clear).

        @return: whether it was granted; if so, nothing else the client sent
            in clear is answered.
        """
        hooks = self.connection.factory.hooks
        declined = hooks is not None and hooks.decline_upgrade()
        upgrade = self.upgrade
        if declined or not should_upgrade(upgrade.policy, message, upgrade.legacy_probe):
            self.fire(Event.DECLINE)
            return False
        self.fire(Event.GRANT)
        self._grant(message)
        return True

    def _grant(self, message: bytes) -> None:
        """
        Ask the answerer for the granting reply; bytes read until it is
        written are discarded.
        """
        connection = self.connection
        connection._decoder.clear()
        connection._track_message(0)
        context = connection._context(upgrade=True)
        try:
            reply = connection._handle(message, context)
        except Exception:
            self._grant_failed(Failure())
            return
        if isinstance(reply, Deferred):
            connection._owed += 1
            reply.addCallbacks(self._granted_later, self._grant_failed_later)
        else:
            self._granted(reply)

    def _granted_later(self, reply: bytes | None) -> None:
        self.connection._owed -= 1
        self._granted(reply)

    def _grant_failed_later(self, failure: Failure) -> None:
        self.connection._owed -= 1
        self._grant_failed(failure)

    def _grant_failed(self, failure: Failure) -> None:
        self.log.failure("answering the upgrade query from {peer}", failure, peer=self.connection.peer)
        self.fire(Event.GRANT_FAILED)
        self.connection._close()

    def _granted(self, reply: bytes | None) -> None:
        """
        Write the granting reply in clear, then start TLS as the server
        (unless the hooks abort it: the client sees the grant, then the
        connection closes once the reply is flushed).
        """
        connection = self.connection
        transport = connection.transport
        if (
            self.state is not State.GRANTING
            or connection.closed
            or reply is None
            or getattr(transport, "protocol", None) is not connection
        ):
            # nothing to grant with, or no TLS layer can go under this
            # transport (it has no protocol attribute naming ours)
            self.fire(Event.GRANT_FAILED)
            connection._close()
            return
        connection._send(reply)
        hooks = connection.factory.hooks
        if connection._closing or (hooks is not None and hooks.abort_handshake()):
            connection._close()  # once the grant is flushed: CLOSE
            return
        # no producer of the TCP transport, which the TLS layer's becomes
        connection.resumeProducing()
        try:
            self._put_tls_under(connection)
        except Exception:
            # the grant went out in clear and nothing more may: close
            self.log.failure("starting TLS for {peer}", peer=connection.peer)
            self.fire(Event.GRANT_FAILED)
            connection._close()
            return
        self.fire(Event.GRANT_SENT)
        connection._decoder = FrameDecoder()
        connection._shape = None
        connection._socket = None
        connection.kind = Transport.TLS
        connection.idle_timeout = self.idle_timeout()
        connection._upgraded = True
        connection._start_handshake_clock()
        connection._start_idle()

    def _put_tls_under(self, connection: DNSStreamProtocol) -> None:
        """
        Put the TLS port's layer between C{connection} and its TCP
        transport, as the server of the handshake, without telling
        C{connection} it is connected again (C{_connectWrapped} false, as
        C{twisted.internet._newtls.startTLS} builds its layer): the TCP
        transport hands its reads and its end to the layer, the layer hands
        the plaintext up, and C{connection} writes to the layer.
        """
        transport: Any = connection.transport
        layers = self._layers
        layer = layers.protocol(layers, connection, False)  # type: ignore[no-untyped-call]
        assert isinstance(layer, DoTServerProtocol)
        transport.protocol = layer
        connection.transport = layer
        layer.makeConnection(transport)  # type: ignore[no-untyped-call]
        self.layer = layer

    def handshake_done(self) -> None:
        """
        The TLS handshake is done: the connection is a TLS one.
        """
        self.fire(Event.HANDSHAKE_DONE)

    def handshake_expired(self) -> None:
        """
        The handshake took too long: the connection is dropped.
        """
        self.fire(Event.HANDSHAKE_FAILED)

    def lost(self) -> None:
        """
        The connection closes or is gone; while handshaking, that is the
        handshake failing.
        """
        if self.state is State.HANDSHAKING:
            self.fire(Event.HANDSHAKE_FAILED)
        self.fire(Event.CLOSE)


def layer_factory(upgrade: Upgrade, factory: IProtocolFactory, clock: IReactorTime) -> TLSServerFactory:
    """
    The factory of the TLS layers put under a listener's upgraded
    connections: the TLS port's, with the upgrade's TLS policy.
    """
    return TLSServerFactory(upgrade.tls, factory, clock)
