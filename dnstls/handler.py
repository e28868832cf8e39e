# -*- test-case-name: tests.test_handler -*-
"""
The one place where a query becomes a response, and where every error
becomes an RCODE.

Every listener hands the raw bytes of one query to L{Handler.handle} with a
L{QueryContext} and sends back what it returns, if anything:

  - shorter than a header, or a response (QR=1): dropped, C{None};
  - an OPCODE other than QUERY: NOTIMP;
  - unparseable, or QDCOUNT other than 1, or a broken OPT, or on a stream
    an edns-tcp-keepalive option with a timeout, or two padding options:
    FORMERR;
  - a TSIG we have no key for: NOTAUTH;
  - EDNS version above 0: BADVERS;
  - a name in a zone whose file failed to load: SERVFAIL with EDE 24
    (Invalid Data), as Knot DNS answers;
  - a name outside our zones: resolved (forwarded, see L{dnstls.resolver.forward},
    or iterated) when the client may recurse, else REFUSED; SERVFAIL with
    an Extended DNS Error when no upstream answers; with RD=0 only from the
    cache, and REFUSED with EDE 20 (Not Authoritative) when it is not there;
  - a bug: SERVFAIL, and the traceback in the log.

Nothing raises out of L{Handler.handle}.  A recursive answer comes as a
Deferred; it never fails.  RA is set on every reply to a client that may
recurse, and only when recursion is on (not C{--no-recursion}).

What a query carries with it is L{dnstls.context}'s; how a response is
written, L{dnstls.response}'s.
"""

from __future__ import annotations

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from dnstls.chaos import Chaos
from dnstls.context import STREAM_LIMIT, UDP_CLASSIC, UDP_PAYLOAD, QueryContext
from dnstls.render import render
from dnstls.resolver.cache import Answer
from dnstls.resolver.recursion import ForwardError, Recursion
from dnstls.response import (
    answer_probe,
    fill,
    fill_recursive,
    malformed_options,
    readable_query,
    start_response,
    use_edns,
)
from dnstls.transport.upgrade import is_probe
from dnstls.wire import QR, Header, has_opt, parse_header
from dnstls.zones.authority import Outcome
from dnstls.zones.store import ZoneStore

_ZONE_TRANSFERS = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
#: Classes answered from the zones: IN, and ANY as Knot DNS does.
_ZONE_CLASSES = frozenset({dns.rdataclass.IN, dns.rdataclass.ANY})


class _Reply(Exception):
    """
    Raised inside the handler to answer at once with an RCODE, and an
    Extended DNS Error (RFC 8914) when the query has an OPT.
    """

    def __init__(self, rcode: dns.rcode.Rcode, ede: dns.edns.EDECode | None = None) -> None:
        super().__init__(rcode)
        self.rcode = rcode
        self.ede = ede


class _Recurse(Exception):
    """
    Raised inside the handler when the question goes upstream.
    """

    def __init__(self, response: dns.message.Message) -> None:
        super().__init__()
        self.response = response


class Handler:
    """
    Turns query bytes into response bytes from authoritative data.

    @ivar zones: the zones we answer for.
    @ivar chaos: the CHAOS identity answers.
    """

    log = Logger()

    def __init__(
        self,
        zones: ZoneStore,
        chaos: Chaos | None = None,
        advertise_to: bool = False,
        recursion: Recursion | None = None,
    ) -> None:
        """
        @param advertise_to: set TO in UDP replies to queries with an OPT,
            the draft's SHOULD for a server willing to upgrade (off by
            default: the bit is CO in RFC 9824).
        @param recursion: where names outside our zones are resolved, for
            the clients it allows; C{None} refuses them.
        """
        self.zones = zones
        self.chaos = chaos if chaos is not None else Chaos()
        self.advertise_to = advertise_to
        self.recursion = recursion

    def may_recurse(self, context: QueryContext) -> bool:
        """
        Whether the client of C{context} gets recursion (and RA=1).
        """
        return self.recursion is not None and self.recursion.allows(context.peer[0])

    def handle(self, wire: bytes, context: QueryContext) -> bytes | None | Deferred[bytes | None]:
        """
        Answer the query in C{wire}.

        @return: the response, ready to send (unframed), or C{None} to send
            nothing; a Deferred of it for a forwarded question.
        """
        header = parse_header(wire)
        if header is None or header.flags & QR:
            return None
        if header.opcode != dns.opcode.QUERY:
            return self._error(wire, header, dns.rcode.NOTIMP, context)
        try:
            query = dns.message.from_wire(wire)
        except dns.message.ShortHeader:
            return None
        except (dns.message.UnknownTSIGKey, dns.message.BadTSIG):
            return self._error(wire, header, dns.rcode.NOTAUTH, context)
        except Exception:
            return self._error(wire, header, dns.rcode.FORMERR, context)
        try:
            response, required = self._answer(query, context)
        except _Reply as reply:
            return self._error(wire, header, reply.rcode, context, reply.ede)
        except _Recurse as recurse:
            return self._recurse(query, recurse.response, context)
        except Exception:
            self.log.failure("answering {question}", question=query.question)
            return self._error(wire, header, dns.rcode.SERVFAIL, context)
        return render(response, self._limit(query, context), required)

    def _recurse(
        self, query: dns.message.Message, response: dns.message.Message, context: QueryContext
    ) -> Deferred[bytes | None]:
        """
        Resolve the question upstream and fill C{response} (which has the
        client's ID, question and OPT) with the answer; SERVFAIL with an
        Extended DNS Error when that fails.
        """
        assert self.recursion is not None
        question = query.question[0]
        do = query.edns >= 0 and bool(query.ednsflags & dns.flags.DO)
        cd = bool(query.flags & dns.flags.CD)
        resolving = self.recursion.resolve(
            question.name, question.rdtype, question.rdclass, do, cd
        )

        def answered(answer: Answer) -> bytes | None:
            fill_recursive(response, query, answer)
            return render(response, self._limit(query, context))

        def failed(failure: Failure) -> bytes | None:
            if isinstance(failure.value, ForwardError):
                code = failure.value.ede
            else:
                self.log.failure("forwarding {question}", failure, question=query.question)
                code = dns.edns.EDECode.OTHER
            response.answer, response.authority, response.additional = [], [], []
            if query.edns >= 0:
                use_edns(response, query, context, self.advertise_to, [dns.edns.EDEOption(code)])
            response.set_rcode(dns.rcode.SERVFAIL)
            return render(response, self._limit(query, context))

        return resolving.addCallbacks(answered, failed)

    def _limit(self, query: dns.message.Message, context: QueryContext) -> int:
        """
        The largest response C{query} may get on its transport (RFC 6891
        6.2.3 and 6.2.5: a payload size below 512 counts as 512).
        """
        if context.transport.is_stream:
            return STREAM_LIMIT
        if query.edns < 0:
            return UDP_CLASSIC
        return max(UDP_CLASSIC, min(query.payload, UDP_PAYLOAD))

    def _answer(
        self, query: dns.message.Message, context: QueryContext
    ) -> tuple[dns.message.Message, int]:
        """
        Build the response to a parsed query.

        @return: the response and how many additional RRsets are mandatory.
        @raise _Reply: to answer with an RCODE alone.
        """
        if len(query.question) != 1:
            raise _Reply(dns.rcode.FORMERR)
        response = start_response(query, context, self.advertise_to, self.may_recurse(context))
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return response, 0
        if malformed_options(query, context):
            raise _Reply(dns.rcode.FORMERR)
        question = query.question[0]
        qname, qtype, qclass = question.name, question.rdtype, question.rdclass
        if qclass == dns.rdataclass.CH:
            if is_probe(query):
                return answer_probe(response, context), 0
            return self._answer_chaos(response, qname, qtype), 0
        if qclass not in _ZONE_CLASSES:
            raise _Reply(dns.rcode.REFUSED)
        if qtype in _ZONE_TRANSFERS:
            # We serve no transfers; Knot DNS answers the same way when no
            # ACL allows one: NOTIMP for AXFR over UDP, NOTAUTH otherwise.
            if qtype == dns.rdatatype.AXFR and not context.transport.is_stream:
                raise _Reply(dns.rcode.NOTIMP)
            raise _Reply(dns.rcode.NOTAUTH)
        if self.zones.unavailable(qname, qtype) is not None:
            raise _Reply(dns.rcode.SERVFAIL, dns.edns.EDECode.INVALID_DATA)
        zone = self.zones.find(qname, qtype)
        if zone is None:
            if qclass == dns.rdataclass.IN and self.may_recurse(context):
                if query.flags & dns.flags.RD:
                    raise _Recurse(response)
                return self._from_cache(query, response), 0
            raise _Reply(dns.rcode.REFUSED)
        result = zone.lookup(qname, qtype)
        if (
            result.outcome is Outcome.DELEGATION
            and not result.answer
            and query.flags & dns.flags.RD
            and qclass == dns.rdataclass.IN
            and self.may_recurse(context)
        ):
            # below a cut in our zone: a client that may recurse wants the
            # answer, not our referral (BIND does the same)
            raise _Recurse(response)
        fill(response, result)
        return response, result.required

    def _from_cache(
        self, query: dns.message.Message, response: dns.message.Message
    ) -> dns.message.Message:
        """
        The answer to a query with RD=0 for a name outside our zones: what
        the cache holds, never an upstream query (as BIND does); REFUSED
        with EDE 20 (Not Authoritative, RFC 8914) when it holds nothing.
        """
        assert self.recursion is not None
        question = query.question[0]
        do = query.edns >= 0 and bool(query.ednsflags & dns.flags.DO)
        cd = bool(query.flags & dns.flags.CD)
        answer = self.recursion.cached(question.name, question.rdtype, question.rdclass, do, cd)
        if answer is None:
            raise _Reply(dns.rcode.REFUSED, dns.edns.EDECode.NOT_AUTHORITATIVE)
        fill_recursive(response, query, answer)
        return response

    def _answer_chaos(
        self, response: dns.message.Message, qname: dns.name.Name, qtype: int
    ) -> dns.message.Message:
        rrset = self.chaos.answer(qname, qtype)
        if rrset is None:
            raise _Reply(dns.rcode.REFUSED)
        response.flags |= dns.flags.AA
        response.answer.append(rrset)
        return response

    def _error(
        self,
        wire: bytes,
        header: Header,
        rcode: dns.rcode.Rcode,
        context: QueryContext,
        ede: dns.edns.EDECode | None = None,
    ) -> bytes:
        """
        A response carrying only C{rcode}, the question when it can be read,
        and an OPT when the query had one (RFC 6891 section 7), with the
        query's DO bit copied (RFC 3225 section 3), keepalive and padding
        when the OPT can be read, and C{ede} as an Extended DNS Error.

        RD and CD are copied, and RA set for a client that may recurse, for
        QUERY only: they are QUERY's bits (RFC 1035 section 4.1.1, RFC 4035
        section 3.2.2; UPDATE calls them Z, RFC 2136 section 2.2), so a reply
        to any other opcode has none of them, as NSD's has and as ISC's EDNS
        compliance test (C{opcodeflg}) wants.
        """
        try:
            question = dns.message.from_wire(wire, question_only=True).question
        except Exception:
            question = []
        response = dns.message.Message(id=header.id)
        response.flags = dns.flags.QR
        if header.opcode == dns.opcode.QUERY:
            response.flags |= header.flags & (dns.flags.RD | dns.flags.CD)
            if self.may_recurse(context):
                response.flags |= dns.flags.RA
        response.set_opcode(dns.opcode.Opcode(header.opcode))
        if len(question) == 1:
            response.question = question
        if has_opt(wire):
            query = readable_query(wire)
            if query is not None and query.edns >= 0:
                extra = [dns.edns.EDEOption(ede)] if ede is not None else []
                use_edns(response, query, context, self.advertise_to, extra)
            else:
                response.use_edns(0, 0, UDP_PAYLOAD)
        response.set_rcode(rcode)
        return render(response, STREAM_LIMIT if context.transport.is_stream else UDP_CLASSIC)
