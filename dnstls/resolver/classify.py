# -*- test-case-name: tests.resolver.test_classify -*-
"""
What an authoritative server's reply says, for the iterative resolver
(L{dnstls.resolver.iterate}): an answer, NXDOMAIN, NODATA, a referral
further down, or nothing usable (L{classify}); and how CNAME and DNAME
chains run through an answer section (L{next_in_chain}, L{chain_names}),
with what a final answer or a negative one carries (L{answering},
L{signatures}, L{negative}).

A reply is lame when it is an upward or sideways referral (AA set or
not), an answer or NODATA without AA, or a referral for DS to the DS
owner itself, which the parent must answer (RFC 4035 3.1.4.1).  A
YXDOMAIN is an answer only with a DNAME on the chain from the name asked
whose substitution makes a name too long (RFC 6672 2.2, L{overflows}).
Only records at or below the zone asked are believed (L{inside}).

These are pure functions of the reply: nothing here is remembered.
"""

from __future__ import annotations

from collections.abc import Sequence

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

_NEGATIVE_PROOF = (dns.rdatatype.SOA, dns.rdatatype.NSEC, dns.rdatatype.NSEC3)

#: A stand-in target for a DNAME substitution that makes a name too long.
TOO_LONG = dns.name.Name([b"too-long"])


class Kind:
    """
    What a usable reply is.
    """

    ANSWER = "answer"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    REFERRAL = "referral"


def classify(
    reply: dns.message.Message,
    zone: dns.name.Name,
    qname: dns.name.Name,
    qtype: int = dns.rdatatype.A,
) -> str | None:
    """
    What a server of C{zone} said about C{qname} C{qtype}: an answer (or
    YXDOMAIN with the DNAME that overflows C{qname}), NXDOMAIN, NODATA, a
    referral to a zone below C{zone} (with AA or
    without, as long as it has no SOA), or C{None} for a lame reply (an
    upward or sideways referral, an answer without AA, or a referral to
    C{qname} itself for DS, which the parent must answer: RFC 4035 3.1.4.1).
    """
    authoritative = bool(reply.flags & dns.flags.AA)
    rcode = reply.rcode()
    if rcode == dns.rcode.YXDOMAIN:
        # RFC 6672 2.2: a DNAME whose substitution overflows the name
        return Kind.ANSWER if authoritative and overflows(reply, qname) else None
    if rcode == dns.rcode.NOERROR and reply.answer:
        relevant = any(
            r.name == qname or (r.rdtype == dns.rdatatype.DNAME and qname.is_subdomain(r.name))
            for r in reply.answer
        )
        return Kind.ANSWER if relevant and authoritative else None
    cuts = [r for r in reply.authority if r.rdtype == dns.rdatatype.NS]
    # a referral, even with AA set by mistake (a NODATA would carry an SOA)
    if rcode == dns.rcode.NOERROR and cuts and not (authoritative and has_soa(reply.authority)):
        child = cuts[0].name
        if qtype == dns.rdatatype.DS and child == qname:
            return None
        if child != zone and child.is_subdomain(zone) and qname.is_subdomain(child):
            return Kind.REFERRAL
        if not authoritative or child != zone:
            # an upward or sideways referral is lame, AA set or not
            return None
    if not authoritative:
        return None
    return Kind.NXDOMAIN if rcode == dns.rcode.NXDOMAIN else Kind.NODATA


def failed(reply: dns.message.Message, qname: dns.name.Name) -> bool:
    """
    Whether C{reply} to a question for C{qname} has an error RCODE: any but
    NOERROR, NXDOMAIN and the YXDOMAIN of L{overflows}.
    """
    return reply.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and not overflows(
        reply, qname
    )


def overflows(reply: dns.message.Message, qname: dns.name.Name) -> bool:
    """
    Whether C{reply} is the YXDOMAIN of RFC 6672 2.2: a DNAME on the chain
    from C{qname} whose substitution makes a name too long.
    """
    if reply.rcode() != dns.rcode.YXDOMAIN:
        return False
    chain = chain_names(reply.answer, qname)
    return any(
        r.rdtype == dns.rdatatype.DNAME and name != r.name and name.is_subdomain(r.name)
        for r in reply.answer
        for name in chain
    )


def answering(
    answer: Sequence[dns.rrset.RRset], name: dns.name.Name, qtype: int
) -> list[dns.rrset.RRset]:
    """
    The RRsets of C{answer} that answer C{name} C{qtype} (any type but
    RRSIG for ANY); for CNAME or ANY, the DNAME the server made a CNAME
    from comes first, with them.
    """
    found = [
        r for r in answer
        if r.name == name and (
            r.rdtype == qtype or (qtype == dns.rdatatype.ANY and r.rdtype != dns.rdatatype.RRSIG)
        )
    ]
    if found and qtype in (dns.rdatatype.CNAME, dns.rdatatype.ANY):
        found = [
            r for r in answer
            if r.rdtype == dns.rdatatype.DNAME and name != r.name and name.is_subdomain(r.name)
        ][:1] + found
    return found


def next_in_chain(
    answer: Sequence[dns.rrset.RRset], current: dns.name.Name, qtype: int
) -> tuple[list[dns.rrset.RRset], dns.name.Name] | None:
    """
    The CNAME (or a DNAME and the CNAME we synthesize from it) that leads
    on from C{current}, and where it leads (L{TOO_LONG} for a DNAME whose
    substitution overflows).
    """
    if qtype != dns.rdatatype.DNAME:
        for rrset in answer:
            if (
                rrset.rdtype == dns.rdatatype.DNAME
                and current != rrset.name
                and current.is_subdomain(rrset.name)
            ):
                try:
                    target = current.relativize(rrset.name).concatenate(rrset[0].target)
                except dns.name.NameTooLong:
                    return [rrset], TOO_LONG
                cname = dns.rrset.from_text(
                    current, rrset.ttl, dns.rdataclass.IN, dns.rdatatype.CNAME, target.to_text()
                )
                return [rrset, cname], target
    if qtype != dns.rdatatype.CNAME:
        for rrset in answer:
            if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == current:
                return [rrset], rrset[0].target
    return None


def chain_names(
    answer: Sequence[dns.rrset.RRset], qname: dns.name.Name
) -> set[dns.name.Name]:
    """
    C{qname} and the names the CNAMEs and DNAMEs of C{answer} lead to from
    it.
    """
    names = {qname}
    current = qname
    for _ in range(len(answer)):
        step = next_in_chain(answer, current, dns.rdatatype.A)
        if step is None or step[1] in names:
            break
        current = step[1]
        names.add(current)
    return names


def signatures(
    section: Sequence[dns.rrset.RRset], rrsets: Sequence[dns.rrset.RRset], do: bool
) -> list[dns.rrset.RRset]:
    """
    The RRSIGs in C{section} over C{rrsets}, when the client asked with DO.
    """
    if not do:
        return []
    covered = {(r.name, r.rdtype) for r in rrsets}
    return [
        r for r in section if r.rdtype == dns.rdatatype.RRSIG and (r.name, r.covers) in covered
    ]


def inside(section: Sequence[dns.rrset.RRset], zone: dns.name.Name) -> list[dns.rrset.RRset]:
    """
    The RRsets of C{section} at or below C{zone}.
    """
    return [r for r in section if r.name.is_subdomain(zone)]


def has_soa(authority: Sequence[dns.rrset.RRset]) -> bool:
    """
    Whether C{authority} holds an SOA.
    """
    return any(r.rdtype == dns.rdatatype.SOA for r in authority)


def negative_ttl(authority: Sequence[dns.rrset.RRset]) -> int | None:
    """
    The negative TTL of RFC 2308 5: min(SOA TTL, SOA MINIMUM), or C{None}
    without an SOA.
    """
    for rrset in authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return min(int(rrset.ttl), int(rrset[0].minimum))
    return None


def negative(authority: Sequence[dns.rrset.RRset], do: bool) -> list[dns.rrset.RRset]:
    """
    What a negative answer carries: the SOA, and with DO the NSEC or NSEC3
    records and signatures.
    """
    kept = [r.copy() for r in authority if r.rdtype == dns.rdatatype.SOA]
    if do:
        proof = [r.copy() for r in authority if r.rdtype in _NEGATIVE_PROOF[1:]]
        kept += proof + [
            r.copy() for r in authority
            if r.rdtype == dns.rdatatype.RRSIG and r.covers in _NEGATIVE_PROOF
        ]
    return kept
