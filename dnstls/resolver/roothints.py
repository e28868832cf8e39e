# -*- test-case-name: tests.resolver.test_roothints -*-
"""
Root hints: the names and addresses of the root name servers an iterative
resolver starts from (C{--root-hints FILE}; IANA's C{named.root}, shipped as
C{dnstls/root.hints}, by default).

The file is master-file text: NS records at the root, and an A or AAAA
record for each of their names, with or without the class column (IANA's
C{named.root} has none; C{dig . NS} output and Unbound's and BIND's hint
files write C{IN}).  Nothing is sent anywhere when it is
loaded; the hints are only used when a client asks a question: the
iterator then primes from them (RFC 8109, L{dnstls.resolver.iterate}), and uses
them as they are only while priming fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import dns.exception
import dns.name
import dns.rdatatype
import dns.zonefile


@dataclass(frozen=True)
class RootHints:
    """
    The root name servers.

    @ivar names: the root's NS names, in the order of the file.
    @ivar addresses: each name with its addresses (IPv4 and IPv6), in the
        order of the file.
    """

    names: tuple[dns.name.Name, ...]
    addresses: tuple[tuple[dns.name.Name, tuple[str, ...]], ...]

    def addresses_of(self, name: dns.name.Name) -> tuple[str, ...]:
        """
        The addresses the hints give for C{name}, or none.
        """
        for owner, found in self.addresses:
            if owner == name:
                return found
        return ()


def default_root_hints_path() -> Path:
    """
    The shipped copy of IANA's root hints (C{named.root}).
    """
    return Path(str(resources.files("dnstls.resolver").joinpath("root.hints")))


def parse_root_hints(text: str, source: str = "<root hints>") -> RootHints:
    """
    Root hints from master-file C{text}.

    @raise ValueError: one line, starting with C{source}, saying what is
        wrong: unparsable text, no NS at the root, a record that is not the
        root's NS or an address, or a name server without an address.
    """
    try:
        # rdclass=None: a class column may be written, and must then be IN
        rrsets = dns.zonefile.read_rrsets(
            text, origin=dns.name.root, relativize=False, default_ttl=3600000, rdclass=None
        )
    except (dns.exception.DNSException, ValueError) as e:
        detail = " ".join(str(e).split()).replace("<input>:", "line ", 1)
        detail = detail.replace("RR class is not zone's class", "class is not IN")
        raise ValueError(f"{source}: not a root hints file: {detail}") from None
    names: list[dns.name.Name] = []
    addresses: dict[dns.name.Name, list[str]] = {}
    for rrset in rrsets:
        if rrset.rdtype == dns.rdatatype.NS and rrset.name == dns.name.root:
            names.extend(r.target for r in rrset if r.target not in names)
        elif rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            known = addresses.setdefault(rrset.name, [])
            known.extend(r.address for r in rrset if r.address not in known)
        else:
            raise ValueError(
                f"{source}: {rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} does not belong in "
                "root hints (only NS at the root and A/AAAA of their names)"
            )
    if not names:
        raise ValueError(f"{source}: no NS records for the root")
    bare = [n for n in names if not addresses.get(n)]
    if bare:
        raise ValueError(f"{source}: no address for the root server {bare[0]}")
    return RootHints(
        tuple(names), tuple((n, tuple(addresses[n])) for n in names)
    )


def load_root_hints(path: str | os.PathLike[str] | None = None) -> RootHints:
    """
    Read root hints from the file at C{path} (the shipped IANA file by
    default).

    @raise ValueError: one line naming the file, if it cannot be read or is
        not root hints.
    """
    source = Path(path) if path is not None else default_root_hints_path()
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ValueError(f"{source}: cannot read root hints: {reason}") from None
    return parse_root_hints(text, str(source))
