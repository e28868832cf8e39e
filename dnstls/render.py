# -*- test-case-name: tests.test_render -*-
"""
Rendering a response within a size limit, truncating the way RFC 1035,
RFC 2181 section 9 and RFC 9471 ask.

The answer and authority sections must fit whole, and so must the glue a
referral requires; if they do not, the reply is the minimal truncated one:
header, question and OPT, with TC set.  Other additional data is added while
it fits, and leaving it out never sets TC.
"""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.renderer


def render(response: dns.message.Message, max_size: int, required: int = 0) -> bytes:
    """
    Render C{response} in at most C{max_size} octets.

    @param required: how many RRsets at the start of the additional section
        cannot be left out without setting TC.
    @return: the wire form, truncated with TC=1 if the mandatory sections do
        not fit.
    """
    try:
        return _render(response, max_size, required)
    except dns.exception.TooBig:
        pass
    response.flags |= dns.flags.TC
    response.answer = []
    response.authority = []
    response.additional = []
    return _render(response, max_size, 0)


def _render(response: dns.message.Message, max_size: int, required: int) -> bytes:
    """
    Render, adding optional additional RRsets while they fit.

    @raise dns.exception.TooBig: if a mandatory part does not fit.
    """
    renderer = dns.renderer.Renderer(response.id, response.flags, max_size, None)
    opt_reserve = response._compute_opt_reserve()
    renderer.reserve(opt_reserve)
    for rrset in response.question:
        renderer.add_question(rrset.name, rrset.rdtype, rrset.rdclass)
    for rrset in response.answer:
        renderer.add_rrset(dns.renderer.ANSWER, rrset)
    for rrset in response.authority:
        renderer.add_rrset(dns.renderer.AUTHORITY, rrset)
    for index, rrset in enumerate(response.additional):
        try:
            renderer.add_rrset(dns.renderer.ADDITIONAL, rrset)
        except dns.exception.TooBig:
            if index < required:
                raise
            break
    renderer.release_reserved()
    if response.opt is not None:
        renderer.add_opt(response.opt, response.pad, opt_reserve, 0)
    renderer.write_header()
    wire: bytes = renderer.get_wire()
    return wire
