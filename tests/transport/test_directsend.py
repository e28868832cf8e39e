"""
Tests for L{dnstls.transport.directsend}: data goes straight to a clear TCP
connection's socket only when it cannot overtake or bypass anything, on
real Twisted connections over a socket pair and a memory reactor.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet.protocol import Protocol
from twisted.internet.tcp import Connection
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from dnstls.transport.directsend import nothing_queued, write_now


class Joined:
    """A Twisted TCP connection on one end of a socket pair, and the other end to read from."""

    def __init__(self) -> None:
        ours, self.peer = socket.socketpair()
        ours.setblocking(False)
        self.peer.settimeout(1)
        self.reactor = MemoryReactorClock()
        self.connection = Connection(ours, Protocol(), self.reactor)
        self.connection.connected = 1

    def received(self) -> bytes:
        """What the peer can read now."""
        self.peer.setblocking(False)
        try:
            return self.peer.recv(65536)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        self.connection.socket.close()
        self.peer.close()


@pytest.fixture
def joined() -> Iterator[Joined]:
    pair = Joined()
    yield pair
    pair.close()


def test_idle_clear_connection_sent_at_once(joined: Joined) -> None:
    """On an idle clear connection the data reaches the peer without the reactor writing anything."""
    assert nothing_queued(joined.connection)
    write_now(joined.connection, joined.connection.socket, b"answer")
    assert joined.received() == b"answer"
    assert joined.connection.dataBuffer == b"" and not joined.connection._tempDataLen


def test_queued_data_keeps_its_place(joined: Joined) -> None:
    """With data already queued, new data is queued behind it, not sent ahead of it."""
    joined.connection.write(b"first")
    assert not nothing_queued(joined.connection)
    write_now(joined.connection, joined.connection.socket, b"second")
    assert joined.received() == b""
    joined.connection.doWrite()
    assert joined.received() == b"firstsecond"


def test_wrapper_around_clear_connection_is_not_clear(joined: Joined) -> None:
    """A protocol wrapper (as the TLS layer is) reads like the connection beneath but is never bypassed."""
    wrapper = ProtocolWrapper(WrappingFactory(Protocol), Protocol())
    wrapper.makeConnection(joined.connection)
    assert wrapper.TLS is False and wrapper.dataBuffer == b""  # what fooled the attribute checks
    assert not nothing_queued(wrapper)


@pytest.mark.parametrize(
    "ending",
    ["loseConnection", "abortConnection", "loseWriteConnection", "startedTLS", "disconnected"],
)
def test_ending_or_tls_connection_not_written_around(joined: Joined, ending: str) -> None:
    """A connection closing, aborted, half-closed, gone or with TLS started is left to Twisted."""
    connection = joined.connection
    if ending == "startedTLS":
        connection.TLS = True
    elif ending == "disconnected":
        connection.disconnected = 1
    else:
        getattr(connection, ending)()
    assert not nothing_queued(connection)


def test_other_transports_are_left_alone() -> None:
    """A transport that is not a Twisted TCP connection gets the data through its own write."""
    transport = StringTransport()
    assert not nothing_queued(transport)
    write_now(transport, None, b"answer")
    assert transport.value() == b"answer"


def test_socket_refusing_leaves_data_to_transport(joined: Joined) -> None:
    """What the socket does not take (here: an error) is queued through the transport, whole."""

    class Refusing:
        def send(self, data: bytes) -> int:
            raise ConnectionResetError

    write_now(joined.connection, Refusing(), b"answer")
    assert joined.received() == b""
    joined.connection.doWrite()
    assert joined.received() == b"answer"
