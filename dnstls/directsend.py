# -*- test-case-name: tests.test_protocol,tests.test_tls -*-
"""
Writes that go straight to a TCP socket when nothing is queued before
them: a write through Twisted's buffer costs two epoll changes and a turn
of the reactor loop, which for a DNS answer is more than the answer.
"""

from __future__ import annotations

from typing import Any


def nothing_queued(transport: object) -> bool:
    """
    Whether C{transport} is a Twisted TCP connection in clear text (not
    TLS, nor on its way to it) with no data waiting to be written, so that
    data sent on its socket now cannot overtake any.  It reads the write
    buffers of Twisted's C{FileDescriptor}; any other transport answers
    C{False}.
    """
    try:
        return (
            not getattr(transport, "TLS", True)
            and not transport._tempDataLen  # type: ignore[attr-defined]
            and transport.offset == len(transport.dataBuffer)  # type: ignore[attr-defined]
            and bool(transport.connected)  # type: ignore[attr-defined]
            and not transport.disconnecting  # type: ignore[attr-defined]
        )
    except AttributeError:
        return False


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
