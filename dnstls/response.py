# -*- test-case-name: tests.test_handler -*-
"""
Building a response with dnspython: the header copied from the query, our
OPT (payload, DO, keepalive on streams, padding inside TLS, TO when an
upgrade is granted), the sections of a lookup or of a recursive answer, and
the answer to the STARTTLS probe.  L{dnstls.handler} decides which; this
module only writes it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from dnstls.context import RESPONSE_PADDING, UDP_PAYLOAD, QueryContext, Transport
from dnstls.resolver.cache import Answer
from dnstls.transport.upgrade import PROBE_NAME, TO, UNWILLING, WILLING
from dnstls.zones.authority import LookupResult, Outcome

_OUTCOME_RCODE = {
    Outcome.ANSWER: dns.rcode.NOERROR,
    Outcome.NODATA: dns.rcode.NOERROR,
    Outcome.DELEGATION: dns.rcode.NOERROR,
    Outcome.NXDOMAIN: dns.rcode.NXDOMAIN,
    Outcome.YXDOMAIN: dns.rcode.YXDOMAIN,
}


def malformed_options(query: dns.message.Message, context: QueryContext) -> bool:
    """
    Whether the query's EDNS options are malformed: on a stream, an
    edns-tcp-keepalive option with a timeout (RFC 7828 3.2.2: a client
    sends it empty, and a server MUST answer FORMERR; over UDP the option
    is ignored, as Unbound does), or more than one padding option (RFC
    7830).
    """
    padding = 0
    for option in query.options:
        if option.otype == dns.edns.OptionType.PADDING:
            padding += 1
        elif (
            option.otype == dns.edns.OptionType.KEEPALIVE
            and context.transport.is_stream
            and option.to_wire()
        ):
            return True
    return padding > 1


def readable_query(wire: bytes) -> dns.message.Message | None:
    """
    C{wire} parsed as leniently as dnspython allows, or C{None}.
    """
    try:
        return dns.message.from_wire(wire, ignore_trailing=True)
    except Exception:
        return None


def answer_probe(response: dns.message.Message, context: QueryContext) -> dns.message.Message:
    """
    The answer to C{STARTTLS. CH TXT}: RCODE 0 and TXT C{STARTTLS} when the
    connection is about to be upgraded, C{NO_TLS} otherwise (the draft's
    MUST for the probe over TCP; the same answer on every transport).
    Upgrading a probe without OPT (only C{--starttls-legacy-probe} does),
    the TXT gets a second, empty string: getdns 0.5.1 reads the RDATA as a
    name, which must end in a zero octet, and in this reply no OPT follows
    to give one (see L{dnstls.transport.upgrade}).
    """
    text = f'"{WILLING}"' if context.upgrade else f'"{UNWILLING}"'
    if context.upgrade and response.edns < 0:
        text += ' ""'
    rrset = dns.rrset.from_text(PROBE_NAME, 0, dns.rdataclass.CH, dns.rdatatype.TXT, text)
    response.answer.append(rrset)
    response.flags |= dns.flags.AA
    return response


def use_edns(
    response: dns.message.Message,
    query: dns.message.Message,
    context: QueryContext,
    advertise_to: bool = False,
    extra: Sequence[dns.edns.Option] = (),
) -> None:
    """
    Give C{response} our OPT: version 0, our payload size, the query's DO
    and no other flag; on a stream the keepalive the client asked for (RFC
    7828, never on UDP), and over TLS padding when the client padded (RFC
    7830 section 4, never in clear text).  TO is set only in the reply that
    grants an upgrade, and on UDP with C{advertise_to}.  C{extra} options
    (an Extended DNS Error) come first.
    """
    asked = {option.otype for option in query.options}
    options: list[dns.edns.Option] = list(extra)
    if (
        context.keepalive is not None
        and context.transport.is_stream
        and dns.edns.OptionType.KEEPALIVE in asked
    ):
        timeout = struct.pack("!H", max(0, min(context.keepalive, 0xFFFF)))
        options.append(dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, timeout))
    pad = 0
    if (
        context.transport is Transport.TLS
        and context.padding
        and dns.edns.OptionType.PADDING in asked
    ):
        pad = RESPONSE_PADDING
    flags = query.ednsflags & dns.flags.DO
    if context.upgrade or (advertise_to and context.transport is Transport.UDP):
        flags |= TO
    response.use_edns(0, flags, UDP_PAYLOAD, options=options, pad=pad)


def start_response(
    query: dns.message.Message,
    context: QueryContext,
    advertise_to: bool = False,
    recursion_available: bool = False,
) -> dns.message.Message:
    """
    An empty response to C{query}: its ID, opcode, RD and CD copied, RA
    when C{recursion_available}, the question as the client wrote it, and
    an OPT of our own when the query had one (see L{use_edns}).
    """
    response = dns.message.Message(id=query.id)
    response.flags = dns.flags.QR | (query.flags & (dns.flags.RD | dns.flags.CD))
    if recursion_available:
        response.flags |= dns.flags.RA
    response.set_opcode(query.opcode())
    response.question = list(query.question)
    if query.edns >= 0:
        use_edns(response, query, context, advertise_to)
    return response


def fill_recursive(
    response: dns.message.Message, query: dns.message.Message, answer: Answer
) -> None:
    """
    Copy a recursive answer into C{response}, with AD when the source
    validated it and the client asked for AD with DO or AD (RFC 6840 5.7).
    """
    response.answer = answer.answer
    response.authority = answer.authority
    response.additional = answer.additional
    response.set_rcode(answer.rcode)
    do = query.edns >= 0 and bool(query.ednsflags & dns.flags.DO)
    if answer.authenticated and (do or bool(query.flags & dns.flags.AD)):
        response.flags |= dns.flags.AD


def fill(response: dns.message.Message, result: LookupResult) -> None:
    """
    Copy a lookup's sections into C{response} and set its RCODE and AA.
    """
    response.answer = result.answer
    response.authority = result.authority
    response.additional = result.additional
    response.set_rcode(_OUTCOME_RCODE[result.outcome])
    if result.authoritative:
        response.flags |= dns.flags.AA
