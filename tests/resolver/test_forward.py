"""
Forwarding on real loopback sockets: a dnstls forwarding to a dnstls
authoritative server (the test kit's, whose query log shows what it
received) and to Knot DNS, with the cache, the access list, a silent
upstream, TC from upstream, and the client transports UDP, TCP and DoT.

Every server here listens on 127.0.0.1 and forwards only to 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from dnstls.resolver.forward import parse_upstream
from dnstls.tap import Options
from dnstls.testing import TestServer, start_server
from tests.support import LOCAL_ZONE, ZONES, DnstlsProcess, KnotProcess, require_tool

TIMEOUT = 6.0

#: Negative answers from this zone are cached for min(SOA TTL 2, MINIMUM 300) = 2 s.
SHORT_ZONE = """\
$ORIGIN short.test.
$TTL 3600
@       2       SOA     ns hostmaster 1 7200 3600 1209600 300
@               NS      ns
ns              A       192.0.2.1
"""



@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    """An authoritative dnstls serving tests/data/zones and short.test, with a query log."""
    zones = tmp_path_factory.mktemp("upstream-zones")
    for path in ZONES.glob("*.zone"):
        shutil.copy(path, zones / path.name)
    (zones / "short.test.zone").write_text(SHORT_ZONE)
    with start_server(zones) as server:
        yield server


@pytest.fixture(scope="module")
def local_zones(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the forwarder's own zone, local.test."""
    zones = tmp_path_factory.mktemp("local-zones")
    (zones / "local.test.zone").write_text(LOCAL_ZONE)
    return zones


def forwarding(local_zones: Path, *upstreams: tuple[str, int], args: tuple[str, ...] = ()) -> DnstlsProcess:
    forward = [a for host, port in upstreams for a in ("--forward", f"{host}:{port}")]
    return DnstlsProcess(
        [
            "--zones", str(local_zones), "--listen", "127.0.0.1:0",
            "--listen-tls", "127.0.0.1:0", *forward, *args,
        ]
    )


@pytest.fixture(scope="module")
def forwarder(upstream: TestServer, local_zones: Path) -> Iterator[DnstlsProcess]:
    """A dnstls serving local.test and forwarding everything else to the upstream."""
    server = forwarding(local_zones, upstream.udp)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def silent() -> Iterator[tuple[str, int]]:
    """A UDP socket on loopback that reads queries and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def ignore() -> None:
        while not stop.is_set():
            try:
                sock.recv(65535)
            except OSError:
                pass

    thread = threading.Thread(target=ignore, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()
    finally:
        stop.set()
        thread.join(2)
        sock.close()


def ask(server: DnstlsProcess, name: str, rdtype: str = "A", **kwargs: object) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]
    host, port = server.address("udp")
    return dns.query.udp(query, host, port=port, timeout=TIMEOUT)


def upstream_asked(upstream: TestServer, name: str) -> list[dict[str, object]]:
    wanted = name.lower().rstrip(".") + "."
    return [q for q in upstream.queries() if str(q["name"]).lower() == wanted]


def test_kdig_resolves_through_forwarder_and_second_query_is_cached(
    forwarder: DnstlsProcess, upstream: TestServer
) -> None:
    """kdig gets an upstream name's address with RA=1; asking again sends nothing upstream."""
    kdig = require_tool("kdig")
    host, port = forwarder.address("udp")
    upstream.clear_queries()
    command = [kdig, f"@{host}", "-p", str(port), "+timeout=5", "+retry=0", "www.example.test", "A"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=20, check=True).stdout
    assert "192.0.2.80" in first
    assert "NOERROR" in first
    assert " ra" in first.split("Flags:")[1].splitlines()[0]
    assert len(upstream_asked(upstream, "www.example.test")) == 1
    second = subprocess.run(command, capture_output=True, text=True, timeout=20, check=True).stdout
    assert "192.0.2.80" in second
    assert len(upstream_asked(upstream, "www.example.test")) == 1


def test_reply_keeps_client_id_and_question_case(forwarder: DnstlsProcess) -> None:
    """The forwarded reply has the client's ID and its question as the client wrote it."""
    query = dns.message.make_query("MaIl.ExAmPlE.TeSt.", "A")
    query.id = 0x1234
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(query.to_wire(), forwarder.address("udp"))
        wire = sock.recv(65535)
    assert wire[:2] == b"\x12\x34"
    assert b"\x04MaIl\x07ExAmPlE\x04TeSt\x00" in wire
    reply = dns.message.from_wire(wire)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.RA and not reply.flags & dns.flags.AA
    assert [str(r) for r in reply.answer[0]] == ["192.0.2.25"]


def test_ttl_counts_down_in_cache(forwarder: DnstlsProcess) -> None:
    """A cached answer is served with a TTL that goes down as time passes."""
    first = ask(forwarder, "ns1.example.test")
    time.sleep(1.1)
    second = ask(forwarder, "ns1.example.test")
    assert first.answer[0].ttl == 3600
    assert second.answer[0].ttl < first.answer[0].ttl


def test_nxdomain_cached_for_negative_ttl(forwarder: DnstlsProcess, upstream: TestServer) -> None:
    """NXDOMAIN is cached for min(SOA TTL, SOA MINIMUM), then asked for again."""
    upstream.clear_queries()
    first = ask(forwarder, "nothing.short.test")
    assert first.rcode() == dns.rcode.NXDOMAIN
    assert first.authority[0].rdtype == dns.rdatatype.SOA and first.authority[0].ttl <= 2
    assert ask(forwarder, "nothing.short.test").rcode() == dns.rcode.NXDOMAIN
    assert len(upstream_asked(upstream, "nothing.short.test")) == 1
    time.sleep(2.2)
    assert ask(forwarder, "nothing.short.test").rcode() == dns.rcode.NXDOMAIN
    assert len(upstream_asked(upstream, "nothing.short.test")) == 2


def test_negative_ttl_is_soa_minimum(forwarder: DnstlsProcess) -> None:
    """A NODATA answer whose SOA MINIMUM is below the SOA TTL carries the MINIMUM."""
    reply = ask(forwarder, "www.example.test", "MX")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert reply.authority[0].rdtype == dns.rdatatype.SOA
    assert 0 < reply.authority[0].ttl <= 300


def test_concurrent_identical_questions_coalesce(
    forwarder: DnstlsProcess, upstream: TestServer
) -> None:
    """Many clients asking the same question at once cause one upstream query."""
    upstream.clear_queries()
    upstream.faults(delay={"www.corner.test": 0.5})
    try:
        socks = []
        for _ in range(5):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(TIMEOUT)
            sock.sendto(dns.message.make_query("www.corner.test", "A").to_wire(), forwarder.address("udp"))
            socks.append(sock)
        for sock in socks:
            reply = dns.message.from_wire(sock.recv(65535))
            assert [str(r) for r in reply.answer[0]] == ["192.0.2.80"]
            sock.close()
    finally:
        upstream.reset_faults()
    assert len(upstream_asked(upstream, "www.corner.test")) == 1


def test_truncated_upstream_answer_retried_over_tcp(
    forwarder: DnstlsProcess, upstream: TestServer
) -> None:
    """An answer too big for UDP upstream is fetched again over TCP and served whole over TCP."""
    upstream.clear_queries()
    query = dns.message.make_query("big.corner.test", "TXT", use_edns=0)
    host, port = forwarder.address("tcp")
    reply = dns.query.tcp(query, host, port=port, timeout=TIMEOUT)
    assert reply.rcode() == dns.rcode.NOERROR
    assert len(reply.answer[0]) > 15
    asked = upstream_asked(upstream, "big.corner.test")
    assert [q["transport"] for q in asked] == ["udp", "tcp"]
    # over UDP the client gets TC=1 and the cached answer when it retries over TCP
    host, port = forwarder.address("udp")
    small = dns.query.udp(query, host, port=port, timeout=TIMEOUT)
    assert small.flags & dns.flags.TC
    assert len(upstream_asked(upstream, "big.corner.test")) == 2


def test_forwarding_over_tcp_and_dot(forwarder: DnstlsProcess) -> None:
    """Forwarded names resolve over TCP/53 and over the forwarder's DoT port as over UDP."""
    query = dns.message.make_query("mail2.example.test", "A", use_edns=0)
    host, port = forwarder.address("tcp")
    tcp = dns.query.tcp(query, host, port=port, timeout=TIMEOUT)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    host, port = forwarder.address("tls")
    tls = dns.query.tls(query, host, port=port, timeout=TIMEOUT, ssl_context=context)
    for reply in (tcp, tls):
        assert reply.flags & dns.flags.RA
        assert [str(r) for r in reply.answer[0]] == ["192.0.2.26"]


def test_own_zone_answers_first_with_ra(forwarder: DnstlsProcess, upstream: TestServer) -> None:
    """Our own zone is answered authoritatively, with RA=1 for a client that may recurse."""
    upstream.clear_queries()
    reply = ask(forwarder, "www.local.test")
    assert reply.flags & dns.flags.AA and reply.flags & dns.flags.RA
    assert [str(r) for r in reply.answer[0]] == ["192.0.2.42"]
    assert upstream_asked(upstream, "www.local.test") == []


def test_rd0_answered_from_cache(forwarder: DnstlsProcess, upstream: TestServer) -> None:
    """A query with RD=0 after an RD=1 one gets the cached answer, with no upstream query."""
    first = ask(forwarder, "cached.wild.example.test")
    assert [str(r) for r in first.answer[0]] == ["192.0.2.99"]
    upstream.clear_queries()
    reply = ask(forwarder, "cached.wild.example.test", flags=0)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [str(r) for r in reply.answer[0]] == ["192.0.2.99"]
    assert reply.flags & dns.flags.RA and not reply.flags & (dns.flags.RD | dns.flags.AA)
    assert upstream.queries() == []


def test_rd0_uncached_refused_without_upstream_query(
    forwarder: DnstlsProcess, upstream: TestServer
) -> None:
    """A query with RD=0 for a name not cached is REFUSED with EDE 20 and asks no upstream."""
    upstream.clear_queries()
    reply = ask(forwarder, "uncached.wild.example.test", flags=0, use_edns=0)
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
    assert [e.code for e in reply.extended_errors()] == [dns.edns.EDECode.NOT_AUTHORITATIVE]
    assert reply.flags & dns.flags.RA
    plain = ask(forwarder, "uncached.wild.example.test", flags=0)
    assert plain.rcode() == dns.rcode.REFUSED and plain.edns < 0
    assert upstream.queries() == []
    # and it was not fetched behind the client's back either
    assert ask(forwarder, "uncached.wild.example.test", flags=0).rcode() == dns.rcode.REFUSED


def test_client_outside_acl_refused(upstream: TestServer, local_zones: Path) -> None:
    """A client outside --allow-recursion gets REFUSED and RA=0 for other names, our zone still answered."""
    server = forwarding(local_zones, upstream.udp, args=("--allow-recursion", "10.0.0.0/8"))
    try:
        upstream.clear_queries()
        refused = ask(server, "www.example.test")
        assert refused.rcode() == dns.rcode.REFUSED
        assert not refused.flags & dns.flags.RA
        own = ask(server, "www.local.test")
        assert own.rcode() == dns.rcode.NOERROR and own.flags & dns.flags.AA
        assert not own.flags & dns.flags.RA
        assert upstream.queries() == []
    finally:
        server.stop()


def test_no_recursion(local_zones: Path) -> None:
    """With --no-recursion a name outside our zones is REFUSED, our zone answered, RA never set."""
    server = DnstlsProcess(["--zones", str(local_zones), "--listen", "127.0.0.1:0", "--no-recursion"])
    try:
        refused = ask(server, "www.example.test")
        assert refused.rcode() == dns.rcode.REFUSED and not refused.flags & dns.flags.RA
        own = ask(server, "www.local.test")
        assert own.flags & dns.flags.AA and not own.flags & dns.flags.RA
    finally:
        server.stop()


def test_silent_upstream_skipped(
    upstream: TestServer, local_zones: Path, silent: tuple[str, int]
) -> None:
    """An upstream that never answers is given up after its timeout for the next one."""
    server = forwarding(local_zones, silent, upstream.udp)
    try:
        started = time.monotonic()
        reply = ask(server, "www.example.test")
        elapsed = time.monotonic() - started
        assert [str(r) for r in reply.answer[0]] == ["192.0.2.80"]
        assert 1.5 < elapsed < 5
    finally:
        server.stop()


def test_all_upstreams_silent_servfail_with_ede(local_zones: Path, silent: tuple[str, int]) -> None:
    """When no upstream answers the client gets SERVFAIL with Extended DNS Error 22."""
    server = forwarding(local_zones, silent)
    try:
        reply = ask(server, "www.example.test", use_edns=0)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert reply.flags & dns.flags.RA
        codes = [o.code for o in reply.options if o.otype == dns.edns.OptionType.EDE]
        assert codes == [dns.edns.EDECode.NO_REACHABLE_AUTHORITY]
        # without EDNS, a plain SERVFAIL
        plain = ask(server, "www.example.test")
        assert plain.rcode() == dns.rcode.SERVFAIL and plain.opt is None
    finally:
        server.stop()


def test_refusing_upstream_servfail_with_network_error(local_zones: Path) -> None:
    """An upstream port with nothing behind it (ICMP port unreachable) gives SERVFAIL with EDE 23."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()
    server = forwarding(local_zones, closed)
    try:
        reply = ask(server, "www.example.test", use_edns=0)
        assert reply.rcode() == dns.rcode.SERVFAIL
        codes = [o.code for o in reply.options if o.otype == dns.edns.OptionType.EDE]
        assert codes == [dns.edns.EDECode.NETWORK_ERROR]
    finally:
        server.stop()


def test_forwarding_to_knot(local_zones: Path) -> None:
    """A dnstls forwarding to Knot DNS serves Knot's answers and NXDOMAINs."""
    knot = KnotProcess()
    try:
        server = forwarding(local_zones, ("127.0.0.1", knot.port))
        try:
            reply = ask(server, "www.corner.test", "AAAA")
            assert [str(r) for r in reply.answer[0]] == ["2001:db8::80"]
            assert reply.flags & dns.flags.RA
            missing = ask(server, "missing.negttl.test")
            assert missing.rcode() == dns.rcode.NXDOMAIN
            assert 0 < missing.authority[0].ttl <= 60
        finally:
            server.stop()
    finally:
        knot.stop()


def test_forward_option_checked(capsys: pytest.CaptureFixture[str]) -> None:
    """--forward takes IP:PORT, repeatable, and rejects names and port 0 with exit status 2."""
    options = Options()
    options.parseOptions(["--forward", "127.0.0.1:5300", "--forward", "[::1]:53"])
    assert [str(u) for u in options["forward"]] == ["127.0.0.1:5300", "[::1]:53"]
    assert parse_upstream("[::1]:53").host == "::1"
    for bad in ("dns.example:53", "127.0.0.1:0", "127.0.0.1"):
        with pytest.raises(SystemExit):
            Options().parseOptions(["--forward", bad])
        assert "--forward" in capsys.readouterr().err


DELEGATING_ZONE = """$ORIGIN deleg.test.
$TTL 300
@    SOA ns hostmaster 1 3600 600 86400 60
     NS  ns
ns   A   192.0.2.53
sub  NS  ns.sub
ns.sub A 192.0.2.54
"""


def test_name_below_our_delegation_is_resolved_for_recursion_clients(
    tmp_path: Path,
) -> None:
    """A recursion client asking with RD=1 below our delegation gets the answer, not our referral."""
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "deleg.test.zone").write_text(DELEGATING_ZONE)
    with start_server({"host": ["A 192.0.2.77"]}, origin="sub.deleg.test.") as child:
        server = forwarding(zones, child.udp)
        try:
            reply = ask(server, "host.sub.deleg.test.")
            assert reply.rcode() == dns.rcode.NOERROR
            assert [rr.to_text() for rr in reply.answer[0]] == ["192.0.2.77"]
            assert reply.flags & dns.flags.RA
            cached = ask(server, "host.sub.deleg.test.")
            query = dns.message.make_query("host.sub.deleg.test.", "A")
            query.flags &= ~dns.flags.RD
            host, port = server.address("udp")
            referral = dns.query.udp(query, host, port=port, timeout=TIMEOUT)
            assert not referral.answer
            assert [rrset.rdtype for rrset in referral.authority] == [dns.rdatatype.NS]
            assert cached.answer
        finally:
            server.stop()


@pytest.fixture
def validating_upstream() -> Iterator[tuple[tuple[str, int], list[bool]]]:
    """
    A UDP upstream on loopback that answers every A question with AD set
    (as a validating resolver does) and records whether each query had CD.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    seen_cd: list[bool] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except OSError:
                continue
            query = dns.message.from_wire(data)
            seen_cd.append(bool(query.flags & dns.flags.CD))
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AD | dns.flags.RA
            reply.answer.append(
                dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.99")
            )
            sock.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname(), seen_cd
    finally:
        stop.set()
        thread.join(2)
        sock.close()


def test_ad_passed_on_and_cd_passed_up(
    local_zones: Path, validating_upstream: tuple[tuple[str, int], list[bool]]
) -> None:
    """The upstream's AD reaches clients that set DO or AD, and a client's CD reaches the upstream."""
    address, seen_cd = validating_upstream
    server = forwarding(local_zones, address)
    try:
        with_do = ask(server, "signed.example.", want_dnssec=True)
        assert with_do.flags & dns.flags.AD
        plain = ask(server, "signed.example.", use_edns=False)
        assert not plain.flags & dns.flags.AD
        assert seen_cd == [False, False]  # DO is part of the cache key: two questions
        query = dns.message.make_query("unchecked.example.", "A", want_dnssec=True)
        query.flags |= dns.flags.CD
        host, port = server.address("udp")
        reply = dns.query.udp(query, host, port=port, timeout=TIMEOUT)
        assert reply.flags & dns.flags.CD
        assert seen_cd == [False, False, True]
    finally:
        server.stop()
