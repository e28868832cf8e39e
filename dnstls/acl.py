# -*- test-case-name: tests.test_acl -*-
"""
Which clients may recurse (C{--allow-recursion CIDR}).

An open resolver is a liability, so the default is the loopback addresses
only.  A client outside the list still gets answers from our zones; for
any other name it gets REFUSED, and RA=0 on every reply.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Who may recurse when no C{--allow-recursion} is given.
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")


def parse_network(text: str) -> Network:
    """
    Parse C{ADDRESS/PREFIX}, or a single address (a /32 or /128).  Host bits
    set below the prefix are ignored, as routers do (C{10.1.2.3/8} is
    C{10.0.0.0/8}).

    @raise ValueError: with a message for the operator.
    """
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an address or ADDRESS/PREFIX") from None


class AccessList:
    """
    A set of networks a client address is checked against.
    """

    def __init__(self, networks: Iterable[Network | str] = DEFAULT_ALLOW) -> None:
        self.networks: tuple[Network, ...] = tuple(
            parse_network(n) if isinstance(n, str) else n for n in networks
        )

    def allows(self, host: str) -> bool:
        """
        Whether the client at C{host} (an IP address as the socket reports
        it, possibly with an IPv6 zone or IPv4-mapped) is in the list; a
        host that is not an address is not.
        """
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __repr__(self) -> str:
        return f"AccessList({[str(n) for n in self.networks]!r})"
