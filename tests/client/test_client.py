"""
Tests for L{dnstls.client}: the blocking client over UDP, TCP, DNS over TLS
and the STARTTLS upgrade, against real dnstls servers on loopback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest

from dnstls.client import (
    AuthenticationFailed,
    Client,
    ClientError,
    DeclineMemory,
    TLSAuth,
    UpgradeDeclined,
    probe_query,
)
from dnstls.transport.upgrade import TO
from tests.support import ZONES, DnstlsProcess

NAME = "dns.example.test"


class Server:
    """
    A running dnstls with a generated certificate for L{NAME}.
    """

    def __init__(self, process: DnstlsProcess, state: Path) -> None:
        self.process = process
        self.ca = str(state / "dnstls-selfsigned.pem")
        self.pin = re.search(r"pin sha256 (\S+)", "\n".join(process.lines)).group(1)  # type: ignore[union-attr]

    def client(self, transport: str, **kwargs: object) -> Client:
        kind = "tls" if transport == "tls" else "udp" if transport == "udp" else "tcp"
        host, port = self.process.address(kind)
        kwargs.setdefault("auth", TLSAuth(hostname=NAME, ca_file=self.ca))
        return Client(host, port, transport, timeout=3.0, **kwargs)  # type: ignore[arg-type]


def start(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[Server]:
    state = tmp_path_factory.mktemp("state")
    process = DnstlsProcess(
        [
            "--zones", str(ZONES), "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
            "--state-dir", str(state), "--tls-name", NAME, *extra,
        ]
    )
    try:
        yield Server(process, state)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start(tmp_path_factory)


@pytest.fixture(scope="module")
def declining(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start(tmp_path_factory, "--starttls", "off")


QUESTIONS = [("www.corner.test.", "A"), ("mail.corner.test.", "A"), ("big.corner.test.", "TXT")]


def queries() -> list[dns.message.Message]:
    return [dns.message.make_query(name, qtype) for name, qtype in QUESTIONS]


@pytest.mark.parametrize("transport", ["tcp", "tls", "starttls"])
def test_streams_answer_pipelined_queries(server: Server, transport: str) -> None:
    """Every stream transport answers three pipelined queries, the large TXT RRset whole."""
    replies = server.client(transport).query_many(queries())
    assert [r.question[0].name.to_text() for r in replies] == [n for n, _ in QUESTIONS]
    assert all(r.rcode() == dns.rcode.NOERROR for r in replies)
    assert len(replies[2].answer[0]) == 18
    assert not any(r.flags & dns.flags.TC for r in replies)


def test_udp_truncates_large_answer(server: Server) -> None:
    """Over UDP the client gets the server's truncated reply for the large RRset."""
    reply = server.client("udp").query(dns.message.make_query("big.corner.test.", "TXT"))
    assert reply.flags & dns.flags.TC


def test_starttls_upgrades(server: Server) -> None:
    """The STARTTLS transport sends the probe, sees STARTTLS with TO=1, and queries over TLS."""
    client = server.client("starttls")
    reply = client.query(queries()[0])
    assert reply.answer
    assert client.last_upgraded
    probe = client.last_probe_reply
    assert probe is not None and probe.ednsflags & TO
    assert probe.answer[0][0].strings == (b"STARTTLS",)


def test_starttls_by_pin(server: Server) -> None:
    """A STARTTLS client that checks the SPKI pin instead of a name upgrades and gets its answer."""
    client = server.client("starttls", auth=TLSAuth(pin=server.pin))
    assert client.query(queries()[0]).answer
    assert client.last_upgraded


def test_tls_wrong_pin_fails(server: Server) -> None:
    """A DoT client with a wrong SPKI pin refuses the server."""
    wrong = "A" * 43 + "="
    with pytest.raises(AuthenticationFailed):
        server.client("tls", auth=TLSAuth(pin=wrong)).query(queries()[0])


def test_starttls_wrong_name_strict_fails(server: Server) -> None:
    """A strict STARTTLS client fails when the certificate is for another name."""
    client = server.client("starttls", auth=TLSAuth(hostname="other.example", ca_file=server.ca))
    with pytest.raises(AuthenticationFailed):
        client.query(queries()[0])


def test_starttls_wrong_name_opportunistic_falls_back(server: Server) -> None:
    """An opportunistic client whose handshake fails queries in clear text and remembers it."""
    client = server.client(
        "starttls", auth=TLSAuth(hostname="other.example", ca_file=server.ca), strict=False
    )
    assert client.query(queries()[0]).answer
    assert not client.last_upgraded
    assert client.memory.has_declined(server.process.address("tcp"))


def test_declined_strict_fails(declining: Server) -> None:
    """Against a server with --starttls off, a strict client fails with UpgradeDeclined."""
    with pytest.raises(UpgradeDeclined):
        declining.client("starttls").query(queries()[0])


def test_declined_opportunistic_continues_in_clear(declining: Server) -> None:
    """An opportunistic client told NO_TLS goes on in clear text on the same connection."""
    client = declining.client("starttls", strict=False)
    replies = client.query_many(queries())
    assert all(r.answer for r in replies)
    assert not client.last_upgraded
    probe = client.last_probe_reply
    assert probe is not None and not probe.ednsflags & TO
    assert probe.answer[0][0].strings == (b"NO_TLS",)


def test_decline_remembered_then_forgotten(declining: Server) -> None:
    """A decline is remembered for the configured period: no probe then, a probe again after."""
    now = [1000.0]
    memory = DeclineMemory(remember=3600.0, clock=lambda: now[0])
    client = declining.client("starttls", strict=False, memory=memory)
    client.query(queries()[0])
    client.last_probe_reply = None
    client.query(queries()[0])
    assert client.last_probe_reply is None
    now[0] += 3601
    client.query(queries()[0])
    assert client.last_probe_reply is not None


def test_probe_query_shape() -> None:
    """The probe is STARTTLS. CH TXT with RD=0, EDNS version 0 and TO=1."""
    probe = probe_query()
    assert probe.flags == 0
    assert probe.edns == 0
    assert probe.ednsflags & TO
    question = probe.question[0]
    assert (question.name.to_text(), question.rdclass, question.rdtype) == ("STARTTLS.", 3, 16)


def test_nothing_listening_is_a_client_error(server: Server) -> None:
    """A refused connection surfaces as ClientError, not a socket exception."""
    from tests.support import free_port

    with pytest.raises(ClientError):
        Client("127.0.0.1", free_port(), "tcp", timeout=1.0).query(queries()[0])


def test_granted_then_failed_handshake_strict_is_declined() -> None:
    """A strict client whose upgrade is granted but whose handshake fails raises UpgradeDeclined."""
    from dnstls.testing import start_server

    with start_server(faults={"abort_handshake": True}) as test_server:
        client = Client(
            *test_server.tcp, "starttls",
            TLSAuth(hostname=test_server.server_name, ca_file=test_server.ca_path), timeout=3.0,
        )
        with pytest.raises(UpgradeDeclined):
            client.query(dns.message.make_query("www.example.test.", "A"))
        assert client.memory.has_declined(test_server.tcp)
