"""
Forwarding over DNS over TLS on real loopback sockets: a dnstls forwarding
with C{--forward-tls} to the test kit's dnstls, whose query log shows the
transport, SNI, ALPN and peer of every query it received.

Every server here listens on 127.0.0.1 and forwards only to 127.0.0.1; the
Unbound upstream serves one zone of its own and refuses to resolve anything
else.
"""

from __future__ import annotations

import base64
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from dnstls.resolver.forward_tls import QUERY_PADDING, _DoTConnection, keepalive_query
from dnstls.tap import Options
from dnstls.testing import TestServer, start_server
from tests.certs import make_ca, make_leaf
from tests.support import DnstlsProcess, UnboundProcess, require_tool

TIMEOUT = 6.0

RECORDS = {f"host{i}": [f"A 192.0.2.{i}"] for i in range(1, 21)}


@pytest.fixture
def upstream() -> Iterator[TestServer]:
    """A test-kit dnstls with twenty names in example.test, on DoT with a throwaway CA."""
    with start_server(RECORDS) as server:
        yield server


@pytest.fixture
def forwarder(upstream: TestServer, tmp_path: object) -> Iterator[DnstlsProcess]:
    """A dnstls with no zones of its own, forwarding over DoT to the upstream."""
    server = _forwarder_for(upstream, tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _forwarder_for(upstream: TestServer, tmp_path: object, *args: str) -> DnstlsProcess:
    zones = f"{tmp_path}/zones"
    os.makedirs(zones, exist_ok=True)
    host, port = upstream.tls
    return DnstlsProcess(
        [
            "--zones", zones, "--listen", "127.0.0.1:0",
            "--forward-tls", f"{host}:{port}#{upstream.server_name}",
            "--forward-tls-ca", str(upstream.ca_path),
            *args,
        ]
    )


def ask(server: DnstlsProcess, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0)
    host, port = server.address("udp")
    return dns.query.udp(query, host, port=port, timeout=TIMEOUT)


def dns_queries(upstream: TestServer) -> list[dict[str, object]]:
    return [q for q in upstream.queries() if str(q["name"]).endswith("example.test.")]


def test_options_keep_forward_order() -> None:
    """--forward and --forward-tls upstreams are tried in the order given on the command line."""
    options = Options()
    options.parseOptions(
        ["--forward-tls", "127.0.0.1:853#a.test", "--forward", "127.0.0.1:53",
         "--forward-tls-ca", "/ca.pem"]
    )
    assert [str(u) for u in options["forward"]] == ["127.0.0.1:853#a.test", "127.0.0.1:53"]
    assert options["forward-tls-ca"] == "/ca.pem"


def test_kdig_resolves_over_dot_upstream_with_sni_and_alpn(
    forwarder: DnstlsProcess, upstream: TestServer
) -> None:
    """kdig resolves an upstream name through the forwarder, which asked it over TLS with SNI and ALPN dot."""  # noqa: E501
    kdig = require_tool("kdig")
    host, port = forwarder.address("udp")
    out = subprocess.run(
        [kdig, f"@{host}", "-p", str(port), "+timeout=5", "+retry=0", "host1.example.test", "A"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout
    assert "NOERROR" in out and "192.0.2.1" in out
    [logged] = dns_queries(upstream)
    assert logged["transport"] == "tls"
    tls = logged["tls"]
    assert isinstance(tls, dict)
    assert tls["sni"] == "dns.example.test"
    assert tls["alpn"] == "dot"


def test_concurrent_questions_share_one_connection(
    forwarder: DnstlsProcess, upstream: TestServer
) -> None:
    """Twenty questions asked at once are all answered, over one pipelined TLS connection."""
    upstream.faults(delay={"*": 0.3})
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda i: ask(forwarder, f"host{i}.example.test"), range(1, 21)))
    for i, reply in enumerate(replies, 1):
        assert reply.rcode() == dns.rcode.NOERROR
        assert [str(r) for r in reply.answer[0]] == [f"192.0.2.{i}"]
    logged = dns_queries(upstream)
    assert len(logged) == 20
    assert {q["transport"] for q in logged} == {"tls"}
    assert len({str(q["peer"]) for q in logged}) == 1


def test_certificate_for_another_name_is_refused(tmp_path: object) -> None:
    """An upstream whose certificate is not for NAME gets no query, and the client gets SERVFAIL with an EDE."""  # noqa: E501
    with start_server(RECORDS, certificate="other-name") as upstream:
        server = _forwarder_for(upstream, tmp_path)
        try:
            reply = ask(server, "host1.example.test")
        finally:
            server.stop()
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert any(isinstance(o, dns.edns.EDEOption) for o in reply.options)
        assert dns_queries(upstream) == []


def test_keepalive_honoured_and_reconnect_on_demand(tmp_path: object) -> None:
    """The forwarder sends edns-tcp-keepalive, closes the idle connection before the upstream's 1 s keepalive runs out, and asks the next question on a new one."""  # noqa: E501
    with start_server(RECORDS, faults={"idle_timeout": 1}) as upstream:
        server = _forwarder_for(upstream, tmp_path)
        try:
            assert ask(server, "host1.example.test").rcode() == dns.rcode.NOERROR
            time.sleep(1.8)
            reply = ask(server, "host2.example.test")
        finally:
            server.stop()
        assert [str(r) for r in reply.answer[0]] == ["192.0.2.2"]
        logged = dns_queries(upstream)
        assert [q["transport"] for q in logged] == ["tls", "tls"]
        assert all(q["keepalive"] for q in logged)
        assert len({str(q["peer"]) for q in logged}) == 2
        closed = [line for line in server.lines if "closing the idle connection" in line]
        assert len(closed) == 1 and f"{upstream.tls[1]}#" in closed[0], server.lines


def test_queries_padded(forwarder: DnstlsProcess, upstream: TestServer) -> None:
    """Queries to a DoT upstream are padded to a multiple of 128 octets (RFC 8467)."""
    assert ask(forwarder, "host5.example.test").rcode() == dns.rcode.NOERROR
    [logged] = dns_queries(upstream)
    assert isinstance(logged["padding"], int) and logged["padding"] > 0
    query = dns.message.make_query("host5.example.test", "A", use_edns=0)
    keepalive_query(query)
    assert len(query.to_wire()) % QUERY_PADDING == 0


# --- Unbound's DNS-over-TLS listener ------------------------------------------------


def _unbound_and_forwarder(
    tmp_path: Path, keepalive_ms: int = 10000
) -> tuple[UnboundProcess, DnstlsProcess]:
    """
    Unbound serving unbound.test over DoT with a certificate for
    dns.unbound.test from a throwaway CA, and a dnstls forwarding to it.
    """
    ca = make_ca(tmp_path / "pki")
    leaf = make_leaf(ca, tmp_path / "pki", ("dns.unbound.test",))
    unbound = UnboundProcess(leaf.cert, leaf.key_path, keepalive_ms=keepalive_ms)
    (tmp_path / "zones").mkdir()
    try:
        server = DnstlsProcess(
            [
                "--zones", str(tmp_path / "zones"), "--listen", "127.0.0.1:0",
                "--forward-tls", f"127.0.0.1:{unbound.tls_port}#dns.unbound.test",
                "--forward-tls-ca", str(ca.path),
            ]
        )
    except BaseException:
        unbound.stop()
        raise
    return unbound, server


def kdig(server: DnstlsProcess, name: str) -> str:
    """What kdig prints for C{name} A asked of C{server} over UDP."""
    host, port = server.address("udp")
    return subprocess.run(
        [require_tool("kdig"), f"@{host}", "-p", str(port), "+timeout=5", "+retry=0", name, "A"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout


def test_kdig_through_forwarder_to_unbound_dot(tmp_path: Path) -> None:
    """kdig resolves a name Unbound serves through our DoT forwarding to Unbound's tls-port; the second query is answered from our cache."""  # noqa: E501
    unbound, server = _unbound_and_forwarder(tmp_path)
    try:
        first = kdig(server, "www.unbound.test")
        second = kdig(server, "www.unbound.test")
        outside = kdig(server, "www.example.org")
    finally:
        server.stop()
        unbound.stop()
    for out in (first, second):
        assert "NOERROR" in out and "192.0.2.53" in out, out
    assert len(unbound.queries("www.unbound.test")) == 1, unbound.lines
    # Unbound refuses what it does not serve; the client gets SERVFAIL
    assert "SERVFAIL" in outside, outside
    assert len(unbound.queries("www.example.org")) == 1


def test_unbound_keepalive_honoured(tmp_path: Path) -> None:
    """Against Unbound advertising a 1 s edns-tcp-keepalive, the forwarder closes the idle connection first and the next question still resolves."""  # noqa: E501
    unbound, server = _unbound_and_forwarder(tmp_path, keepalive_ms=1000)
    try:
        assert "192.0.2.53" in kdig(server, "www.unbound.test")
        time.sleep(1.5)
        out = kdig(server, "nothing.unbound.test")
    finally:
        server.stop()
        unbound.stop()
    assert "NXDOMAIN" in out, out
    assert len(unbound.queries("nothing.unbound.test")) == 1
    closed = [line for line in server.lines if "closing the idle connection" in line]
    assert closed and "keepalive of 1.0 s" in closed[0], server.lines


# --- the connection's keepalive, in memory ------------------------------------------


def _connection() -> tuple[_DoTConnection, StringTransport, Clock]:
    clock = Clock()
    connection = _DoTConnection(lambda c: None, clock)
    transport = StringTransport()
    connection.makeConnection(transport)
    connection.handshakeCompleted()
    return connection, transport, clock


def _answer(
    connection: _DoTConnection, query: dns.message.Message, keepalive: int | None
) -> None:
    reply = dns.message.make_response(query)
    options = []
    if keepalive is not None:
        options = [dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, struct.pack("!H", keepalive))]
    reply.use_edns(0, 0, 1232, options=options)
    wire = reply.to_wire()
    connection.dataReceived(len(wire).to_bytes(2, "big") + wire)


def _query(name: str = "host1.example.test.") -> dns.message.Message:
    query = dns.message.make_query(name, "A", use_edns=0)
    keepalive_query(query)
    return query


def test_idle_connection_closed_before_upstream_keepalive() -> None:
    """With no query in flight, the connection is closed a second before an upstream keepalive of 2 s runs out, and not before."""  # noqa: E501
    connection, transport, clock = _connection()
    query = _query()
    replies: list[dns.message.Message] = []
    connection.ask(query).addCallback(replies.append)
    _answer(connection, query, 20)
    assert len(replies) == 1
    clock.advance(0.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting and connection.closed


def test_query_in_flight_keeps_connection_open() -> None:
    """A query sent before the idle close is due cancels it; the timer restarts after its reply."""
    connection, transport, clock = _connection()
    first = _query()
    connection.ask(first)
    _answer(connection, first, 10)
    clock.advance(0.3)
    second = _query("host2.example.test.")
    connection.ask(second)
    clock.advance(5)
    assert not transport.disconnecting
    _answer(connection, second, 10)
    clock.advance(0.5)
    assert transport.disconnecting


def test_keepalive_zero_closes_when_idle() -> None:
    """An upstream keepalive of 0 closes the connection as soon as no query is in flight (RFC 7828 3.3.2)."""  # noqa: E501
    connection, transport, clock = _connection()
    query = _query()
    connection.ask(query)
    _answer(connection, query, 0)
    clock.advance(0)
    assert transport.disconnecting


def test_no_keepalive_keeps_connection() -> None:
    """Without a keepalive from the upstream, the connection stays open until a side closes it."""
    connection, transport, clock = _connection()
    query = _query()
    connection.ask(query)
    _answer(connection, query, None)
    clock.advance(3600)
    assert not transport.disconnecting and not connection.closed


def test_queries_in_flight_when_upstream_closes_are_retried(tmp_path: object) -> None:
    """A question in flight when the upstream closes the connection is asked again on a new one."""
    with start_server(RECORDS, faults={"close_after": 2, "delay": {"*": 0.3}}) as upstream:
        server = _forwarder_for(upstream, tmp_path)
        try:
            with ThreadPoolExecutor(3) as pool:
                replies = list(pool.map(lambda i: ask(server, f"host{i}.example.test"), range(1, 4)))
        finally:
            server.stop()
        for i, reply in enumerate(replies, 1):
            assert [str(r) for r in reply.answer[0]] == [f"192.0.2.{i}"]
        assert len({str(q["peer"]) for q in dns_queries(upstream)}) == 2
        assert any("closed; asking again" in line for line in server.lines)


def test_pinned_upstream_is_authenticated_by_its_key(tmp_path: object) -> None:
    """With --forward-tls-pin and no CA, an upstream whose key matches the pin answers, whatever name its certificate has."""  # noqa: E501
    with start_server(RECORDS, certificate="other-name") as upstream:
        host, port = upstream.tls
        os.makedirs(f"{tmp_path}/zones")
        server = DnstlsProcess(
            ["--zones", f"{tmp_path}/zones", "--listen", "127.0.0.1:0",
             "--forward-tls", f"{host}:{port}#{upstream.server_name}", "--forward-tls-pin", upstream.pin]
        )
        try:
            reply = ask(server, "host3.example.test")
        finally:
            server.stop()
        assert [str(r) for r in reply.answer[0]] == ["192.0.2.3"]
        [logged] = dns_queries(upstream)
        assert logged["tls"]["sni"] == upstream.server_name  # type: ignore[index]


def test_wrong_pin_is_refused(upstream: TestServer, tmp_path: object) -> None:
    """An upstream whose key does not match the pin gets no query, and the client gets SERVFAIL."""
    server = _forwarder_for(upstream, tmp_path, "--forward-tls-pin", base64.b64encode(b"x" * 32).decode())
    try:
        reply = ask(server, "host4.example.test")
    finally:
        server.stop()
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert dns_queries(upstream) == []


def test_pin_options() -> None:
    """--forward-tls-pin pins the last --forward-tls before it, and must be base64 of 32 bytes."""
    pin = base64.b64encode(b"p" * 32).decode()
    options = Options()
    options.parseOptions(
        ["--forward-tls", "127.0.0.1:853#a.test", "--forward-tls", "127.0.0.1:854#b.test",
         "--forward-tls-pin", pin]
    )
    assert [u.pins for u in options["forward"]] == [(), (pin,)]
    for bad in (
        ["--forward-tls-pin", pin],
        ["--forward-tls", "127.0.0.1:853#a.test", "--forward-tls-pin", "abc"],
    ):
        with pytest.raises(SystemExit):
            Options().parseOptions(bad)


def test_unreadable_ca_fails_at_startup(tmp_path: object) -> None:
    """A --forward-tls-ca file without certificates stops the server at start-up."""
    with pytest.raises(RuntimeError, match="forward-tls-ca"):
        DnstlsProcess(
            ["--zones", str(tmp_path), "--listen", "127.0.0.1:0",
             "--forward-tls", "127.0.0.1:853#a.test", "--forward-tls-ca", f"{tmp_path}/none.pem"],
            timeout=10,
        )

