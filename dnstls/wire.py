# -*- test-case-name: tests.test_wire -*-
"""
Reading the fixed parts of a DNS message with C{struct}, without dnspython.

These helpers look at raw query bytes before (or instead of) a full parse:
the header, and whether the additional section carries an OPT record.  They
never raise on malformed input; they answer C{None} or C{False}.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

HEADER = struct.Struct("!HHHHHH")
HEADER_SIZE = HEADER.size

QR = 0x8000
OPT_TYPE = 41


class Header(NamedTuple):
    """
    The twelve-octet DNS header (RFC 1035 section 4.1.1).
    """

    id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int

    @property
    def opcode(self) -> int:
        """
        The four-bit OPCODE field.
        """
        return (self.flags >> 11) & 0xF


def parse_header(data: bytes) -> Header | None:
    """
    Read the header of C{data}, or return C{None} when it is shorter than one.
    """
    if len(data) < HEADER_SIZE:
        return None
    return Header(*HEADER.unpack_from(data))


def skip_name(data: bytes, offset: int) -> int | None:
    """
    Return the offset just past the (possibly compressed) domain name that
    starts at C{offset}, or C{None} if the name runs off the end of C{data} or
    uses a reserved label type (or C{offset} is negative).
    """
    end = len(data)
    if offset < 0:
        return None
    while offset < end:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2 if offset + 2 <= end else None
        if length & 0xC0:
            return None
        offset += 1 + length
    return None


def has_opt(data: bytes) -> bool:
    """
    Whether the additional section of the message C{data} holds an OPT
    record, found by walking the records without decoding them.  A message
    too damaged to walk that far answers C{False}.
    """
    header = parse_header(data)
    if header is None or header.arcount == 0:
        return False
    offset: int | None = HEADER_SIZE
    for _ in range(header.qdcount):
        offset = skip_name(data, offset)  # type: ignore[arg-type]
        if offset is None:
            return False
        offset += 4
    records_before = header.ancount + header.nscount
    for index in range(records_before + header.arcount):
        offset = skip_name(data, offset)  # type: ignore[arg-type]
        if offset is None or offset + 10 > len(data):
            return False
        rdtype, _, _, rdlength = struct.unpack_from("!HHIH", data, offset)
        if index >= records_before and rdtype == OPT_TYPE:
            return True
        offset += 10 + rdlength
    return False
