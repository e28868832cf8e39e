"""
Tests for L{dnstls.transport.framing}: the two-octet length codec of DNS over TCP and
TLS, fed the way a network delivers bytes.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnstls.transport.framing import MAX_MESSAGE, FrameDecoder, FramingError, frame


def message(n: int, size: int = 29) -> bytes:
    """A DNS-message-sized payload numbered C{n} (at least a header long)."""
    return struct.pack("!H", n) + bytes([n % 251]) * (size - 2)


def test_frame_prefixes_length() -> None:
    """frame() puts the big-endian two-octet length in front of the message."""
    assert frame(b"x" * 12) == b"\x00\x0c" + b"x" * 12
    assert frame(b"y" * 300) == b"\x01\x2c" + b"y" * 300


def test_frame_largest_message() -> None:
    """A 65535-octet message is framed with length ff ff."""
    framed = frame(b"\0" * MAX_MESSAGE)
    assert framed[:2] == b"\xff\xff"
    assert len(framed) == MAX_MESSAGE + 2


def test_frame_too_big_raises() -> None:
    """A message of 65536 octets cannot be framed and frame() says so."""
    with pytest.raises(ValueError):
        frame(b"\0" * (MAX_MESSAGE + 1))


def test_one_byte_per_feed() -> None:
    """A message delivered one octet per feed comes out once, whole, after its last octet."""
    decoder = FrameDecoder()
    body = message(1)
    stream = frame(body)
    out: list[bytes] = []
    for index in range(len(stream)):
        got = decoder.feed(stream[index : index + 1])
        if index < len(stream) - 1:
            assert got == []
            assert decoder.pending == index + 1
        out += got
    assert out == [body]
    assert decoder.pending == 0


def test_many_frames_per_feed() -> None:
    """Ten messages in one feed come out as ten messages, in order."""
    bodies = [message(n, 12 + n) for n in range(10)]
    decoder = FrameDecoder()
    assert decoder.feed(b"".join(frame(b) for b in bodies)) == bodies
    assert decoder.pending == 0


def test_prefix_split_from_body() -> None:
    """A length prefix split over two feeds, then the body in chunks, gives the message."""
    body = message(7, 300)
    stream = frame(body)
    decoder = FrameDecoder()
    assert decoder.feed(stream[:1]) == []
    assert decoder.feed(stream[1:2]) == []
    assert decoder.pending == 2
    assert decoder.feed(stream[2:100]) == []
    assert decoder.feed(stream[100:]) == [body]


def test_partial_tail_stays_buffered() -> None:
    """Octets past the last whole message are kept for the next feed."""
    first, second = message(1), message(2)
    stream = frame(first) + frame(second)
    decoder = FrameDecoder()
    assert decoder.feed(stream[:-5]) == [first]
    assert decoder.pending == len(frame(second)) - 5
    assert decoder.feed(stream[-5:]) == [second]


def test_empty_feed() -> None:
    """Feeding no bytes gives no messages and changes nothing."""
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\x00") == []
    assert decoder.feed(b"") == []
    assert decoder.pending == 1


@pytest.mark.parametrize("length", [0, 1, 5, 11])
def test_short_length_raises_and_breaks(length: int) -> None:
    """A length below 12 raises FramingError, and the decoder refuses all later input."""
    decoder = FrameDecoder()
    with pytest.raises(FramingError):
        decoder.feed(struct.pack("!H", length) + b"\0" * length)
    assert decoder.pending == 0
    with pytest.raises(FramingError):
        decoder.feed(frame(message(1)))


def test_length_twelve_accepted() -> None:
    """A length of exactly 12 (a bare header) is a message."""
    assert FrameDecoder().feed(b"\x00\x0c" + b"h" * 12) == [b"h" * 12]


def test_short_length_split_over_feeds() -> None:
    """A bad length is caught even when its two octets arrive in separate feeds."""
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00") == []
    with pytest.raises(FramingError):
        decoder.feed(b"\x00")


def test_error_keeps_messages_before_bad_length() -> None:
    """Messages completed before a bad length in the same feed travel with the FramingError."""
    first, second = message(1), message(2)
    decoder = FrameDecoder()
    with pytest.raises(FramingError) as caught:
        decoder.feed(frame(first) + frame(second) + b"\x00\x00")
    assert caught.value.messages == [first, second]


def test_clear_drops_buffer() -> None:
    """clear() discards the buffered octets, reports how many, and leaves a usable decoder."""
    decoder = FrameDecoder()
    decoder.feed(frame(message(1))[:9])
    assert decoder.pending == 9
    assert decoder.clear() == 9
    assert decoder.pending == 0
    assert decoder.clear() == 0
    assert decoder.feed(frame(message(2))) == [message(2)]


def test_largest_message_decoded() -> None:
    """A 65535-octet message is reassembled from 1000-octet chunks."""
    body = message(3, MAX_MESSAGE)
    stream = frame(body)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for start in range(0, len(stream), 1000):
        out += decoder.feed(stream[start : start + 1000])
    assert out == [body]


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(min_size=12, max_size=600), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=20),
)
def test_any_split_gives_same_messages(bodies: list[bytes], cuts: list[int]) -> None:
    """However the stream is cut into feeds, the same messages come out in order."""
    stream = b"".join(frame(b) for b in bodies)
    points = sorted({c for c in cuts if c < len(stream)} | {0, len(stream)})
    decoder = FrameDecoder()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out += decoder.feed(stream[start:end])
    assert out == bodies
    assert decoder.pending == 0


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=10))
def test_arbitrary_bytes_only_framing_error(chunks: list[bytes]) -> None:
    """Arbitrary input yields messages of at least 12 octets or a FramingError, nothing else."""
    decoder = FrameDecoder()
    for chunk in chunks:
        try:
            for body in decoder.feed(chunk):
                assert len(body) >= 12
        except FramingError:
            return
