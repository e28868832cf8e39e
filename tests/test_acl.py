"""
Who may recurse: L{dnstls.acl.AccessList} and C{--allow-recursion}.
"""

from __future__ import annotations

import pytest

from dnstls.acl import AccessList, parse_network
from dnstls.tap import Options


def test_default_allows_loopback_only() -> None:
    """By default only 127.0.0.0/8 and ::1 may recurse."""
    acl = AccessList()
    assert acl.allows("127.0.0.1")
    assert acl.allows("127.53.1.2")
    assert acl.allows("::1")
    assert not acl.allows("192.0.2.1")
    assert not acl.allows("2001:db8::1")
    assert not acl.allows("::2")


def test_networks_given_replace_the_default() -> None:
    """Given networks, only clients inside them may recurse, loopback included."""
    acl = AccessList(["10.0.0.0/8", "2001:db8::/32"])
    assert acl.allows("10.200.0.1")
    assert acl.allows("2001:db8:1::5")
    assert not acl.allows("127.0.0.1")
    assert not acl.allows("::1")


def test_mapped_and_scoped_addresses() -> None:
    """An IPv4-mapped IPv6 client counts as its IPv4 address, and an IPv6 zone is ignored."""
    acl = AccessList(["127.0.0.0/8", "fe80::/10"])
    assert acl.allows("::ffff:127.0.0.1")
    assert acl.allows("fe80::1%eth0")
    assert not acl.allows("::ffff:192.0.2.1")


def test_not_an_address_is_not_allowed() -> None:
    """A peer that is not an IP address (a UNIX socket, say) never recurses."""
    assert not AccessList().allows("")
    assert not AccessList().allows("localhost")


def test_single_address_and_host_bits() -> None:
    """A bare address is a /32 or /128, and host bits below the prefix are ignored."""
    assert str(parse_network("192.0.2.7")) == "192.0.2.7/32"
    assert str(parse_network("10.1.2.3/8")) == "10.0.0.0/8"
    with pytest.raises(ValueError, match="ADDRESS/PREFIX"):
        parse_network("10.0.0.0/33")


def test_option_is_repeatable_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    """--allow-recursion takes several networks and rejects a malformed one with exit status 2."""
    options = Options()
    options.parseOptions(["--allow-recursion", "10.0.0.0/8", "--allow-recursion", "::1"])
    assert [str(n) for n in options["allow-recursion"]] == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(SystemExit) as exit:
        Options().parseOptions(["--allow-recursion", "ten"])
    assert exit.value.code == 2
    assert "--allow-recursion" in capsys.readouterr().err
