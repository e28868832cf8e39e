"""
Tests for L{dnstls.wire}: reading the header and finding an OPT record in raw
query bytes, on good and on broken input.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnstls.wire import HEADER_SIZE, Header, has_opt, parse_header, skip_name


def test_parse_header_fields() -> None:
    """parse_header reads ID, flags and the four counts of a real query."""
    query = dns.message.make_query("www.example.test.", "A", use_edns=0)
    query.id = 0xBEEF
    header = parse_header(query.to_wire())
    assert header == Header(0xBEEF, query.flags, 1, 0, 0, 1)
    assert header is not None and header.opcode == dns.opcode.QUERY


def test_parse_header_opcode() -> None:
    """The opcode property is the four bits after QR."""
    header = parse_header(struct.pack("!HHHHHH", 1, 0x8000 | (5 << 11) | 0x0100, 0, 0, 0, 0))
    assert header is not None
    assert header.opcode == 5


@pytest.mark.parametrize("size", [0, 1, 11])
def test_parse_header_short(size: int) -> None:
    """Fewer than 12 octets is no header: None."""
    assert parse_header(b"\xff" * size) is None


def test_parse_header_exactly_twelve() -> None:
    """Exactly 12 octets is a header with everything after it ignored."""
    assert parse_header(b"\x00\x01" + b"\x00" * 10) == Header(1, 0, 0, 0, 0, 0)
    assert HEADER_SIZE == 12


@pytest.mark.parametrize(
    ("data", "offset", "expected"),
    [
        (b"\x00", 0, 1),  # the root
        (b"\x03www\x07example\x04test\x00", 0, 18),
        (b"\xff\x03abc\x00", 1, 6),  # starting mid-buffer
        (b"\x03abc\xc0\x0c", 0, 6),  # labels then a pointer
        (b"\xc0\x0c", 0, 2),  # a pointer alone
        (b"\x03abc\x00\xff\xff", 0, 5),  # data after the name is not read
    ],
)
def test_skip_name_good(data: bytes, offset: int, expected: int) -> None:
    """skip_name returns the offset just past a plain or compressed name."""
    assert skip_name(data, offset) == expected


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"", 0),  # nothing there
        (b"\x03ab", 0),  # label runs off the end
        (b"\x03abc", 0),  # no terminating root label
        (b"\xc0", 0),  # half a pointer
        (b"\x41abc\x00", 0),  # extended label type 01
        (b"\x81abc\x00", 0),  # reserved label type 10
        (b"\x00", 1),  # offset at the end
        (b"\x00", 50),  # offset past the end
        (b"\x00", -1),  # negative offset
    ],
)
def test_skip_name_broken(data: bytes, offset: int) -> None:
    """skip_name answers None for a name that is cut short or uses a reserved label type."""
    assert skip_name(data, offset) is None


def test_has_opt_true_and_false() -> None:
    """has_opt sees the OPT of an EDNS query and none in a plain one."""
    assert has_opt(dns.message.make_query("example.test.", "A", use_edns=0).to_wire())
    assert not has_opt(dns.message.make_query("example.test.", "A").to_wire())


def test_has_opt_after_other_records() -> None:
    """has_opt walks the answer, authority and earlier additional records to reach the OPT."""
    query = dns.message.make_query("a.example.test.", "A", use_edns=0)
    query.answer.append(dns.rrset.from_text("a.example.test.", 60, "IN", "A", "192.0.2.1"))
    query.authority.append(dns.rrset.from_text("example.test.", 60, "IN", "NS", "ns.example.test."))
    query.additional.append(dns.rrset.from_text("ns.example.test.", 60, "IN", "TXT", "x" * 200))
    wire = query.to_wire()
    assert parse_header(wire) == Header(query.id, query.flags, 1, 1, 1, 2)
    assert has_opt(wire)


def test_has_opt_ignores_type_41_outside_additional() -> None:
    """A record of type 41 in the answer section is not the message's OPT."""
    # question www. A, then one answer of type OPT(41), arcount 1 with an A record
    question = b"\x03www\x00\x00\x01\x00\x01"
    answer = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    additional = b"\x00\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"
    wire = struct.pack("!HHHHHH", 1, 0, 1, 1, 0, 1) + question + answer + additional
    assert not has_opt(wire)


def test_has_opt_without_question() -> None:
    """A QDCOUNT of 0 still lets has_opt find the OPT."""
    query = dns.message.make_query("example.test.", "A", use_edns=0)
    query.question = []
    assert has_opt(query.to_wire())


@pytest.mark.parametrize("cut", [12, 13, 20, 29, 31, 35, 38])
def test_has_opt_truncated(cut: int) -> None:
    """A message cut before the end of its OPT answers False."""
    wire = dns.message.make_query("example.test.", "A", use_edns=0).to_wire()
    assert len(wire) == 41
    assert not has_opt(wire[:cut])


def test_has_opt_counts_lie() -> None:
    """Counts far beyond the data, or a bad name, answer False instead of raising."""
    assert not has_opt(struct.pack("!HHHHHH", 1, 0, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF))
    assert not has_opt(struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 1) + b"\x41x\x00\x00\x01\x00\x01")
    assert not has_opt(b"")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), offset=st.integers(min_value=-300, max_value=300))
def test_helpers_never_raise(data: bytes, offset: int) -> None:
    """On arbitrary bytes the helpers answer a value of the promised type and never raise."""
    header = parse_header(data)
    assert header is None or isinstance(header, Header)
    skipped = skip_name(data, offset)
    assert skipped is None or offset < skipped <= len(data)
    assert has_opt(data) in (True, False)


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.binary(max_size=40),
    flip=st.integers(min_value=0, max_value=40),
    edns=st.booleans(),
)
def test_has_opt_agrees_with_dnspython(prefix: bytes, flip: int, edns: bool) -> None:
    """When dnspython can parse a (possibly damaged) query, has_opt agrees with it about OPT."""
    query = dns.message.make_query("a.example.test.", "TXT", use_edns=0 if edns else None)
    wire = bytearray(query.to_wire())
    for i, byte in enumerate(prefix):
        wire[(flip + i) % len(wire)] ^= byte
    try:
        parsed = dns.message.from_wire(bytes(wire))
    except Exception:  # noqa: BLE001 - any parse failure is a fine outcome here
        assert has_opt(bytes(wire)) in (True, False)
        return
    assert has_opt(bytes(wire)) == (parsed.opt is not None)
