"""
The C{twistd dnstls} command line: L{dnstls.tap} in process, and the real
command in a child process for start-up errors and the listeners it logs.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from dnstls.errors import StartupError
from dnstls.resolver.forward import Forwarder
from dnstls.tap import Options, ServerService, answer_source, makeService
from dnstls.transport.listen import Address
from dnstls.transport.stream import DNSStreamFactory
from dnstls.transport.udp import DNSDatagramProtocol
from dnstls.zones.zonefile import load_zone, zone_files
from tests.support import ROOT, ZONES, DnstlsProcess, free_port, load_store, run_dnstls

ZONE = """\
$ORIGIN {origin}
$TTL 300
@    SOA ns1 hostmaster 1 7200 3600 1209600 300
@    NS  ns1
ns1  A   192.0.2.1
"""


def parse(*args: str) -> Options:
    """
    Options parsed from C{args}.
    """
    options = Options()
    options.parseOptions(list(args))
    return options


def usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """
    The one line parsing C{args} writes to standard error before exiting
    with status 2.
    """
    with pytest.raises(SystemExit) as exited:
        parse(*args)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def failed_start(result: subprocess.CompletedProcess[str]) -> str:
    """
    The one non-empty output line of a C{twistd dnstls} that failed to
    start, checked to have exited non-zero without a traceback.
    """
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def ask(host: str, port: int, name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
    """
    Ask C{host}:C{port} one question over UDP or TCP.
    """
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(query, host, port=port, timeout=3)
    return dns.query.udp(query, host, port=port, timeout=3)


# --- Options -------------------------------------------------------------------


def test_defaults() -> None:
    """With no options the server listens on 0.0.0.0:53 and [::]:53, with a 10 s TCP idle timeout."""
    options = parse()
    assert options["listen"] == [Address("0.0.0.0", 53), Address("::", 53)]
    assert options["tcp-idle-timeout"] == 10
    assert options["zones"] is None
    assert options["zone"] == []
    assert options["identity"] is None
    assert options["version-string"] is None


def test_repeatable_listen_and_zone() -> None:
    """--listen and --zone may be given many times, and --listen replaces the default addresses."""
    options = parse(
        "--listen", "127.0.0.1:5353", "--listen", "[::1]:0",
        "--zone", "a.zone", "--zone", "b.zone",
        "--zones", "somewhere", "--tcp-idle-timeout", "2.5", "--max-connections", "7",
    )
    assert options["listen"] == [Address("127.0.0.1", 5353), Address("::1", 0)]
    assert options["zone"] == ["a.zone", "b.zone"]
    assert options["zones"] == "somewhere"
    assert options["tcp-idle-timeout"] == 2.5
    assert options["max-connections"] == 7


def test_prefix_cap_options() -> None:
    """
    --max-connections-per-prefix defaults to none given (4 times the per-address cap), the prefix
    lengths to /24 and /56.
    """
    options = parse("--listen", "127.0.0.1:0")
    assert options["max-connections-per-prefix"] is None
    assert (options["client-prefix-v4"], options["client-prefix-v6"]) == (24, 56)
    options = parse(
        "--max-connections-per-prefix", "50", "--client-prefix-v4", "20", "--client-prefix-v6", "64"
    )
    assert options["max-connections-per-prefix"] == 50
    assert (options["client-prefix-v4"], options["client-prefix-v6"]) == (20, 64)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--bogus"], ["--bogus"]),
        (["--listen", "localhost:53"], ["--listen", "localhost", "not an IP address"]),
        (["--listen", "::1:53"], ["--listen", "brackets"]),
        (["--listen", "127.0.0.1:65536"], ["--listen", "port"]),
        (["--listen", "127.0.0.1"], ["--listen", "HOST:PORT"]),
        (["--listen"], ["--listen", "argument"]),
        (["--tcp-idle-timeout", "soon"], ["--tcp-idle-timeout", "soon"]),
        (["--tcp-idle-timeout", "0"], ["--tcp-idle-timeout", "above 0"]),
        (["--tcp-idle-timeout", "nan"], ["--tcp-idle-timeout", "nan"]),
        (["--tcp-idle-timeout", "inf"], ["--tcp-idle-timeout", "inf"]),
        (["--max-connections", "-3"], ["--max-connections", "above 0"]),
        (["--max-connections", "1.5"], ["--max-connections", "1.5"]),
        (["--max-connections-per-prefix", "0"], ["--max-connections-per-prefix", "above 0"]),
        (["--client-prefix-v4", "33"], ["--client-prefix-v4", "1 to 32", "33"]),
        (["--client-prefix-v6", "0"], ["--client-prefix-v6", "1 to 128", "0"]),
        (["--client-prefix-v6", "/56"], ["--client-prefix-v6", "/56"]),
        (["--upstream-timeout", "0"], ["--upstream-timeout", "above 0"]),
        (["--upstream-timeout", "soon"], ["--upstream-timeout", "soon"]),
        (
            ["--no-recursion", "--forward", "127.0.0.1:5300"],
            ["--no-recursion", "--forward", "contradict"],
        ),
        (
            ["--forward-tls", "127.0.0.1:853#dns.test", "--no-recursion"],
            ["--no-recursion", "--forward-tls", "contradict"],
        ),
        (
            ["--root-hints", "hints", "--forward", "127.0.0.1:5300"],
            ["--root-hints", "--forward", "contradicts"],
        ),
        (["--no-recursion", "--root-hints", "hints"], ["--root-hints", "--no-recursion", "contradicts"]),
        (
            ["--starttls", "off", "--starttls-legacy-probe"],
            ["--starttls-legacy-probe", "probe or any", "off"],
        ),
    ],
)
def test_bad_options(capsys: pytest.CaptureFixture[str], args: list[str], words: list[str]) -> None:
    """A bad option or value is one line on standard error naming it, and exit status 2."""
    line = usage_error(capsys, *args)
    assert line.startswith("twistd dnstls: ")
    for word in words:
        assert word in line


def test_help() -> None:
    """--help lists every option with its text wrapped cleanly, without stray runs of spaces."""
    text = str(Options())
    for option in (
        "--zones=", "--zone=", "--listen=", "--identity=", "--version-string=", "--strict-zones",
    ):
        assert option in text
    for line in text.splitlines():
        described = re.sub(r"^\s+(-\w, )?--[\w-]+=?\s+", "", line).strip()
        assert "  " not in described, line


def test_upstream_timeout() -> None:
    """--upstream-timeout sets how long the forwarder waits for each upstream; 2 s by default."""
    assert parse()["upstream-timeout"] == 2.0
    options = parse("--upstream-timeout", "0.5", "--forward", "127.0.0.1:5300")
    source = answer_source(options, MemoryReactorClock())
    assert isinstance(source, Forwarder)
    assert source.timeout == 0.5


# --- load_store ----------------------------------------------------------------


def test_load_store(tmp_path: Path) -> None:
    """load_store loads every zone of the directory and every --zone file."""
    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "a.test.zone").write_text(ZONE.format(origin="a.test."))
    (tmp_path / "zones" / "notes.txt").write_text("not a zone")
    extra = tmp_path / "b.test.zone"
    extra.write_text(ZONE.format(origin="b.test."))
    store = load_store(tmp_path / "zones", [str(extra)])
    assert sorted(str(zone.origin) for zone in store) == ["a.test.", "b.test."]


def test_load_store_default_directory() -> None:
    """Without a zones directory load_store serves the shipped zones/."""
    store = load_store(None, [])
    shipped = {load_zone(path).origin for path in zone_files(ROOT / "zones")}
    assert shipped
    assert {zone.origin for zone in store} == shipped


def test_load_store_refuses_one_origin_twice(tmp_path: Path) -> None:
    """Two files with one origin are refused, naming both files."""
    (tmp_path / "zones").mkdir()
    first = tmp_path / "zones" / "a.test.zone"
    first.write_text(ZONE.format(origin="a.test."))
    second = tmp_path / "other.zone"
    second.write_text(ZONE.format(origin="a.test."))
    with pytest.raises(StartupError) as caught:
        load_store(tmp_path / "zones", [str(second)])
    message = str(caught.value)
    assert str(first) in message and str(second) in message and "a.test." in message


# --- makeService ------------------------------------------------------------------


def test_make_service() -> None:
    """makeService binds UDP and TCP on one port and logs both, then the zones, when started."""
    reactor = MemoryReactorClock()
    options = parse("--zones", str(ZONES), "--listen", "127.0.0.1:0")
    service = makeService(options, reactor=reactor)
    assert isinstance(service, ServerService)
    with capturedLogs() as events:
        service.startService()
    try:
        lines = [formatEvent(event) for event in events]
        listening = [line for line in lines if line.startswith("listening on ")]
        assert len(listening) == 2, lines
        udp, tcp = sorted(listening, reverse=True)
        port = int(udp.rpartition(":")[2])
        assert port != 0
        assert udp == f"listening on udp 127.0.0.1:{port}"
        assert tcp == f"listening on tcp 127.0.0.1:{port}"
        count = len(zone_files(ZONES))
        assert any(line.startswith(f"serving {count} zones: ") for line in lines), lines
        kinds = sorted(type(adopted[2]).__name__ for adopted in reactor.adoptedPorts)
        assert kinds == sorted([DNSDatagramProtocol.__name__, DNSStreamFactory.__name__])
    finally:
        service.stopService()


@pytest.mark.parametrize(
    ("args", "legacy_probe"),
    [
        ([], False),
        (["--starttls-legacy-probe"], True),
        (["--starttls", "any", "--starttls-legacy-probe"], True),
    ],
)
def test_make_service_legacy_probe(tmp_path: Path, args: list[str], legacy_probe: bool) -> None:
    """--starttls-legacy-probe reaches the TCP listener's upgrade; without it the upgrade is as before."""
    reactor = MemoryReactorClock()
    options = parse("--zones", str(ZONES), "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path), *args)
    service = makeService(options, reactor=reactor)
    service.startService()
    try:
        [factory] = [port[2] for port in reactor.adoptedPorts if isinstance(port[2], DNSStreamFactory)]
        assert factory.upgrade is not None
        assert factory.upgrade.legacy_probe is legacy_probe
    finally:
        service.stopService()


@pytest.mark.parametrize(
    ("good", "strict"), [(False, False), (True, True)], ids=["no-zone-loads", "strict-zones"]
)
def test_make_service_bad_zone_binds_nothing(tmp_path: Path, good: bool, strict: bool) -> None:
    """A broken zone that is the only one, or any broken zone with --strict-zones, stops
    makeService before it binds any socket."""
    (tmp_path / "bad.test.zone").write_text("$ORIGIN bad.test.\n$TTL 60\n@ NS ns1\n")
    if good:
        (tmp_path / "good.test.zone").write_text(ZONE.format(origin="good.test."))
    port = free_port()
    args = ["--zones", str(tmp_path), "--listen", f"127.0.0.1:{port}"]
    options = parse(*args, *(["--strict-zones"] if strict else []))
    with pytest.raises(StartupError, match="bad.test.zone"):
        makeService(options, reactor=MemoryReactorClock())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_make_service_serves_the_good_zones(tmp_path: Path) -> None:
    """Without --strict-zones makeService serves the zones that load, and the server logs one
    error line for the broken one and one line for each good one when it starts."""
    bad = tmp_path / "bad.test.zone"
    bad.write_text("$ORIGIN bad.test.\n$TTL 60\n@ NS ns1\n")
    (tmp_path / "good.test.zone").write_text(ZONE.format(origin="good.test."))
    service = makeService(
        parse("--zones", str(tmp_path), "--listen", "127.0.0.1:0"), reactor=MemoryReactorClock()
    )
    assert isinstance(service, ServerService)
    assert [str(zone.origin) for zone in service.handler.zones] == ["good.test."]
    with capturedLogs() as events:
        service.startService()
    try:
        errors = [formatEvent(e) for e in events if e["log_level"] == LogLevel.error]
        assert errors == [f"zone bad.test.: not loaded: {bad}: no SOA record at the apex bad.test."]
        lines = [formatEvent(event) for event in events]
        assert f"zone good.test.: serial 1, loaded from {tmp_path / 'good.test.zone'}" in lines
        assert lines[-1] == "serving 1 zone: good.test. (serial 1); errors in 1 zone file"
    finally:
        service.stopService()


def test_make_service_releases_sockets_on_failure() -> None:
    """When a later --listen cannot be bound, the sockets bound for earlier ones are closed."""
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        options = parse(
            "--zones", str(ZONES),
            "--listen", f"127.0.0.1:{port}", "--listen", f"127.0.0.1:{busy_port}",
        )
        with pytest.raises(StartupError, match="address already in use"):
            makeService(options, reactor=MemoryReactorClock())
    with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", port))
        udp.bind(("127.0.0.1", port))


# --- start-up errors of the real command -------------------------------------------


def test_unknown_option() -> None:
    """An unknown option stops twistd dnstls with one line naming it."""
    line = failed_start(run_dnstls(["--bogus"]))
    assert "--bogus" in line and "not recognized" in line


def test_bad_listen() -> None:
    """A --listen that is not an address stops twistd dnstls with one line naming it."""
    line = failed_start(run_dnstls(["--listen", "localhost:53"]))
    assert "--listen" in line and "localhost" in line


def test_bad_zone(tmp_path: Path) -> None:
    """A broken zone file that is the only one stops twistd dnstls with one line saying no zone
    loaded, with the file, line and reason."""
    bad = tmp_path / "bad.test.zone"
    bad.write_text(ZONE.format(origin="bad.test.") + "www A 192.0.2.300\n")
    line = failed_start(run_dnstls(["--zones", str(tmp_path), "--listen", "127.0.0.1:0"]))
    assert line.startswith(f"twistd dnstls: no zone loaded: {bad}:6: ")
    assert "192.0.2.300" in line


def test_bad_zone_strict(tmp_path: Path) -> None:
    """With --strict-zones a broken zone file stops twistd dnstls, whatever other zones load, with
    one line giving its file, line and reason."""
    bad = tmp_path / "bad.test.zone"
    bad.write_text(ZONE.format(origin="bad.test.") + "www A 192.0.2.300\n")
    (tmp_path / "good.test.zone").write_text(ZONE.format(origin="good.test."))
    line = failed_start(
        run_dnstls(["--zones", str(tmp_path), "--listen", "127.0.0.1:0", "--strict-zones"])
    )
    assert line.startswith(f"twistd dnstls: {bad}:6: ")
    assert "192.0.2.300" in line


def test_bad_extra_zone_strict() -> None:
    """With --strict-zones a --zone file that does not exist stops twistd dnstls with one line
    naming it."""
    line = failed_start(
        run_dnstls(["--zone", "/nonexistent/x.zone", "--listen", "127.0.0.1:0", "--strict-zones"])
    )
    assert "/nonexistent/x.zone" in line and "no such file" in line


def test_bad_extra_zone_alone(tmp_path: Path) -> None:
    """A --zone file that does not exist, with no other zone, stops twistd dnstls with one line
    naming it."""
    line = failed_start(
        run_dnstls(["--zones", str(tmp_path), "--zone", "/nonexistent/x.zone", "--listen", "127.0.0.1:0"])
    )
    assert line.startswith("twistd dnstls: no zone loaded: /nonexistent/x.zone: ")
    assert "no such file" in line


def test_one_origin_twice_strict(tmp_path: Path) -> None:
    """With --strict-zones two zone files with one origin stop twistd dnstls with one line."""
    (tmp_path / "a.test.zone").write_text(ZONE.format(origin="a.test."))
    other = tmp_path / "copy.txt"
    other.write_text(ZONE.format(origin="a.test."))
    line = failed_start(
        run_dnstls(
            ["--zones", str(tmp_path), "--zone", str(other), "--listen", "127.0.0.1:0", "--strict-zones"]
        )
    )
    assert "a.test." in line and "already loaded" in line


def test_missing_zones_directory(tmp_path: Path) -> None:
    """A --zones directory that does not exist stops twistd dnstls with one line naming it."""
    missing = tmp_path / "nothere"
    line = failed_start(run_dnstls(["--zones", str(missing), "--listen", "127.0.0.1:0"]))
    assert str(missing) in line and "no such file or directory" in line


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_port_in_use(kind: str) -> None:
    """A port another program holds (for TCP or for UDP only) stops twistd dnstls with one line."""
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    with socket.socket(type=sock_type) as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Free for both protocols, so that the one held is the one refused.
        port = free_port()
        busy.bind(("127.0.0.1", port))
        if kind == "tcp":
            busy.listen()
        line = failed_start(run_dnstls(["--zones", str(ZONES), "--listen", f"127.0.0.1:{port}"]))
    assert line == (
        f"twistd dnstls: cannot listen on {kind} 127.0.0.1:{port}: address already in use"
    )


def _privileged_port() -> int:
    """
    A port only root may bind, or skip.
    """
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        start = 1024
    if start <= 1:
        pytest.skip(f"every port is unprivileged here (ip_unprivileged_port_start={start})")
    return 53 if start > 53 else start - 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a child as another user")
def test_privileged_port_without_privilege() -> None:
    """A port below 1024 without the privilege stops twistd dnstls with one line that says so."""
    port = _privileged_port()
    line = failed_start(
        run_dnstls(
            ["--zones", str(ZONES), "--listen", f"127.0.0.1:{port}", "--starttls", "off"], user=65534
        )
    )
    assert line.startswith(f"twistd dnstls: cannot listen on tcp 127.0.0.1:{port}: permission denied")
    assert "below 1024" in line


# --- the running server ------------------------------------------------------------


def test_listening_lines(dnstls_server: DnstlsProcess) -> None:
    """Each --listen logs one udp and one tcp line, IPv4 and IPv6, the two halves on one port."""
    by_host: dict[str, dict[str, int]] = {}
    for kind, host, port in dnstls_server.addresses:
        by_host.setdefault(host, {})[kind] = port
    assert set(by_host) == {"127.0.0.1", "::1"}
    for host, ports in by_host.items():
        assert set(ports) == {"udp", "tcp"}, host
        assert ports["udp"] == ports["tcp"] != 0, host


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_every_listener_answers(dnstls_server: DnstlsProcess, family: int, kind: str) -> None:
    """Every logged listener answers a query for a loaded zone."""
    host, port = dnstls_server.address(kind, family)
    response = ask(host, port, "example.test.", "SOA", tcp=kind == "tcp")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer and response.answer[0].rdtype == dns.rdatatype.SOA


def test_default_zones_directory() -> None:
    """Without --zones the server serves the shipped zones/."""
    expected = load_zone(ROOT / "zones" / "example.test.zone")
    server = DnstlsProcess(["--listen", "127.0.0.1:0"])
    try:
        host, port = server.address("udp")
        response = ask(host, port, "example.test.", "SOA")
    finally:
        server.stop()
    assert response.rcode() == dns.rcode.NOERROR
    serial = expected.get_rdataset(expected.origin, "SOA")[0].serial
    assert response.answer[0][0].serial == serial


def _port_53_free() -> str | None:
    """
    Why the embedded default cannot be tried here, or C{None}.
    """
    if os.geteuid() != 0:
        return "the embedded default listens on ports 53 and 853, which need root"
    wanted = [(53, socket.SOCK_STREAM), (53, socket.SOCK_DGRAM), (853, socket.SOCK_STREAM)]
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for port, kind in wanted:
            try:
                with socket.socket(family, kind) as probe:
                    if family == socket.AF_INET6:
                        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    probe.bind((host, port))
            except OSError as e:
                return f"port {port} on {host} is not free here: {os.strerror(e.errno or errno.EIO)}"
    return None


def test_embedded_default(tmp_path: Path) -> None:
    """With no options at all the server answers for the shipped zones on port 53, and DoT on 853."""
    why = _port_53_free()
    if why is not None:
        pytest.skip(why)
    try:
        # it asks only for a shipped zone, so recursion may stay on
        server = DnstlsProcess([], env={"STATE_DIRECTORY": str(tmp_path)}, recursion=True)
    except RuntimeError as e:
        if "address already in use" in str(e):
            pytest.skip("port 53 was taken while the server started")
        raise
    try:
        assert sorted(server.addresses) == [
            ("tcp", "0.0.0.0", 53), ("tcp", "::", 53),
            ("tls", "0.0.0.0", 853), ("tls", "::", 853),
            ("udp", "0.0.0.0", 53), ("udp", "::", 53),
        ]
        assert (tmp_path / "dnstls-selfsigned.pem").exists()
        response = ask("127.0.0.1", 53, "example.test.", "SOA")
    finally:
        server.stop()
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer


def test_signed_zone_refused(tmp_path: Path) -> None:
    """A DNSSEC-signed zone stops start-up with one line saying it cannot be served yet."""
    (tmp_path / "s.test.zone").write_text(
        "$ORIGIN s.test.\n$TTL 300\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n"
        "ns RRSIG A 13 2 300 20300101000000 20200101000000 1 s.test. "
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==\n"
    )
    with pytest.raises(StartupError, match=r"s\.test\.zone: RRSIG at ns\.s\.test\.: DNSSEC-signed"):
        load_store(tmp_path, [])


def test_control_socket_in_missing_directory() -> None:
    """--control in a directory that does not exist stops start-up with one line, no traceback."""
    result = run_dnstls(
        ["--zones", str(ZONES), "--listen", "127.0.0.1:0", "--control", "/nonexistent/dir/sock"]
    )
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert "Traceback" not in result.stdout + result.stderr
    assert lines[-1].startswith("twistd dnstls: cannot make the control socket /nonexistent/dir/sock")
