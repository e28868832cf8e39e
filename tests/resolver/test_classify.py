"""
Tests for L{dnstls.resolver.classify}: which authoritative replies are
answers, referrals, NXDOMAIN or NODATA, and which are lame.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from dnstls.resolver.classify import classify, overflows

A = dns.rdatatype.A


def test_yxdomain_only_with_an_overflowing_dname() -> None:
    """YXDOMAIN is an answer only with a DNAME on the chain from the name; without one it is a failure."""
    long_target = ".".join(c * 63 for c in "xyz") + ".test."
    qname = dns.name.from_text("a" * 60 + ".alias.test.")
    zone = dns.name.from_text("test.")

    def reply(*records: str) -> dns.message.Message:
        message = dns.message.make_response(dns.message.make_query(qname, A))
        message.flags |= dns.flags.AA
        message.set_rcode(dns.rcode.YXDOMAIN)
        for record in records:
            name, ttl, rdtype, target = record.split()
            message.answer.append(dns.rrset.from_text(name, int(ttl), "IN", rdtype, target))
        return message

    direct = reply(f"alias.test. 300 DNAME {long_target}")
    assert overflows(direct, qname) and classify(direct, zone, qname) == "answer"
    # through a CNAME to a name below the DNAME
    other = dns.name.from_text("a" * 60 + ".other.test.")
    chained = reply(f"{other} 300 CNAME {'a' * 60}.long.test.", f"long.test. 300 DNAME {long_target}")
    assert overflows(chained, other) and classify(chained, zone, other) == "answer"
    bogus = reply()
    assert not overflows(bogus, qname) and classify(bogus, zone, qname) is None
    elsewhere = reply(f"unrelated.test. 300 DNAME {long_target}")
    assert not overflows(elsewhere, qname)


def test_lame_replies_classified() -> None:
    """Upward and sideways referrals and answers without AA are lame; a referral down is not, AA or not."""
    zone = dns.name.from_text("test.")
    qname = dns.name.from_text("www.leaf.test.")

    def reply(authority: str | None = None, answer: bool = False, aa: bool = False) -> dns.message.Message:
        message = dns.message.make_response(dns.message.make_query(qname, A))
        if aa:
            message.flags |= dns.flags.AA
        if authority is not None:
            message.authority.append(dns.rrset.from_text(authority, 300, "IN", "NS", "ns.x."))
        if answer:
            message.answer.append(dns.rrset.from_text(qname, 300, "IN", "A", "192.0.2.1"))
        return message

    assert classify(reply("leaf.test."), zone, qname) == "referral"
    assert classify(reply("."), zone, qname) is None  # upward
    assert classify(reply("test."), zone, qname) is None  # to itself
    assert classify(reply("other.test."), zone, qname) is None  # sideways
    assert classify(reply(answer=True), zone, qname) is None  # answer without AA
    assert classify(reply(answer=True, aa=True), zone, qname) == "answer"
    assert classify(reply(), zone, qname) is None  # NODATA without AA
    assert classify(reply("leaf.test.", aa=True), zone, qname) == "referral"  # AA by mistake
    assert classify(reply("test.", aa=True), zone, qname) == "nodata"
    assert classify(reply(".", aa=True), zone, qname) is None  # upward, AA set
    assert classify(reply("other.test.", aa=True), zone, qname) is None  # sideways, AA set
    # the parent answers DS: a referral to the DS owner is lame
    leaf = dns.name.from_text("leaf.test.")
    assert classify(reply("leaf.test."), zone, leaf, dns.rdatatype.DS) is None
    assert classify(reply("leaf.test."), zone, leaf, dns.rdatatype.NS) == "referral"
