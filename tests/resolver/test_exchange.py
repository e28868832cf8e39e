"""
Tests for L{dnstls.resolver.exchange}, the upstream exchange that
forwarding and iteration share: which replies count, the timeout, and the
endpoint for an address's family.  Its UDP and TCP exchanges are exercised
on real sockets by the forwarding and iteration tests.
"""

from __future__ import annotations

import dns.message
import dns.name
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from dnstls.resolver.exchange import Timeout, matching_reply, tcp_endpoint, within


def test_reply_must_match_question() -> None:
    """An upstream reply with another ID, name, type or class is ignored; a name in another case is not."""
    query = dns.message.make_query("www.example.test", "A")
    good = dns.message.make_response(query)
    assert matching_reply(query, good.to_wire()) is not None
    other_case = dns.message.make_response(query)
    other_case.question[0].name = dns.name.from_text("WWW.EXAMPLE.TEST.")
    assert matching_reply(query, other_case.to_wire()) is not None
    wrong_id = dns.message.make_response(query)
    wrong_id.id = (query.id + 1) % 0x10000
    assert matching_reply(query, wrong_id.to_wire()) is None
    for name, rdtype, rdclass in [("www.example.org", "A", "IN"), ("www.example.test", "AAAA", "IN"),
                                  ("www.example.test", "A", "CH")]:
        other = dns.message.make_response(dns.message.make_query(name, rdtype, rdclass))
        other.id = query.id
        assert matching_reply(query, other.to_wire()) is None
    assert matching_reply(query, query.to_wire()) is None  # QR=0
    assert matching_reply(query, b"\x00") is None



def waiting_within(clock: Clock) -> tuple[Deferred[int], list[object]]:
    """Something waited for within 2 s on C{clock}, and the list what L{within} gives goes to."""
    waiting: Deferred[int] = Deferred()
    outcomes: list[object] = []
    ensureDeferred(within(clock, 2.0, waiting)).addBoth(outcomes.append)
    return waiting, outcomes


def test_no_reply_in_time_is_a_timeout() -> None:
    """A reply not there after the timeout is a Timeout, and what was waited for is cancelled."""
    clock = Clock()
    waiting, outcomes = waiting_within(clock)
    clock.advance(1.9)
    assert outcomes == [] and not waiting.called
    clock.advance(0.1)
    assert len(outcomes) == 1 and isinstance(outcomes[0], Failure) and outcomes[0].check(Timeout)
    assert waiting.called and clock.getDelayedCalls() == []


def test_reply_in_time_stops_the_timer() -> None:
    """A reply within the timeout is returned and leaves no timer behind."""
    clock = Clock()
    waiting, outcomes = waiting_within(clock)
    waiting.callback(7)
    assert outcomes == [7] and clock.getDelayedCalls() == []


def test_tcp_endpoint_for_the_address_family() -> None:
    """An IPv6 address gets a TCP6 endpoint and an IPv4 one a TCP4 endpoint."""
    assert isinstance(tcp_endpoint(Clock(), "2001:db8::1", 53, 1.0), TCP6ClientEndpoint)
    assert isinstance(tcp_endpoint(Clock(), "192.0.2.1", 53, 1.0), TCP4ClientEndpoint)
