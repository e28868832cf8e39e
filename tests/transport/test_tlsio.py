"""
Tests for L{dnstls.transport.tlsio}: bulk reads and writes on OpenSSL connections
over memory BIOs give what pyOpenSSL's own methods give, through the raw
calls and through the fallback alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from OpenSSL import SSL

from dnstls.certs import load_credential
from dnstls.transport import tlsio
from dnstls.transport.tls import TLSPolicy
from tests.certs import make_ca, make_leaf
from tests.tlsmemory import handshake


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> TLSPolicy:
    """A policy serving one ECDSA certificate."""
    directory: Path = tmp_path_factory.mktemp("certs")
    leaf = make_leaf(make_ca(directory), directory)
    return TLSPolicy([load_credential(leaf.cert, leaf.key_path)])


@pytest.fixture(params=[True, False], ids=["raw", "pyopenssl"])
def raw(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """Each test once through the raw OpenSSL calls and once through pyOpenSSL's methods."""
    if request.param and not tlsio.RAW:
        pytest.fail("this pyOpenSSL lacks what the raw calls need: the fast path is off")
    monkeypatch.setattr(tlsio, "RAW", request.param)
    yield request.param


def _pair(policy: TLSPolicy) -> tuple[SSL.Connection, SSL.Connection]:
    """A client and a server connection over memory BIOs, their handshake done."""
    client = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    client.set_connect_state()
    server = policy.serverConnectionForTLS(None)
    handshake(client, server)
    return client, server


def _records(client: SSL.Connection, *messages: bytes) -> bytes:
    """The ciphertext of one record per message, as the client sends them."""
    for message in messages:
        client.send(message)
    return client.bio_read(65536)


def test_raw_calls_available() -> None:
    """With the pyOpenSSL this project installs, the fast path uses the raw OpenSSL calls."""
    assert tlsio.RAW


def test_read_all_gathers_every_record(policy: TLSPolicy, raw: bool) -> None:
    """The plaintext of several records comes in one string, in order; then reading stops, the BIO dry."""
    client, server = _pair(policy)
    tlsio.feed(server, _records(client, b"one", b"two", b"three"))
    assert tlsio.read_all(server) == (b"onetwothree", None)
    assert tlsio.read_all(server) == (b"", None)


def test_read_all_waits_for_a_whole_record(policy: TLSPolicy, raw: bool) -> None:
    """A record cut in two yields nothing until its second half arrives."""
    client, server = _pair(policy)
    wire = _records(client, b"whole", b"cut")
    tlsio.feed(server, wire[:-5])
    assert tlsio.read_all(server) == (b"whole", None)
    tlsio.feed(server, wire[-5:])
    assert tlsio.read_all(server) == (b"cut", None)


def test_read_all_reports_close_notify_after_data(policy: TLSPolicy, raw: bool) -> None:
    """Data followed by the client's close_notify in one read: the data, then ZeroReturnError."""
    client, server = _pair(policy)
    client.send(b"last words")
    client.shutdown()
    tlsio.feed(server, client.bio_read(65536))
    received, ending = tlsio.read_all(server)
    assert received == b"last words"
    assert isinstance(ending, SSL.ZeroReturnError)


def test_read_all_reports_a_corrupt_record(policy: TLSPolicy, raw: bool) -> None:
    """A record whose ciphertext was altered is an SSL.Error, not data."""
    client, server = _pair(policy)
    wire = bytearray(_records(client, b"tampered"))
    wire[-1] ^= 0xFF
    tlsio.feed(server, bytes(wire))
    received, ending = tlsio.read_all(server)
    assert received == b""
    assert isinstance(ending, SSL.Error)
    assert not isinstance(ending, SSL.ZeroReturnError)


def test_write_and_drain(policy: TLSPolicy, raw: bool) -> None:
    """What write takes, drain gives as ciphertext the client decrypts; an empty BIO drains to b''."""
    client, server = _pair(policy)
    assert tlsio.drain(server) == b""
    big = bytes(range(256)) * 100  # 25,600 octets: more than one record
    taken = 0
    while taken < len(big):
        taken += tlsio.write(server, big[taken : taken + 2**14])
    client.bio_write(tlsio.drain(server))
    assert tlsio.drain(server) == b""
    received = b""
    while len(received) < len(big):
        received += client.recv(65536)
    assert received == big


def test_write_after_shutdown_raises_as_pyopenssl(policy: TLSPolicy, raw: bool) -> None:
    """Writing on a connection that sent its close_notify raises pyOpenSSL's SSL.Error."""
    _, server = _pair(policy)
    server.shutdown()
    with pytest.raises(SSL.Error):
        tlsio.write(server, b"too late")
