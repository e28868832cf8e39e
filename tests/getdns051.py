"""
A STARTTLS client that behaves on the wire as getdns 0.5.1 does (2015, the
last getdns release with the STARTTLS transport, the one client that
draft-ietf-dprive-start-tls-for-dns-01 names), written here from a
reading of its source (getdnsapi/getdns, tag v0.5.1) and checked against
the bytes a build of its C{getdns_query -s -R} sent to dnstls.  None of its
code is here; the references say where each rule comes from.

  - The probe (C{src/stub.c} C{create_starttls_request}, lines 259-281):
    C{STARTTLS} TXT class CH with no TO bit ("TODO[TLS]: TO BIT").  Its
    header comes from C{src/request-internal.c} C{network_req_init}, lines
    144-154: every flag cleared, then RD set, CD only for DNSSEC (not for
    the probe), opcode QUERY, QDCOUNT 1, ARCOUNT 1 when it has an OPT.  It
    has one unless the EDNS settings are all the classic ones (lines
    407-410: the default payload, -1, is not 512), with version 0, DO=0 and
    no options; C{stub_tcp_write} (C{src/stub.c} lines 701-744) then picks
    a random ID, sets the payload to 65535 and writes length and message
    in one call.
  - What it takes for "yes" (C{is_starttls_response}, C{src/stub.c} lines
    284-331): see L{is_starttls_response}.  Nothing else is read: not the
    TO bit, not QR, not the question.  A reply with another ID is not its
    reply (C{upstream_read_cb}, lines 1438-1448): it reads on.
  - Then (lines 1460-1477 and C{tls_create_object}, lines 879-946): a TLS
    1.2 client (C{src/context.c} line 2251, C{TLSv1_2_client_method}),
    SNI only when the upstream has a name (C{@ADDR@PORT~NAME}), the
    certificate not checked unless authentication is required, cipher list
    C{DEFAULT}; its next query goes inside TLS with the OPT payload 65535
    (C{stub_tls_write}, lines 1141-1214).  For "no", the connection is
    marked failed and, when TCP is among its transports (C{-R}), the next
    query goes in clear on the same connection (C{upstream_transport_valid},
    lines 1625-1630).
"""

from __future__ import annotations

import random
import socket
import ssl
import struct

from tests.support import recv_exact

#: The query name as getdns writes it: C{gldns_str2wire_dname_buf("STARTTLS")}.
STARTTLS = b"\x08STARTTLS\x00"
TXT = 16
CH = 3
IN = 1
#: C{network_req_init}: flags 0, then RD.
FLAGS = 0x0100
#: C{stub_tcp_write} and C{stub_tls_write}: "no limits on the max udp
#: payload size with tcp".
TCP_PAYLOAD = 65535
#: C{src/context.c} line 2256, replaced by C{DEFAULT} when the certificate is
#: not checked (C{tls_create_object}).
PREFERRED_CIPHERS = "EECDH+aRSA+AESGCM:EECDH+aECDSA+AESGCM:EDH+aRSA+AESGCM"


class ReadPastEnd(Exception):
    """
    getdns would read beyond the reply to decide: what it finds there is
    whatever its 4096-octet read buffer held (C{stub_tcp_read}), so no
    server may leave the decision to it.
    """


def wire_name(text: str) -> bytes:
    """
    C{text} (dots between labels, no escapes) in wire form.
    """
    labels = [label.encode("ascii") for label in text.rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def query(ident: int, qname: bytes, qtype: int, qclass: int, opt: bool = True) -> bytes:
    """
    A query as getdns 0.5.1 writes it on a stream, length first: RD=1,
    and with C{opt} an OPT of payload 65535, version 0, no flags, no
    options.
    """
    message = struct.pack("!HHHHHH", ident, FLAGS, 1, 0, 0, 1 if opt else 0)
    message += qname + struct.pack("!HH", qtype, qclass)
    if opt:
        message += b"\x00" + struct.pack("!HHIH", 41, TCP_PAYLOAD, 0, 0)
    return struct.pack("!H", len(message)) + message


def starttls_request(ident: int, opt: bool = True) -> bytes:
    """
    The probe, length first (C{opt=False} is C{getdns_query -b 512}).
    """
    return query(ident, STARTTLS, TXT, CH, opt)


def _byte(packet: bytes, pos: int) -> int:
    if pos >= len(packet):
        raise ReadPastEnd(f"octet {pos} of a {len(packet)}-octet reply")
    return packet[pos]


def name_at(packet: bytes, pos: int, refs: int = 0) -> bytes | None:
    """
    C{dname_if_or_as_decompressed} (C{src/rr-iter.c} lines 125-205): the
    name at C{pos}, followed through compression pointers, or C{None} for
    a bad label type, a pointer out of the packet or a name over 255
    octets.  The first loop, over the labels before any pointer, does not
    stop at the end of the packet (here: L{ReadPastEnd}).
    """
    if refs > 65535:  # GLDNS_MAX_POINTERS
        return None
    first = _byte(packet, pos)
    if first & 0xC0 == 0xC0:
        if pos + 1 >= len(packet):
            return None
        offset = struct.unpack_from("!H", packet, pos)[0] & 0x3FFF
        if offset >= len(packet):
            return None
        return name_at(packet, offset, refs + 1)
    if first & 0xC0:
        return None
    start = scan = pos
    while _byte(packet, scan):
        length = packet[scan]
        if length & 0xC0 == 0xC0:
            break
        if length & 0xC0:
            return None
        scan += length + 1
    if packet[scan] == 0:
        return packet[start : scan + 1]
    # a pointer after some labels: copy, following pointers, at most 255 octets
    out = bytearray()
    pos = scan
    out += packet[start:pos]
    for _ in range(256):
        if packet[pos] & 0xC0 == 0xC0:
            if pos + 1 >= len(packet):
                return None
            offset = struct.unpack_from("!H", packet, pos)[0] & 0x3FFF
            if offset >= len(packet):
                return None
            pos = offset
            continue
        if packet[pos] & 0xC0:
            return None
        if packet[pos] == 0:
            out.append(0)
            return bytes(out) if len(out) <= 255 else None
        end = pos + packet[pos] + 1
        if end > len(packet) or len(out) + end - pos > 255:
            return None
        out += packet[pos:end]
        pos = end
    return None


def names_equal(left: bytes, right: bytes) -> bool:
    """
    C{_getdns_dname_equal} (C{src/util-internal.c} lines 416-429): the
    same label lengths, the label octets compared without regard to ASCII
    case.
    """
    i = 0
    while True:
        if left[i] != right[i]:
            return False
        if left[i] == 0:
            return True
        length = left[i]
        if left[i + 1 : i + 1 + length].lower() != right[i + 1 : i + 1 + length].lower():
            return False
        i += length + 1


def _skip_name(packet: bytes, pos: int) -> int:
    while True:
        length = packet[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += length + 1


def is_starttls_response(packet: bytes, qname: bytes = STARTTLS) -> bool:
    """
    C{is_starttls_response} (C{src/stub.c} lines 284-331): RCODE NOERROR in
    the header (lines 296-297), ANCOUNT exactly 1 (299-300), and, for the
    first TXT record of the answer section owned by the query name (307-317),
    its RDATA read as a domain name (C{_getdns_rdf_if_or_as_decompressed}:
    the first character-string's length octet taken for a label length, on
    past the RDATA until a zero octet or a pointer) equal to that owner
    (323-326); any other answer from that record is "no" (328).  A TXT
    whose first string does not fit its RDATA is passed over
    (C{_getdns_rdf_iter_init}, lines 319-321).

    @raise ReadPastEnd: if the answer depends on octets after the reply
        (those in it being the start of the owner's name).
    """
    if packet[3] & 0x0F != 0:
        return False
    qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHH", packet, 4)
    if ancount != 1:
        return False
    pos = 12
    for _ in range(qdcount):
        pos = _skip_name(packet, pos) + 4
    for index in range(ancount + nscount + arcount):
        owner_at = pos
        pos = _skip_name(packet, pos)
        rrtype, _, _, rdlength = struct.unpack_from("!HHIH", packet, pos)
        rdata = pos + 10
        pos = rdata + rdlength
        if index >= ancount or rrtype != TXT:
            continue
        owner = name_at(packet, owner_at)
        if owner is None or not names_equal(qname, owner):
            continue
        if rdlength == 0 or packet[rdata] + 1 > rdlength:
            continue
        try:
            text = name_at(packet, rdata)
        except ReadPastEnd:
            # what is in the reply may already differ from the owner
            if owner.lower().startswith(packet[rdata:].lower()):
                raise
            return False
        return text is not None and names_equal(text, owner)
    return False


def read_reply(sock: socket.socket | ssl.SSLSocket, ident: int) -> bytes:
    """
    The next message with ID C{ident}, as C{stub_tcp_read} frames it (the
    length, then exactly that many octets); others are read and dropped.
    """
    while True:
        (length,) = struct.unpack("!H", recv_exact(sock, 2))
        if length < 12:
            raise ValueError(f"a {length}-octet message")
        message = recv_exact(sock, length)
        if struct.unpack_from("!H", message)[0] == ident:
            return message


def new_id() -> int:
    """
    A random ID, as C{stub_tcp_write} takes from C{arc4random()}.
    """
    return random.getrandbits(16)


class Getdns051:
    """
    One upstream connection of getdns 0.5.1's STARTTLS transport with TCP
    fallback (C{getdns_query -s -R @ADDR@PORT[~NAME]}).

    @ivar upgraded: whether the probe's reply was taken for "yes" and the
        TLS handshake done.
    @ivar probe_reply: the reply to the probe, as received.
    """

    def __init__(
        self, address: tuple[str, int], auth_name: str | None = None, opt: bool = True,
        timeout: float = 3.0,
    ) -> None:
        """
        @param auth_name: the upstream's C{~NAME}: sent as SNI, not checked.
        @param opt: C{False} for C{-b 512}, which leaves the OPT out.
        """
        self.auth_name = auth_name
        self.opt = opt
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(address, timeout=timeout)
        self.upgraded = False
        self.probe_reply = b""

    def starttls(self, ident: int | None = None) -> bool:
        """
        Send the probe, wait for its reply and, if getdns takes it for "yes",
        do the TLS handshake.

        @return: whether the connection is now TLS.
        """
        ident = new_id() if ident is None else ident
        self.sock.sendall(starttls_request(ident, self.opt))
        self.probe_reply = read_reply(self.sock, ident)
        if not is_starttls_response(self.probe_reply):
            return False
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_ciphers("DEFAULT")
        assert isinstance(self.sock, socket.socket)
        self.sock = context.wrap_socket(self.sock, server_hostname=self.auth_name)
        self.upgraded = True
        return True

    def ask(self, name: str, qtype: int, qclass: int = IN, ident: int | None = None) -> bytes:
        """
        One query on this connection, inside TLS or in clear as it now is,
        and its reply.
        """
        ident = new_id() if ident is None else ident
        self.sock.sendall(query(ident, wire_name(name), qtype, qclass, self.opt))
        return read_reply(self.sock, ident)

    def close(self) -> None:
        self.sock.close()
