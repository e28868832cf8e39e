# -*- test-case-name: tests.transport.test_templates -*-
"""
Answers to questions never asked before, without dnspython: the miss path
of L{dnstls.transport.fastpath}.

The reply cache answers a question asked before; a large zone, or a flood
of random names, asks questions that are all new.  Their replies are
still alike: the answer to any name of a zone that does not exist is the
same header, the client's question, the zone's SOA and our OPT, and the
answer for an existing name's A records is the same header, the question,
the name's records (each owned by a pointer to the question) and the OPT.
So a reply is assembled from two parts:

  - a I{frame}, learnt from one reply the handler rendered: everything but
    the question (and, for a positive answer, the records) for queries
    alike in everything that can change it: the shape of their context
    (see L{dnstls.transport.fastpath.Shape}), the query's flags, its type,
    its OPT record octet for octet, the zone and, for a negative answer,
    the length of the name (on which the compression pointers into the
    question depend);
  - what the zone tells from the name alone
    (L{dnstls.zones.authority.AuthoritativeZone.classify}): the rendered
    records of a plain positive answer, or that the name does not exist
    (NXDOMAIN) or has no data of the type (NODATA).

A frame is kept only when the reply it comes from is exactly what the
frame and the classification would have assembled (for a positive
answer), or carries the RCODE and counts its kind must have (negative), so
an answer assembled is byte for byte the handler's.  A negative frame is
not used for a name that ends, below the apex, in a name of the SOA's
RDATA (its compression would differ).  Everything else, and any query
whose wire form is not the plain one (one question of class IN, no
compression, nothing but an OPT after it), goes to the handler.
"""

from __future__ import annotations

from dnstls.context import STREAM_LIMIT, UDP_CLASSIC, UDP_PAYLOAD
from dnstls.zones.authority import AuthoritativeZone, Fast
from dnstls.zones.store import ZoneStore

#: Frames kept at most; past it they are all forgotten and learnt again.
MAX_FRAMES = 4096

#: The first octets of a plain query's counts: QDCOUNT 1, ANCOUNT and
#: NSCOUNT 0.
_COUNTS = b"\x00\x01\x00\x00\x00\x00"
#: CLASS IN, at the end of the question.
_IN = b"\x00\x01"
#: An OPT record's start: the root name and TYPE 41.
_OPT = b"\x00\x00\x29"
#: QR and OPCODE in the first flags octet.
_QR_OPCODE = 0xF8
#: TC in the first flags octet.
_TC = 0x02
#: AA in the first flags octet.
_AA = 0x04
#: Types that are never a plain question: the transfers, meta types
#: (OPT, TKEY, TSIG, MAILB, MAILA, ANY), DS (the parent side of a cut).
_NOT_PLAIN = frozenset({41, 43, 249, 250, 251, 252, 253, 254, 255})
#: The RCODE in the second flags octet.
_RCODE = 0x0F
#: What the counts after QDCOUNT of a negative answer are, without and
#: with an OPT: the SOA alone in the authority section.
_NEGATIVE_COUNTS = (b"\x00\x00\x00\x01\x00\x00", b"\x00\x00\x00\x01\x00\x01")

#: A positive frame: the flags octets, ARCOUNT, the OPT octets, the
#: largest reply.
Positive = tuple[bytes, bytes, bytes, int]
#: A negative frame: the octets between the ID and the question, and
#: those after it.
Negative = tuple[bytes, bytes]
Frame = Positive | Negative


class Plain:
    """
    A query in its plain wire form, read without dnspython.

    @ivar end: the offset just past the question's name.
    @ivar qkey: the name in lower case.
    @ivar qtype: the question's type.
    @ivar rest: the OPT record's octets, or nothing.
    """

    __slots__ = ("end", "qkey", "qtype", "rest", "starts")

    def __init__(self, end: int, qkey: bytes, qtype: int, rest: bytes, starts: list[int]) -> None:
        self.end = end
        self.qkey = qkey
        self.qtype = qtype
        self.rest = rest
        self.starts = starts


def read_plain(wire: bytes) -> Plain | None:
    """
    C{wire} as a plain query, or C{None}: a QUERY with one question of
    class IN whose name is uncompressed, and after it nothing but one OPT
    record of version 0 whose RDATA is as long as it says.
    """
    size = len(wire)
    if size < 17 or wire[2] & _QR_OPCODE or wire[4:10] != _COUNTS:
        return None
    offset = 12
    starts = []
    length = wire[12]
    while length:
        if length > 63:
            return None
        starts.append(offset - 12)
        offset += length + 1
        if offset >= size:
            return None
        length = wire[offset]
    end = offset + 1
    if end > 267 or end + 4 > size or wire[end + 2 : end + 4] != _IN:
        return None
    rest = wire[end + 4 :]
    arcount = wire[10:12]
    if arcount == b"\x00\x00":
        if rest:
            return None
    elif arcount != b"\x00\x01" or not _is_opt(rest) or rest[6]:
        return None
    qtype = wire[end] << 8 | wire[end + 1]
    if qtype in _NOT_PLAIN:
        return None
    starts.append(end - 13)
    return Plain(end, wire[12:end].lower(), qtype, rest, starts)


def _is_opt(octets: bytes) -> bool:
    """
    Whether C{octets} are one whole OPT record: the root name, TYPE 41,
    and as much RDATA as its RDLENGTH says.
    """
    return (
        len(octets) >= 11
        and octets[:3] == _OPT
        and len(octets) == 11 + (octets[9] << 8 | octets[10])
    )


def _limit(transport: str, rest: bytes) -> int:
    """
    The largest reply the handler gives a query on C{transport} whose OPT
    record is C{rest} (see L{dnstls.handler.Handler._limit}).
    """
    if transport != "udp":
        return STREAM_LIMIT
    if not rest:
        return UDP_CLASSIC
    return max(UDP_CLASSIC, min(rest[3] << 8 | rest[4], UDP_PAYLOAD))


def _frame_key(
    wire: bytes, shape: tuple[object, ...], plain: Plain, zone: AuthoritativeZone, outcome: bytes | Fast
) -> tuple[object, ...]:
    """
    What a frame for C{wire} is kept under: the shape, the flags, the type
    and the OPT octets; for a negative answer also the zone, the outcome
    and the name's length, on which its compression pointers depend.
    """
    if type(outcome) is bytes:
        return (shape, wire[2:4], plain.qtype, plain.rest)
    return (shape, wire[2:4], plain.qtype, plain.rest, zone, outcome, plain.end)


def classify(zones: ZoneStore, plain: Plain) -> tuple[AuthoritativeZone, bytes | Fast] | None:
    """
    The zone of C{plain} and what it answers, when that is plain (see
    L{AuthoritativeZone.classify}) and, for a negative answer, the name
    ends in no name of the SOA's RDATA below the apex.
    """
    routed = zones.route(plain.qkey, plain.starts)
    if routed is None:
        return None
    zone, below = routed
    starts = plain.starts[:below]
    outcome = zone.classify(plain.qkey, starts, plain.qtype)
    if outcome is None:
        return None
    if isinstance(outcome, Fast) and zone.negative_suffixes:
        qkey = plain.qkey
        suffixes = zone.negative_suffixes
        for start in starts:
            if (qkey[start:] if start else qkey) in suffixes:
                return None
    return zone, outcome


class Templates:
    """
    Frames learnt from the handler's replies, and the replies assembled
    from them (see the module's docstring).

    @ivar assembled: replies assembled.
    @ivar learnt: frames learnt.
    """

    def __init__(self, max_frames: int = MAX_FRAMES) -> None:
        self.max_frames = max_frames
        self.assembled = 0
        self.learnt = 0
        self._frames: dict[tuple[object, ...], Frame] = {}

    def __len__(self) -> int:
        return len(self._frames)

    def clear(self) -> None:
        """
        Forget every frame (the zones they were learnt from changed).
        """
        self._frames.clear()

    def reply(self, wire: bytes, shape: tuple[object, ...], zones: ZoneStore) -> bytes | None:
        """
        The reply to C{wire} in C{shape} assembled from a frame, or
        C{None} when the handler must answer it.
        """
        plain = read_plain(wire)
        if plain is None:
            return None
        classified = classify(zones, plain)
        if classified is None:
            return None
        zone, outcome = classified
        frame = self._frames.get(_frame_key(wire, shape, plain, zone, outcome))
        if frame is None:
            return None
        end = plain.end + 4
        if type(outcome) is bytes:
            flags, arcount, opt, limit = frame  # type: ignore[misc]
            reply = b"".join(
                (
                    wire[:2],
                    flags,
                    b"\x00\x01",
                    outcome[:2],
                    b"\x00\x00",
                    arcount,
                    wire[12:end],
                    memoryview(outcome)[2:],
                    opt,
                )
            )
            if len(reply) > limit:
                return None
        else:
            head, tail = frame  # type: ignore[misc]
            reply = b"".join((wire[:2], head, wire[12:end], tail))
        self.assembled += 1
        return reply

    def learn(self, wire: bytes, shape: tuple[object, ...], zones: ZoneStore, reply: bytes) -> None:
        """
        Keep the frame of C{reply}, the handler's reply to C{wire} in
        C{shape} from C{zones}, when it is plain and the frame and the
        classification would assemble exactly it.
        """
        plain = read_plain(wire)
        if plain is None:
            return
        classified = classify(zones, plain)
        if classified is None:
            return
        zone, outcome = classified
        end = plain.end + 4
        if (
            len(reply) < end
            or reply[:2] != wire[:2]
            or reply[12:end] != wire[12:end]
            or reply[2] & _TC
            or not reply[2] & _AA
            or reply[4:6] != b"\x00\x01"
        ):
            return
        frame: Frame
        if isinstance(outcome, bytes):
            if shape[3] and plain.rest[9:11] != b"\x00\x00":
                # the client may have asked for TLS padding, whose length
                # follows the reply's
                return
            answers = memoryview(outcome)[2:]
            opt = reply[end + len(answers) :]
            if (
                reply[3] & _RCODE
                or reply[6:8] != outcome[:2]
                or reply[8:10] != b"\x00\x00"
                or reply[end : end + len(answers)] != answers
                or reply[10:12] != (b"\x00\x01" if opt else b"\x00\x00")
                or (opt and not _is_opt(opt))
            ):
                return
            frame = (reply[2:4], reply[10:12], opt, _limit(str(shape[0]), plain.rest))
        else:
            rcode = 3 if outcome is Fast.NXDOMAIN else 0
            if reply[3] & _RCODE != rcode or reply[6:12] != _NEGATIVE_COUNTS[bool(plain.rest)]:
                return
            frame = (reply[2:12], reply[end:])
        key = _frame_key(wire, shape, plain, zone, outcome)
        if key in self._frames:
            return
        if len(self._frames) >= self.max_frames:
            self._frames.clear()
        self._frames[key] = frame
        self.learnt += 1
