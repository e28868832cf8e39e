# -*- test-case-name: tests.transport.test_directsend,tests.transport.test_protocol -*-
"""
Writes that go straight to a TCP socket when nothing is queued before
them: a write through Twisted's buffer costs two epoll changes and a turn
of the reactor loop, which for a DNS answer is more than the answer.
What such a connection holds unsent is read from the same buffers
(L{queued}), and a connection made to stop reading as Twisted does when
they are full (L{pause_as_full}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.tcp import Connection


def nothing_queued(transport: object) -> bool:
    """
    Whether C{transport} is itself a Twisted TCP connection (not a wrapper
    around one: a TLS layer passes attribute reads through to the
    connection beneath, so only the type tells them apart), in clear text
    (TLS not started on it), open for writing, and with no data waiting to
    be written, so that data sent on its socket now cannot overtake any.
    It reads the write buffers of Twisted's C{FileDescriptor}; any other
    transport answers C{False}.
    """
    if not isinstance(transport, Connection):
        return False
    return (
        not transport.TLS
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
        and bool(transport.connected)
        and not transport.disconnecting
        and not transport.disconnected
        and not transport._aborting
        and not transport._writeDisconnecting
        and not transport._writeDisconnected
    )


def write_now(transport: Any, sock: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}, offering it to C{sock}, the transport's
    socket, first when nothing is queued; what the socket does not take
    (all of it, on an error the transport then finds for itself) is queued
    behind through the transport.
    """
    if sock is not None and nothing_queued(transport):
        try:
            sent = sock.send(data)
        except OSError:
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def tcp_under(transport: object) -> Connection | None:
    """
    The Twisted TCP connection C{transport} is, or the one under it when it
    is a TLS layer; C{None} for any other transport.
    """
    if isinstance(transport, Connection):
        return transport
    inner = getattr(transport, "transport", None)
    return inner if isinstance(inner, Connection) else None


def queued(connection: Connection) -> int:
    """
    The octets written to C{connection} that its socket has not taken yet.
    """
    return len(connection.dataBuffer) - connection.offset + connection._tempDataLen


def pause_as_full(connection: Connection) -> None:
    """
    Pause the streaming producer of C{connection} as Twisted does when its
    buffer passes C{bufferSize}, so that it is resumed, as then, once the
    buffer is empty; nothing is done for a connection without one, or
    with one paused.
    """
    producer = connection.producer
    if producer is not None and connection.streamingProducer and not connection.producerPaused:
        connection.producerPaused = True
        producer.pauseProducing()  # type: ignore[attr-defined]
