"""
Tests for L{dnstls.transport.handdown}: the sockets a C{--workers}
supervisor binds for its workers, a worker adopting them, and the TLS
credentials handed down.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from dnstls.errors import StartupError
from dnstls.server import CredentialSources
from dnstls.transport.handdown import (
    INHERIT_ENVIRONMENT,
    PARENT_ENVIRONMENT,
    InheritedSockets,
    bind_for_workers,
    decode_credentials,
    encode_credentials,
    hand_down,
)
from dnstls.transport.listen import Address
from tests.certs import make_ca, make_leaf


def test_bind_for_workers_shares_one_port() -> None:
    """Every worker gets its own UDP, TCP and TLS sockets, all of one address on the port the
    first got."""
    shares = bind_for_workers([Address("127.0.0.1", 0)], [Address("127.0.0.1", 0)], 3)
    try:
        assert [[kind for kind, _ in share] for share in shares] == [["udp", "tcp", "tls"]] * 3
        for column in range(3):
            names = {share[column][1].getsockname() for share in shares}
            assert len(names) == 1
            assert len({share[column][1].fileno() for share in shares}) == 3
    finally:
        for share in shares:
            for _, sock in share:
                sock.close()


def test_inherited_sockets_checked() -> None:
    """A worker adopts the descriptors named in its environment, and refuses one that is not
    the socket its options expect."""
    [[(_, udp), (_, tcp)]] = bind_for_workers([Address("127.0.0.1", 0)], [], 1)
    port = udp.getsockname()[1]
    with udp, tcp:
        environ = {INHERIT_ENVIRONMENT: f"2 udp={udp.fileno()},tcp={tcp.fileno()}"}
        inherited = InheritedSockets.from_environment(environ)
        assert inherited is not None and inherited.number == 2
        got_udp, got_tcp = inherited.udp_and_tcp(Address("127.0.0.1", port))
        assert (got_udp.type, got_tcp.type) == (socket.SOCK_DGRAM, socket.SOCK_STREAM)
        assert got_udp.getsockname() == ("127.0.0.1", port)
        got_udp.detach()
        got_tcp.detach()
        # a refused descriptor is closed: give it copies
        swapped = InheritedSockets(1, [("udp", os.dup(tcp.fileno()))])
        with pytest.raises(StartupError, match="is not udp"):
            swapped.udp_and_tcp(Address("127.0.0.1", 0))
        elsewhere = InheritedSockets(1, [("udp", os.dup(udp.fileno()))])
        with pytest.raises(StartupError, match="is not udp"):
            elsewhere.udp_and_tcp(Address("127.0.0.1", port + 1 if port < 65535 else 1))
    assert InheritedSockets.from_environment({}) is None
    with pytest.raises(StartupError):
        InheritedSockets.from_environment({INHERIT_ENVIRONMENT: "2 udp=x"})


def test_credentials_round_trip(tmp_path: Path) -> None:
    """The certificates and keys handed down to workers come back as they were read."""
    leaf = make_leaf(make_ca(tmp_path), tmp_path, ("dns.workers.test",), kind="rsa")
    [original] = CredentialSources(((str(leaf.cert), str(leaf.key_path)),), tmp_path).load()
    [copy] = decode_credentials(encode_credentials([original]))
    assert copy.chain == original.chain
    assert copy.pin == original.pin
    assert copy.source == original.source
    assert copy.key.private_numbers() == original.key.private_numbers()


def test_hand_down_names_what_it_hands() -> None:
    """A worker is handed its sockets from descriptor 3 on, then the credentials' descriptor,
    and an environment that InheritedSockets reads back as those."""
    [[(_, udp), (_, tcp)]] = bind_for_workers([Address("127.0.0.1", 0)], [], 1)
    with udp, tcp:
        fds, environment = hand_down(2, [("udp", udp), ("tcp", tcp)], 9)
        assert fds == {0: "w", 1: "r", 2: "r", 3: udp.fileno(), 4: tcp.fileno(), 5: 9}
        assert environment[INHERIT_ENVIRONMENT] == "2 udp=3,tcp=4,pem=5"
        assert environment[PARENT_ENVIRONMENT] == str(os.getpid())
        inherited = InheritedSockets.from_environment(environment)
        assert inherited is not None and inherited.number == 2
