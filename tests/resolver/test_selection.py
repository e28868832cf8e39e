"""
Tests for L{dnstls.resolver.selection}'s rule of which server addresses
are local and not asked.  The choice of servers through a DNS tree is
tested in L{tests.resolver.test_iterate}.
"""

from __future__ import annotations

import pytest

from dnstls.resolver.selection import local_address


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1", True), ("127.53.1.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
        ("0.0.0.0", True), ("0.1.2.3", True), ("::", True), ("224.0.0.1", True), ("ff02::1", True),
        ("255.255.255.255", True), ("240.0.0.1", True), ("not an address", True),
        ("192.0.2.1", False), ("10.0.0.1", False), ("2001:db8::1", False),
    ],
)
def test_local_addresses(address: str, local: bool) -> None:
    """Loopback, unspecified, multicast, broadcast and reserved addresses are this host's or none's."""
    assert local_address(address) is local
