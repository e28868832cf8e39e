# -*- test-case-name: tests.transport.test_directsend,tests.transport.test_protocol -*-
"""
Writes that go straight to a TCP socket when nothing is queued before
them: a write through Twisted's buffer costs two epoll changes and a turn
of the reactor loop, which for a DNS answer is more than the answer.
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
