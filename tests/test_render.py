"""
Tests for L{dnstls.render}: rendering a response within a size limit.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rrset

from dnstls.render import render


def response_with(
    answer: int = 1, additional: int = 0, edns: bool = True
) -> dns.message.Message:
    """
    A response for example.test A with C{answer} A records and C{additional}
    AAAA RRsets at distinct long names.
    """
    query = dns.message.make_query("example.test.", "A", use_edns=0 if edns else False)
    response = dns.message.make_response(query)
    rrset = dns.rrset.from_text_list(
        "example.test.", 300, "IN", "A", [f"192.0.2.{i}" for i in range(1, answer + 1)]
    )
    response.answer = [rrset]
    response.additional = [
        dns.rrset.from_text(f"host-with-a-long-name-{i}.example.test.", 300, "IN", "AAAA", f"2001:db8::{i}")
        for i in range(additional)
    ]
    return response


def test_fits_unchanged() -> None:
    """A response under the limit is rendered whole, without TC."""
    wire = render(response_with(answer=3, additional=2), 512)
    reply = dns.message.from_wire(wire)
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 3
    assert len(reply.additional) == 2


def test_optional_additional_dropped_without_tc() -> None:
    """Additional RRsets that do not fit are left out and TC stays clear (RFC 2181 section 9)."""
    wire = render(response_with(answer=1, additional=20), 512)
    reply = dns.message.from_wire(wire)
    assert len(wire) <= 512
    assert not reply.flags & dns.flags.TC
    assert 0 < len(reply.additional) < 20
    assert reply.edns == 0


def test_required_additional_sets_tc() -> None:
    """Required glue that does not fit gives the minimal truncated reply (RFC 9471)."""
    wire = render(response_with(answer=1, additional=20), 512, required=20)
    reply = dns.message.from_wire(wire)
    assert reply.flags & dns.flags.TC
    assert not reply.answer and not reply.additional
    assert reply.edns == 0


def test_answer_too_big_minimal_truncated_reply_keeps_opt() -> None:
    """An answer that does not fit gives header, question and OPT with TC=1."""
    wire = render(response_with(answer=60), 512)
    reply = dns.message.from_wire(wire)
    assert len(wire) <= 512
    assert reply.flags & dns.flags.TC
    assert not reply.answer
    assert len(reply.question) == 1
    assert reply.edns == 0


def test_truncation_without_edns() -> None:
    """Without EDNS the truncated reply has no OPT either."""
    reply = dns.message.from_wire(render(response_with(answer=60, edns=False), 512))
    assert reply.flags & dns.flags.TC
    assert reply.edns == -1
