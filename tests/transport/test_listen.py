"""
Listening addresses: L{dnstls.transport.listen.parse_address} and
L{dnstls.transport.listen.bind_udp_and_tcp}, on loopback.
"""

from __future__ import annotations

import errno
import socket

import pytest

import dnstls.transport.listen
from dnstls.errors import StartupError
from dnstls.transport.listen import Address, bind_udp_and_tcp, bound_address, parse_address
from tests.support import free_port


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("127.0.0.1:53", "127.0.0.1", 53, "127.0.0.1:53"),
        ("0.0.0.0:0", "0.0.0.0", 0, "0.0.0.0:0"),
        ("192.0.2.1:65535", "192.0.2.1", 65535, "192.0.2.1:65535"),
        ("[::1]:5353", "::1", 5353, "[::1]:5353"),
        ("[::]:53", "::", 53, "[::]:53"),
        ("[2001:DB8:0::1]:853", "2001:db8::1", 853, "[2001:db8::1]:853"),
        ("[::ffff:127.0.0.1]:53", "::ffff:7f00:1", 53, "[::ffff:7f00:1]:53"),
    ],
)
def test_parse_good(text: str, host: str, port: int, shown: str) -> None:
    """A good HOST:PORT parses to its address, normalised, and prints the way the log shows it."""
    address = parse_address(text)
    assert address == Address(host, port)
    assert str(address) == shown
    assert address.family == (socket.AF_INET6 if ":" in host else socket.AF_INET)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("localhost:53", ["'localhost' is not an IP address"]),
        ("ns1.example.com:53", ["not an IP address"]),
        ("256.0.0.1:53", ["not an IP address"]),
        ("127.0.0.1", ["HOST:PORT"]),
        (":53", ["HOST:PORT"]),
        ("::1:53", ["brackets", "[::1]:53"]),
        ("::1", ["brackets", "[::1]:PORT"]),
        ("2001:db8::1", ["brackets", "[2001:db8::1]:PORT"]),
        ("[::1]", ["[IPV6]:PORT"]),
        ("[::1]53", ["[IPV6]:PORT"]),
        ("[::1:53", ["[IPV6]:PORT"]),
        ("[127.0.0.1]:53", ["only an IPv6 address goes in brackets"]),
        ("[]:53", ["only an IPv6 address goes in brackets"]),
        ("[localhost]:53", ["only an IPv6 address goes in brackets"]),
        ("127.0.0.1:", ["port", "0 to 65535"]),
        ("127.0.0.1:65536", ["port", "0 to 65535"]),
        ("127.0.0.1:-1", ["port", "0 to 65535"]),
        ("127.0.0.1:domain", ["port", "0 to 65535"]),
        ("127.0.0.1:\u0665\u0663", ["port", "0 to 65535"]),
        ("127.0.0.1: 53", ["port", "0 to 65535"]),
        ("[::1]:99999", ["port", "0 to 65535"]),
    ],
)
def test_parse_bad(text: str, words: list[str]) -> None:
    """A bad HOST:PORT is refused with a one-line message that quotes it and says what is wrong."""
    with pytest.raises(ValueError) as caught:
        parse_address(text)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(repr(text))
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("host", "family"),
    [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)],
    ids=["ipv4", "ipv6"],
)
def test_port_zero_shared(host: str, family: int) -> None:
    """With port 0 the UDP and the TCP socket get one free port number, and both work."""
    udp, tcp = bind_udp_and_tcp(Address(host, 0))
    with udp, tcp:
        port = udp.getsockname()[1]
        assert port != 0
        assert tcp.getsockname()[1] == port
        assert udp.type == socket.SOCK_DGRAM and tcp.type == socket.SOCK_STREAM
        assert udp.family == tcp.family == family
        with socket.socket(family, socket.SOCK_DGRAM) as client:
            client.sendto(b"ping", (host, port))
            udp.settimeout(2)
            assert udp.recvfrom(16)[0] == b"ping"
        with socket.create_connection((host, port), timeout=2):
            pass


def test_explicit_port() -> None:
    """An explicit port is bound for both UDP and TCP."""
    udp, tcp = bind_udp_and_tcp(Address("127.0.0.1", 0))
    port = udp.getsockname()[1]
    udp.close()
    tcp.close()
    udp, tcp = bind_udp_and_tcp(Address("127.0.0.1", port))
    with udp, tcp:
        assert udp.getsockname()[1] == tcp.getsockname()[1] == port


def test_port_zero_retries_when_udp_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """With port 0, a TCP port whose UDP twin is taken is given up for another one."""
    real_bind = dnstls.transport.listen._bind
    refused: list[int] = []

    def bind(
        address: Address, kind: socket.SocketKind, port: int, reuse_port: bool = False
    ) -> socket.socket:
        if kind == socket.SOCK_DGRAM and not refused:
            refused.append(port)
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return real_bind(address, kind, port, reuse_port)

    monkeypatch.setattr(dnstls.transport.listen, "_bind", bind)
    udp, tcp = bind_udp_and_tcp(Address("127.0.0.1", 0))
    with udp, tcp:
        assert refused
        assert udp.getsockname()[1] == tcp.getsockname()[1] != 0


def test_tcp_port_in_use() -> None:
    """A port held by another TCP listener gives one line naming tcp, the address and the reason."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StartupError) as caught:
            bind_udp_and_tcp(Address("127.0.0.1", port))
    assert str(caught.value) == f"cannot listen on tcp 127.0.0.1:{port}: address already in use"


@pytest.mark.parametrize("reuse", [False, True], ids=["plain", "so-reuseaddr"])
def test_udp_port_in_use(reuse: bool) -> None:
    """
    A port held by another UDP socket, even one with SO_REUSEADDR, gives one
    line naming udp, and frees the TCP port.
    """
    with socket.socket(type=socket.SOCK_DGRAM) as busy:
        if reuse:
            busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # A port free for TCP too, so that the UDP half is the one refused.
        port = free_port()
        busy.bind(("127.0.0.1", port))
        with pytest.raises(StartupError) as caught:
            bind_udp_and_tcp(Address("127.0.0.1", port))
    assert str(caught.value) == f"cannot listen on udp 127.0.0.1:{port}: address already in use"
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def test_ipv6_port_in_use() -> None:
    """A port in use on ::1 is reported with the address in brackets."""
    with socket.socket(socket.AF_INET6) as busy:
        busy.bind(("::1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StartupError) as caught:
            bind_udp_and_tcp(Address("::1", port))
    assert str(caught.value) == f"cannot listen on tcp [::1]:{port}: address already in use"


def test_address_not_on_this_machine() -> None:
    """An address no interface has gives one line saying so."""
    with pytest.raises(StartupError) as caught:
        bind_udp_and_tcp(Address("192.0.2.1", 0))
    assert str(caught.value) == "cannot listen on tcp 192.0.2.1:0: no such address on this machine"


def test_ipv6_wildcard_beside_ipv4_wildcard() -> None:
    """The IPv6 wildcard binds IPv6 only, so the IPv4 wildcard can take the same port beside it."""
    udp6, tcp6 = bind_udp_and_tcp(Address("::", 0))
    with udp6, tcp6:
        port = udp6.getsockname()[1]
        udp4, tcp4 = bind_udp_and_tcp(Address("0.0.0.0", port))
        with udp4, tcp4:
            assert udp4.getsockname()[1] == port


def test_reuse_port_shares_a_port() -> None:
    """Sockets bound for --workers share one UDP and TCP port (its port 0 resolved once)."""
    udp, tcp = bind_udp_and_tcp(Address("127.0.0.1", 0), reuse_port=True)
    with udp, tcp:
        address = bound_address(tcp)
        assert address.port != 0
        udp2, tcp2 = bind_udp_and_tcp(address, reuse_port=True)
        with udp2, tcp2:
            assert bound_address(udp2) == bound_address(tcp2) == address
        with pytest.raises(StartupError):
            bind_udp_and_tcp(address)
