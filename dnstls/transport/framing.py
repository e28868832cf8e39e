# -*- test-case-name: tests.transport.test_framing -*-
"""
The two-octet length framing of DNS over TCP and TLS (RFC 1035 4.2.2,
RFC 7766 section 8), as a sans-IO codec.

L{FrameDecoder} takes bytes in whatever pieces the network delivers (one
octet at a time, or many messages at once) and yields whole messages.
"""

from __future__ import annotations

import struct

from dnstls.wire import HEADER_SIZE

MAX_MESSAGE = 0xFFFF
_LENGTH = struct.Struct("!H")


class FramingError(ValueError):
    """
    The peer sent a length that no DNS message can have (0 or below the
    size of a header); the stream cannot be trusted any further.

    @ivar messages: the whole messages the same feed completed before the
        bad length, in order, so that a stream answers the same however the
        network split it.
    """

    def __init__(self, reason: str, messages: list[bytes] | None = None) -> None:
        super().__init__(reason)
        self.messages: list[bytes] = messages if messages is not None else []


def frame(message: bytes) -> bytes:
    """
    Prefix C{message} with its two-octet length, ready for one write.

    @raise ValueError: if the message is longer than 65535 octets.
    """
    if len(message) > MAX_MESSAGE:
        raise ValueError(f"a DNS message over TCP is at most {MAX_MESSAGE} octets")
    return _LENGTH.pack(len(message)) + message


class FrameDecoder:
    """
    Reassemble length-prefixed DNS messages from a byte stream.
    """

    __slots__ = ("_broken", "_buffer")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._broken = False

    def feed(self, data: bytes) -> list[bytes]:
        """
        Add C{data} to the stream and return every message it completes, in
        order.  Octets past the last whole message stay buffered.

        @raise FramingError: when a length prefix is below 12, carrying the
            messages completed before it; the decoder then refuses further
            input.
        """
        if self._broken:
            raise FramingError("the stream was already broken")
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray = buffer
        else:
            # the usual case: whole messages, sliced out of C{data} at once
            source = data
        messages: list[bytes] = []
        offset = 0
        available = len(source)
        while available - offset >= 2:
            length = source[offset] << 8 | source[offset + 1]
            if length < HEADER_SIZE:
                self._broken = True
                buffer.clear()
                raise FramingError(f"message length {length} is below {HEADER_SIZE}", messages)
            end = offset + 2 + length
            if end > available:
                break
            messages.append(bytes(source[offset + 2 : end]))
            offset = end
        if source is buffer:
            del buffer[:offset]
        elif offset < available:
            buffer += data[offset:]
        return messages

    def clear(self) -> int:
        """
        Discard everything buffered and return how many octets were dropped.
        """
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped

    @property
    def pending(self) -> int:
        """
        The number of octets received that are not yet part of a message.
        """
        return len(self._buffer)
