# -*- test-case-name: tests.transport.test_upgrade -*-
"""
The TO-bit upgrade of a TCP/53 connection to TLS, from
draft-ietf-dprive-start-tls-for-dns-01: its bytes, and which first query
upgrades under which policy.  What a connection does about it, from its
first query to TLS, is L{dnstls.transport.starttls}'s state machine.

The bytes
=========

TO ("TLS OK") is the EDNS header flag right after DO: mask C{0x4000} of the
16-bit EDNS flags, which sit in the low half of the OPT record's TTL.  A
client asks for the upgrade with its first query on a new TCP/53
connection; the recommended first query is the probe C{STARTTLS. CH TXT}
with RD=0.  RD is not looked at: a probe with RD=1 upgrades too (getdns
sets it, see below).  On the wire, with ID 0x1234::

    00 25                 length 37
    12 34 00 00           ID, flags (QR=0, opcode QUERY, RD=0)
    00 01 00 00 00 00 00 01   QDCOUNT 1, ARCOUNT 1
    08 53 54 41 52 54 54 4c 53 00   "STARTTLS."
    00 10 00 03           QTYPE TXT (16), QCLASS CH (3)
    00 00 29 04 d0        OPT: root owner, type 41, payload 1232
    00 00 40 00           extended RCODE 0, version 0, flags DO=0 TO=1
    00 00                 no options

The server answers that query in clear text with the ordinary length
prefix, never padded.  To the probe it answers RCODE 0 and a TXT record
C{"STARTTLS"} with TO=1 in its OPT when it upgrades, or C{"NO_TLS"} with
TO=0 when it does not.  After a TO=1 reply the server's next bytes are its
side of a TLS handshake; every clear-text byte the client sent after its
first query is discarded, never answered.  After a TO=0 reply the
connection stays clear text and TO is ignored from then on.  On UDP, TO in
a query means nothing.

Policies
========

  - C{probe} (the default): upgrade only when the first query is the probe
    with TO=1.  RFC 9824 gave bit 0x4000 to CO (Compact Answers OK), so a
    modern resolver's ordinary TCP query may carry it; no CO client sends
    the probe.
  - C{any}: upgrade on any first query with TO=1 (the draft read
    literally); its normal answer carries TO=1.
  - C{off}: never upgrade; every reply has TO=0.

The probe without TO (C{--starttls-legacy-probe})
=================================================

The one client the draft's implementation status names, getdns 0.5.1
(2015, the last release with its STARTTLS transport: C{getdns_query -s -R}
or C{-l S}), never sets TO ("TODO[TLS]: TO BIT" in C{src/stub.c}
C{create_starttls_request}).  Its probe has RD=1 (every getdns query does,
C{src/request-internal.c} C{network_req_init}) and, with the default
settings, an OPT whose payload it rewrites to 65535 for TCP; with ID
0xa0c7 it writes, in one call::

    00 25                 length 37
    a0 c7 01 00           ID, flags (QR=0, opcode QUERY, RD=1)
    00 01 00 00 00 00 00 01   QDCOUNT 1, ARCOUNT 1
    08 53 54 41 52 54 54 4c 53 00   "STARTTLS."
    00 10 00 03           QTYPE TXT (16), QCLASS CH (3)
    00 00 29 ff ff        OPT: root owner, type 41, payload 65535
    00 00 00 00           extended RCODE 0, version 0, flags DO=0 TO=0
    00 00                 no options

(C{getdns_query -b 512} drops the OPT: length 26, ARCOUNT 0.)  It starts
TLS when the reply (C{is_starttls_response}) has RCODE NOERROR in the
header, ANCOUNT 1, and a first TXT in the answer section whose owner is
the query name and whose RDATA, read as a domain name from its first
octet on (the first string's length taken for a label's, a compression
pointer followed) and past the RDATA into whatever follows, is that name
too (labels compared without regard to case).  TXT C{"STARTTLS"} is
C{08 STARTTLS}: the name ends only at the next zero octet, which is the
root owner of the OPT after it; without an OPT the reply ends there and
getdns reads past its end.  So the willing answer to a probe without OPT
carries a second, empty string, C{"STARTTLS" ""}, whose length octet 0
ends the name inside the record.  Any other answer (C{"NO_TLS"})
leaves getdns in clear text on the same connection, or failing if TCP is
not among its transports.

With the switch, under C{probe} or C{any}, a first query that is the
probe without TO (with or without an OPT of version 0, RD as the client
likes) upgrades as the probe with TO does, and TO=1 goes in the reply's
OPT when there is one.  No CO client sends the probe, with TO or without,
so the switch leaves RFC 9824 alone; it is off by default because a
client that asks the probe without wanting TLS (C{dig STARTTLS CH TXT
+tcp}) would get its answer and then a server that takes whatever it
sends next for a TLS handshake.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator

from dnstls.transport.limits import DEFAULT_TLS_IDLE_TIMEOUT

#: The TO bit in the EDNS flags.
TO = 0x4000
#: The probe's name.
PROBE_NAME = dns.name.from_text("STARTTLS.")
#: The TXT answers to the probe.
WILLING = "STARTTLS"
UNWILLING = "NO_TLS"
#: The probe's question on the wire, lower-cased: right after the header,
#: where no compression pointer can be, C{STARTTLS.} then TXT and CH.
_PROBE_QUESTION = b"\x08starttls\x00\x00\x10\x00\x03"


class UpgradePolicy(enum.Enum):
    """
    When a TCP/53 connection is upgraded to TLS.
    """

    OFF = "off"
    PROBE = "probe"
    ANY = "any"


def is_probe(query: dns.message.Message) -> bool:
    """
    Whether C{query} asks C{STARTTLS. CH TXT}.
    """
    if len(query.question) != 1:
        return False
    question = query.question[0]
    return (
        question.name == PROBE_NAME
        and question.rdclass == dns.rdataclass.CH
        and question.rdtype == dns.rdatatype.TXT
    )


def asks_upgrade(query: dns.message.Message) -> bool:
    """
    Whether C{query} carries an EDNS version 0 OPT with TO set.
    """
    return query.edns == 0 and bool(query.ednsflags & TO)


def should_upgrade(policy: UpgradePolicy, wire: bytes, legacy_probe: bool = False) -> bool:
    """
    Whether the first query C{wire} of a TCP/53 connection upgrades it under
    C{policy}.  A message that does not parse as a single-question QUERY
    (QR=0) never does, nor one without an OPT of version 0 with TO=1
    unless C{legacy_probe} lets the probe without TO upgrade too.
    """
    if policy is UpgradePolicy.OFF:
        return False
    if policy is UpgradePolicy.PROBE and wire[12:26].lower() != _PROBE_QUESTION:
        # only the probe upgrades: an ordinary first query is turned down
        # from its bytes, and parsed once, by the handler
        return False
    try:
        query = dns.message.from_wire(wire)
    except Exception:
        return False
    if query.flags & dns.flags.QR or query.opcode() != dns.opcode.QUERY:
        return False
    if len(query.question) != 1:
        return False
    if not asks_upgrade(query):
        return legacy_probe and query.edns <= 0 and is_probe(query)
    return policy is UpgradePolicy.ANY or is_probe(query)


@dataclass(frozen=True)
class Upgrade:
    """
    How a TCP/53 listener upgrades connections to TLS.

    @ivar policy: when to upgrade.
    @ivar tls: the TLS policy, the same object the TLS port uses.
    @ivar idle_timeout: the idle timeout once upgraded.
    @ivar legacy_probe: the probe without TO upgrades too, as getdns 0.5.1
        sends it (C{--starttls-legacy-probe}, see L{dnstls.transport.upgrade}).
    """

    policy: UpgradePolicy
    tls: IOpenSSLServerConnectionCreator
    idle_timeout: float = DEFAULT_TLS_IDLE_TIMEOUT
    legacy_probe: bool = False
