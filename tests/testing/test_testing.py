"""
The example test suite of a DNS client developer, and the test of the
fixture itself: a real dnstls from the pytest plugin (C{dnstls_factory},
C{dnstls_test_server}), queried by dnspython and by L{dnstls.client}, with
every fault knob, the query log, the three kinds of zones, start-up time and
teardown.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from dnstls.client import Client, ClientError, TLSAuth, UpgradeDeclined, probe_query
from dnstls.ready import Listener, Ready
from dnstls.testing import TestServer, TestServerError, start_server
from dnstls.testing.process import LoggedProcess, ReadyPipe
from dnstls.transport.upgrade import TO

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"
README_SECTION = "## Testing a DNS client with dnstls"

WWW = "www.example.test."
MAIL = "mail.example.test."
#: RFC 8467: a padded response is a multiple of this many octets.
BLOCK = 468

Factory = Callable[..., TestServer]


# Helpers a client developer would write: raw frames on raw sockets.


def query(name: str = WWW, rdtype: str = "A", **options: Any) -> dns.message.Message:
    """
    A query with EDNS, as a modern stub sends it.
    """
    options.setdefault("use_edns", 0)
    return dns.message.make_query(name, rdtype, **options)


def keepalive_option() -> dns.edns.Option:
    """
    An empty edns-tcp-keepalive option (RFC 7828), as a client sends it.
    """
    return dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, b"")


def keepalive_of(reply: dns.message.Message) -> int | None:
    """
    The keepalive the server advertised in C{reply}, in units of 100 ms.
    """
    for option in reply.options:
        if option.otype == dns.edns.OptionType.KEEPALIVE:
            data = option.to_wire() or b""
            return int(struct.unpack("!H", data)[0]) if data else None
    return None


def frame(wire: bytes) -> bytes:
    """
    C{wire} with its two-octet length (RFC 1035 4.2.2).
    """
    return struct.pack("!H", len(wire)) + wire


def read_exactly(sock: socket.socket, count: int) -> bytes | None:
    """
    C{count} octets from C{sock}, or C{None} if the server closed first.
    """
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_wire(sock: socket.socket) -> bytes | None:
    """
    One framed reply's bytes, or C{None} if the server closed the
    connection.
    """
    head = read_exactly(sock, 2)
    if head is None:
        return None
    return read_exactly(sock, struct.unpack("!H", head)[0])


def read_reply(sock: socket.socket) -> dns.message.Message | None:
    """
    One framed reply, or C{None} if the server closed the connection.
    """
    wire = read_wire(sock)
    return None if wire is None else dns.message.from_wire(wire)


def closed_by_server(sock: socket.socket) -> bool:
    """
    Whether the server has closed C{sock} (EOF or a reset), within its
    timeout.
    """
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def tcp_connect(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    """
    A TCP connection to C{address}.
    """
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def tls_context(server: TestServer) -> ssl.SSLContext:
    """
    A client context that trusts the server's throwaway CA and offers
    ALPN C{dot}.
    """
    context = ssl.create_default_context(cafile=server.ca_path)
    context.set_alpn_protocols(["dot"])
    return context


def tls_connect(
    server: TestServer,
    context: ssl.SSLContext | None = None,
    session: ssl.SSLSession | None = None,
    timeout: float = 5.0,
) -> ssl.SSLSocket:
    """
    A verified DNS-over-TLS connection to C{server}.
    """
    sock = tcp_connect(server.tls, timeout)
    try:
        return (context or tls_context(server)).wrap_socket(
            sock, server_hostname=server.server_name, session=session
        )
    except BaseException:
        sock.close()
        raise


def udp(server: TestServer, message: dns.message.Message, timeout: float = 5.0) -> dns.message.Message:
    """
    C{message} over UDP to C{server}.
    """
    host, port = server.udp
    return dns.query.udp(message, host, port=port, timeout=timeout)


def tcp(server: TestServer, message: dns.message.Message, timeout: float = 5.0) -> dns.message.Message:
    """
    C{message} over TCP to C{server}.
    """
    host, port = server.tcp
    return dns.query.tcp(message, host, port=port, timeout=timeout)


def tls(server: TestServer, message: dns.message.Message, timeout: float = 5.0) -> dns.message.Message:
    """
    C{message} over DNS over TLS to C{server}, verifying its certificate
    against the throwaway CA.
    """
    host, port = server.tls
    return dns.query.tls(
        message, host, port=port, timeout=timeout,
        verify=server.ca_path, server_hostname=server.server_name,
    )


def addresses(reply: dns.message.Message) -> list[str]:
    """
    The A and AAAA addresses in C{reply}'s answer.
    """
    return [rdata.address for rrset in reply.answer for rdata in rrset if hasattr(rdata, "address")]


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """
    C{call}'s result and how many seconds it took.
    """
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def refuses(address: tuple[str, int]) -> bool:
    """
    Whether nothing listens on TCP C{address}.
    """
    try:
        with socket.create_connection(address, timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def udp_refuses(address: tuple[str, int]) -> bool:
    """
    Whether a UDP query to C{address} is refused (ICMP port unreachable).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect(address)
        sock.send(query().to_wire())
        try:
            sock.recv(512)
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            return False
        return False


def pid_gone(pid: int) -> bool:
    """
    Whether no process has the id C{pid} (or only a zombie does).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status.rsplit(")", 1)[1].split()[0] == "Z"


def readme_example() -> str:
    """
    The example test of the README's section on testing a DNS client.
    """
    text = README.read_text(encoding="utf-8")
    section = text.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README's testing section has no python example"
    return match.group(1)


def run_pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """
    Run pytest on C{directory} in a fresh process, as a user would.
    """
    environment = dict(os.environ)
    environment.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=directory, env=environment, capture_output=True, text=True, timeout=60,
    )


# The README example, start-up and teardown.


def test_readme_example(tmp_path: Path) -> None:
    """
    The README's example test, copied into a new directory, passes as it is.
    """
    (tmp_path / "test_my_client.py").write_text(readme_example(), encoding="utf-8")
    result = run_pytest(tmp_path, "test_my_client.py")
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b2 passed\b", result.stdout), result.stdout


def test_start_up_is_quick(dnstls_factory: Factory) -> None:
    """
    A server is ready to answer well within a second or so of asking.
    """
    server, elapsed = timed(dnstls_factory)
    print(f"dnstls test server started in {elapsed:.3f} s")
    assert elapsed < 5
    assert addresses(udp(server, query())) == ["192.0.2.80"]


def test_teardown_leaves_nothing(tmp_path: Path) -> None:
    """
    After a test session, passing or failing tests leave no server process,
    no listening port and no directory behind.
    """
    record = tmp_path / "servers.json"
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            f"""
            import json

            SERVERS = []

            def _keep(server):
                SERVERS.append({{
                    "pid": server.process.pid, "udp": server.udp, "tcp": server.tcp,
                    "tls": server.tls, "directory": str(server.directory),
                    "ca": server.ca_path,
                }})
                with open({str(record)!r}, "w") as f:
                    json.dump(SERVERS, f)

            def test_passes(dnstls_test_server, dnstls_factory):
                _keep(dnstls_test_server)
                _keep(dnstls_factory({{"x": ["A 192.0.2.9"]}}, certificate="expired"))

            def test_fails(dnstls_factory):
                _keep(dnstls_factory())
                assert False, "a failing test still stops its server"
            """
        ),
        encoding="utf-8",
    )
    result = run_pytest(tmp_path, "test_inner.py")
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    servers = json.loads(record.read_text())
    assert len(servers) == 3
    for server in servers:
        assert pid_gone(server["pid"])
        assert refuses(tuple(server["tcp"]))
        assert refuses(tuple(server["tls"]))
        assert udp_refuses(tuple(server["udp"]))
        assert not Path(server["directory"]).exists()
        assert not Path(server["ca"]).exists()


def test_stop_in_the_middle_of_a_test(dnstls_factory: Factory) -> None:
    """
    Stopping a server by hand ends its process, closes its ports and
    removes its directory; the fixture's own stop afterwards is harmless.
    """
    server = dnstls_factory()
    assert server.directory.is_dir()
    server.stop()
    assert pid_gone(server.process.pid)
    assert refuses(server.tcp) and refuses(server.tls)
    assert udp_refuses(server.udp)
    assert not server.directory.exists()
    server.stop()


def test_context_manager_without_pytest() -> None:
    """
    Outside pytest, C{with start_server(...)} gives a server for the block
    and nothing is left after it.
    """
    with start_server({"www": ["A 192.0.2.7"]}) as server:
        assert addresses(udp(server, query())) == ["192.0.2.7"]
    assert pid_gone(server.process.pid)
    assert not server.directory.exists()


def test_ready_pipe_reads_the_report() -> None:
    """
    A child's readiness is read from the pipe it was given, not from its
    output: the report it writes there, or C{False} once the pipe ends
    without one.
    """
    ready = Ready(1, (Listener("tls", "::1", 8853),), (("t.", 1),))
    for line, expected in ((ready.to_json(), ready), (b"", False), (b"serving 1 zone\n", False)):
        pipe = ReadyPipe()
        script = f"import os; print('serving 1 zone', flush=True); os.write({pipe.write_fd}, {line!r})"
        child = LoggedProcess([sys.executable, "-c", script], pass_fds=[pipe.write_fd])
        pipe.started()
        child.process.wait(15)
        deadline = time.monotonic() + 15
        while pipe.outcome() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pipe.outcome() == expected
        child.stop()


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    """
    Stopping a test child that ignores SIGTERM kills it and removes its
    directory, with its output kept.
    """
    directory = tmp_path / "child"
    directory.mkdir()
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = LoggedProcess([sys.executable, "-c", script], directory=directory)
    assert child.wait_for(lambda: child.lines or None, 15) == ["ignoring SIGTERM"]
    child.stop()
    assert child.process.returncode == -signal.SIGKILL
    assert pid_gone(child.process.pid)
    assert not directory.exists()
    assert child.output == "ignoring SIGTERM"
    child.stop()


# Zones.


def test_zone_from_text(dnstls_factory: Factory) -> None:
    """
    Zone text with its SOA serves its names, relative to C{origin}.
    """
    server = dnstls_factory(
        textwrap.dedent(
            """\
            $TTL 60
            @    SOA ns hostmaster 7 3600 600 86400 60
            @    NS  ns
            ns   A   192.0.2.53
            api  A   192.0.2.10
            api  TXT "hello"
            """
        ),
        origin="client.test",
    )
    reply = udp(server, query("api.client.test.", "TXT"))
    assert reply.answer[0][0].strings == (b"hello",)
    assert addresses(tcp(server, query("api.client.test."))) == ["192.0.2.10"]
    assert server.origin == "client.test."


def test_zone_from_a_few_lines(dnstls_factory: Factory) -> None:
    """
    Zone text of bare records, even one line, serves them: a TTL, an SOA
    and NS are made up.
    """
    server = dnstls_factory("api A 192.0.2.10")
    assert addresses(udp(server, query("api.example.test."))) == ["192.0.2.10"]
    server = dnstls_factory("$ORIGIN lines.test.\napi A 192.0.2.11\napi AAAA 2001:db8::11\n")
    assert server.origin == "lines.test."
    assert addresses(udp(server, query("api.lines.test.", "AAAA"))) == ["2001:db8::11"]
    assert udp(server, query("lines.test.", "NS")).answer


def test_zone_from_records(dnstls_factory: Factory) -> None:
    """
    A dict of records serves them, the apex as C{@}, with an SOA and NS
    made up.
    """
    server = dnstls_factory(
        {"@": ["A 192.0.2.1"], "api": ["A 192.0.2.10", "AAAA 2001:db8::10"]}, origin="records.test."
    )
    assert addresses(udp(server, query("records.test."))) == ["192.0.2.1"]
    assert addresses(tls(server, query("api.records.test.", "AAAA"))) == ["2001:db8::10"]
    reply = udp(server, query("records.test.", "SOA"))
    assert reply.answer and reply.answer[0].rdtype == dns.rdatatype.SOA
    assert udp(server, query("nothing.records.test.")).rcode() == dns.rcode.NXDOMAIN


def test_zone_from_file(dnstls_factory: Factory, tmp_path: Path) -> None:
    """
    A zone file's path serves that file, with its own C{$ORIGIN}.
    """
    path = tmp_path / "file.test.zone"
    path.write_text(
        "$ORIGIN file.test.\n$TTL 60\n"
        "@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.53\n"
        "www A 192.0.2.44\n"
    )
    for zones in (path, str(path)):
        server = dnstls_factory(zones)
        assert addresses(udp(server, query("www.file.test."))) == ["192.0.2.44"]


def test_default_zone(dnstls_test_server: TestServer) -> None:
    """
    The ready-made server answers C{www}, C{mail} and the apex of
    C{example.test.} on every transport.
    """
    server = dnstls_test_server
    assert addresses(udp(server, query())) == ["192.0.2.80"]
    assert addresses(tcp(server, query(WWW, "AAAA"))) == ["2001:db8::80"]
    assert addresses(tls(server, query(MAIL))) == ["192.0.2.25"]
    assert udp(server, query("example.test.", "MX")).answer[0][0].preference == 10


def test_bad_zone_fails_to_start(dnstls_factory: Factory) -> None:
    """
    A zone the server cannot load fails the start with the server's own
    complaint.
    """
    with pytest.raises(TestServerError, match="did not start"):
        dnstls_factory({"www": ["A not-an-address"]})


# Names outside the zones.


def test_other_names_refused(dnstls_test_server: TestServer) -> None:
    """
    By default the server answers only from its zones: another name is
    REFUSED with RA=0, so a client test never reaches the real root.
    """
    reply = udp(dnstls_test_server, query("www.elsewhere.invalid."))
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer
    assert not reply.flags & dns.flags.RA


def test_forward_to_another_server(dnstls_factory: Factory) -> None:
    """
    C{forward=[server]} makes names outside the zone resolve through that
    server, which logs the question; the zone is still answered locally.
    """
    upstream = dnstls_factory({"www": ["A 192.0.2.99"]}, origin="up.test.")
    server = dnstls_factory(forward=[upstream])
    reply = udp(server, query("www.up.test."))
    assert addresses(reply) == ["192.0.2.99"]
    assert reply.flags & dns.flags.RA
    assert addresses(udp(server, query())) == ["192.0.2.80"]
    assert [q["name"] for q in upstream.queries()] == ["www.up.test."]


def test_forward_as_text(dnstls_factory: Factory) -> None:
    """C{forward=["HOST:PORT"]} forwards to the resolver at that address."""
    upstream = dnstls_factory({"www": ["A 192.0.2.98"]}, origin="up.test.")
    host, port = upstream.udp
    server = dnstls_factory(forward=[f"{host}:{port}"])
    assert addresses(udp(server, query("www.up.test."))) == ["192.0.2.98"]


ROOT_ZONE = """\
$ORIGIN .
$TTL 300
@ SOA a.root-servers.test. hostmaster.root-servers.test. 1 3600 600 86400 60
@ NS a.root-servers.test.
a.root-servers.test. A 127.55.0.1
www.hinted.test. A 192.0.2.5
"""


def test_root_hints(dnstls_factory: Factory, tmp_path: Path) -> None:
    """
    C{root_hints=path} makes the server resolve other names by iterating
    from the root servers that file names, here a test server for the root.
    """
    if os.geteuid() != 0:
        pytest.skip("a root server listens on port 53, which needs root")
    root = dnstls_factory(ROOT_ZONE, args=["--listen", "127.55.0.1:53"])
    hints = tmp_path / "root.hints"
    hints.write_text(
        ". 3600000 NS a.root-servers.test.\na.root-servers.test. 3600000 A 127.55.0.1\n"
    )
    server = dnstls_factory(root_hints=hints, args=["--no-qname-minimisation"])
    reply = udp(server, query("www.hinted.test."))
    assert addresses(reply) == ["192.0.2.5"]
    assert reply.flags & dns.flags.RA
    assert "www.hinted.test." in [q["name"] for q in root.queries()]


# Faults: answers.


def test_delay_per_name(dnstls_test_server: TestServer) -> None:
    """
    A delay for one name holds its answers that long, and no other name's.
    """
    server = dnstls_test_server
    server.faults(delay={"www.example.test": 0.6})
    reply, slow = timed(lambda: udp(server, query()))
    assert addresses(reply) == ["192.0.2.80"]
    assert 0.6 <= slow < 4
    reply, fast = timed(lambda: udp(server, query(MAIL)))
    assert addresses(reply) == ["192.0.2.25"]
    assert fast < 0.5


def test_delay_every_name(dnstls_test_server: TestServer) -> None:
    """
    A delay for C{*} holds every answer, over UDP, TCP and TLS alike.
    """
    server = dnstls_test_server
    server.faults(delay={"*": 0.4})
    for ask in (udp, tcp, tls):
        reply, elapsed = timed(lambda ask=ask: ask(server, query(MAIL)))
        assert addresses(reply) == ["192.0.2.25"]
        assert 0.4 <= elapsed < 4, ask.__name__


def test_delay_set_at_start(dnstls_factory: Factory) -> None:
    """
    Faults given when the server starts are in force for the first query.
    """
    server = dnstls_factory(faults={"delay": {WWW: 0.4}, "rcodes": {MAIL: "REFUSED"}})
    _, elapsed = timed(lambda: udp(server, query()))
    assert elapsed >= 0.4
    assert udp(server, query(MAIL)).rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("rcode", ["SERVFAIL", "REFUSED"])
def test_rcode_for_a_name(dnstls_test_server: TestServer, rcode: str) -> None:
    """
    A name given an RCODE is answered with it on every transport; other
    names are answered as usual.
    """
    server = dnstls_test_server
    server.faults(rcodes={"www.example.test": rcode})
    for ask in (udp, tcp, tls):
        reply = ask(server, query())
        assert reply.rcode() == dns.rcode.from_text(rcode)
        assert not reply.answer
        assert addresses(ask(server, query(MAIL))) == ["192.0.2.25"]
    reply = tls(server, query(pad=128, options=[keepalive_option()]))
    assert reply.rcode() == dns.rcode.from_text(rcode)
    assert dns.edns.OptionType.PADDING in {o.otype for o in reply.options}
    assert keepalive_of(reply) == 300


def test_drop_a_name(dnstls_test_server: TestServer) -> None:
    """
    A dropped name gets no answer (a UDP client times out) while other names
    are answered.
    """
    server = dnstls_test_server
    server.faults(rcodes={WWW: "drop"})
    with pytest.raises(dns.exception.Timeout):
        udp(server, query(), timeout=0.5)
    assert addresses(udp(server, query(MAIL))) == ["192.0.2.25"]
    assert [q["name"] for q in server.queries()] == [WWW, MAIL]


def test_truncate_udp(dnstls_test_server: TestServer) -> None:
    """
    With truncation on, every UDP answer has TC=1 and no records, and the
    same query over TCP gets the whole answer.
    """
    server = dnstls_test_server
    server.faults(truncate_udp=True)
    reply = udp(server, query())
    assert reply.flags & dns.flags.TC
    assert not reply.answer
    whole = tcp(server, query())
    assert not whole.flags & dns.flags.TC
    assert addresses(whole) == ["192.0.2.80"]
    host, port = server.udp
    reply, used_tcp = dns.query.udp_with_fallback(query(), host, port=port, timeout=5)
    assert used_tcp and addresses(reply) == ["192.0.2.80"]


def test_faults_change_mid_test_and_reset(dnstls_test_server: TestServer) -> None:
    """
    Faults can be changed between queries, each change shows at once, and
    C{reset_faults} brings back normal answers.
    """
    server = dnstls_test_server
    assert udp(server, query()).rcode() == dns.rcode.NOERROR
    knobs = server.faults(rcodes={WWW: "SERVFAIL"}, truncate_udp=True)
    assert knobs["rcodes"] == {WWW: "SERVFAIL"} and knobs["truncate_udp"] is True
    assert udp(server, query()).rcode() == dns.rcode.SERVFAIL
    server.faults(rcodes={WWW: "REFUSED"})
    assert udp(server, query()).rcode() == dns.rcode.REFUSED
    assert udp(server, query(MAIL)).flags & dns.flags.TC
    server.reset_faults()
    reply = udp(server, query())
    assert reply.rcode() == dns.rcode.NOERROR and not reply.flags & dns.flags.TC
    assert addresses(reply) == ["192.0.2.80"]


def test_unknown_fault_is_an_error(dnstls_test_server: TestServer) -> None:
    """
    A misspelt knob or a bad value fails loudly and changes nothing.
    """
    server = dnstls_test_server
    before = server.faults()
    with pytest.raises(TestServerError, match="no fault named"):
        server.faults(delay={"*": 1}, trucate_udp=True)
    with pytest.raises(TestServerError, match="rcodes take"):
        server.faults(truncate_udp=True, rcodes={WWW: "NXDOMAIN"})
    for bad in ({"close_after": 0}, {"idle_timeout": -1}, {"delay": {"*": "soon"}}, {"reverse": "yes"}):
        with pytest.raises(TestServerError):
            server.faults(**bad)
    assert server.faults() == before
    _, elapsed = timed(lambda: udp(server, query()))
    assert elapsed < 0.5


def test_control_after_the_server_died(dnstls_factory: Factory) -> None:
    """
    Asking a server that has died for its log fails with its output, not
    a bare socket error.
    """
    server = dnstls_factory()
    server.process.kill()
    server.process.wait(5)
    with pytest.raises(TestServerError, match="exited"):
        server.queries()


# Faults: connections.


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_reverse_pipelined_answers(dnstls_test_server: TestServer, transport: str) -> None:
    """
    Queries pipelined in one write are answered in reverse order (and in
    order without the fault).
    """
    server = dnstls_test_server
    names = [WWW, MAIL, "example.test."]

    def ids_back() -> tuple[list[int], list[int]]:
        queries = [query(name) for name in names]
        connect = tls_connect if transport == "tls" else lambda s: tcp_connect(s.tcp)
        with connect(server) as sock:
            sock.sendall(b"".join(frame(q.to_wire()) for q in queries))
            replies = [read_reply(sock) for _ in queries]
        assert all(r is not None for r in replies)
        return [q.id for q in queries], [r.id for r in replies if r is not None]

    sent, received = ids_back()
    assert received == sent
    server.faults(reverse=True)
    sent, received = ids_back()
    assert received == list(reversed(sent))


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_close_after(dnstls_test_server: TestServer, transport: str) -> None:
    """
    With C{close_after=2} the server closes the connection after its second
    answer.
    """
    server = dnstls_test_server
    server.faults(close_after=2)
    connect = tls_connect if transport == "tls" else lambda s: tcp_connect(s.tcp)
    with connect(server) as sock:
        for name in (WWW, MAIL):
            sock.sendall(frame(query(name).to_wire()))
            reply = read_reply(sock)
            assert reply is not None and reply.rcode() == dns.rcode.NOERROR
        sock.settimeout(3)
        try:
            sock.sendall(frame(query().to_wire()))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_by_server(sock)
    with connect(server) as sock:
        sock.sendall(b"".join(frame(query(n).to_wire()) for n in (WWW, MAIL, WWW)))
        assert read_reply(sock) is not None
        assert read_reply(sock) is not None
        sock.settimeout(3)
        assert closed_by_server(sock)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_idle_timeout(dnstls_test_server: TestServer, transport: str) -> None:
    """
    With C{idle_timeout=1} a new connection that sends nothing is closed
    after about a second (the defaults are 10 and 30 s).
    """
    server = dnstls_test_server
    server.faults(idle_timeout=1)
    connect = tls_connect if transport == "tls" else lambda s: tcp_connect(s.tcp)
    with connect(server) as sock:
        sock.settimeout(5)
        closed, elapsed = timed(lambda: closed_by_server(sock))
    assert closed
    assert 0.7 <= elapsed < 4


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_keepalive_zero(dnstls_test_server: TestServer, transport: str) -> None:
    """
    A query with edns-tcp-keepalive is told 0 under the fault, and the
    connection's idle timeout otherwise.
    """
    server = dnstls_test_server
    ask = tls if transport == "tls" else tcp
    normal = keepalive_of(ask(server, query(options=[keepalive_option()])))
    assert normal is not None and normal > 0
    server.faults(keepalive_zero=True)
    assert keepalive_of(ask(server, query(options=[keepalive_option()]))) == 0


def test_idle_timeout_shows_in_keepalive(dnstls_test_server: TestServer) -> None:
    """
    The idle timeout fault is also what keepalive advertises on a new
    connection.
    """
    server = dnstls_test_server
    server.faults(idle_timeout=2.5)
    assert keepalive_of(tcp(server, query(options=[keepalive_option()]))) == 25


def test_no_padding(dnstls_test_server: TestServer) -> None:
    """
    A padded TLS query gets a reply padded to a multiple of 468 octets, and
    an unpadded one under the fault.
    """
    server = dnstls_test_server

    def reply_wire() -> bytes:
        with tls_connect(server) as sock:
            sock.sendall(frame(query(pad=128).to_wire()))
            wire = read_wire(sock)
        assert wire is not None
        return wire

    padded = reply_wire()
    assert len(padded) % BLOCK == 0
    assert dns.edns.OptionType.PADDING in {o.otype for o in dns.message.from_wire(padded).options}
    server.faults(no_padding=True)
    unpadded = reply_wire()
    assert len(unpadded) % BLOCK != 0
    assert len(unpadded) < len(padded)
    assert dns.edns.OptionType.PADDING not in {o.otype for o in dns.message.from_wire(unpadded).options}
    assert addresses(dns.message.from_wire(unpadded)) == ["192.0.2.80"]


# Faults: the STARTTLS upgrade.


def starttls_client(server: TestServer, **options: Any) -> Client:
    """
    The project's strict STARTTLS client, checking the name against the CA.
    """
    host, port = server.tcp
    auth = TLSAuth(hostname=server.server_name, ca_file=server.ca_path)
    return Client(host, port, "starttls", auth, timeout=5, **options)


def test_starttls_upgrades(dnstls_test_server: TestServer) -> None:
    """
    Without faults the strict STARTTLS client upgrades and gets its answer.
    """
    client = starttls_client(dnstls_test_server)
    assert addresses(client.query(query())) == ["192.0.2.80"]
    assert client.last_upgraded


def test_decline_upgrade(dnstls_test_server: TestServer) -> None:
    """
    Under C{decline_upgrade} the probe is answered NO_TLS with TO=0 and a
    strict client raises UpgradeDeclined; after a reset it upgrades.
    """
    server = dnstls_test_server
    server.faults(decline_upgrade=True)
    client = starttls_client(server)
    with pytest.raises(UpgradeDeclined):
        client.query(query())
    probe = client.last_probe_reply
    assert probe is not None
    assert not probe.ednsflags & TO
    assert probe.answer[0][0].strings == (b"NO_TLS",)
    lenient = starttls_client(server, strict=False)
    assert addresses(lenient.query(query())) == ["192.0.2.80"]
    assert not lenient.last_upgraded
    server.reset_faults()
    client = starttls_client(server)
    assert addresses(client.query(query())) == ["192.0.2.80"]
    assert client.last_upgraded


def test_abort_handshake(dnstls_test_server: TestServer) -> None:
    """
    Under C{abort_handshake} the probe gets TO=1, then the connection is
    closed and the client's TLS handshake fails.
    """
    server = dnstls_test_server
    server.faults(abort_handshake=True)
    with tcp_connect(server.tcp) as sock:
        sock.sendall(frame(probe_query().to_wire()))
        reply = read_reply(sock)
        assert reply is not None
        assert reply.ednsflags & TO
        assert reply.answer[0][0].strings == (b"STARTTLS",)
        with pytest.raises(OSError):
            tls_context(server).wrap_socket(sock, server_hostname=server.server_name)
    with pytest.raises(ClientError):
        starttls_client(server).query(query())


# Certificates.


@pytest.mark.parametrize("certificate", ["other-name", "expired"])
def test_bad_certificate_fails_verification(dnstls_factory: Factory, certificate: str) -> None:
    """
    A certificate for another name, or an expired one, fails a client that
    verifies it against the CA (dnspython's and the project's).
    """
    server = dnstls_factory(certificate=certificate)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls(server, query())
    host, port = server.tls
    checking = Client(host, port, "tls", TLSAuth(hostname=server.server_name, ca_file=server.ca_path))
    with pytest.raises(ClientError):
        checking.query(query())


def test_other_name_passes_a_pin(dnstls_factory: Factory) -> None:
    """
    A client that checks the SPKI pin, not the name, still works when the
    certificate is for another name.
    """
    server = dnstls_factory(certificate="other-name")
    host, port = server.tls
    pinned = Client(host, port, "tls", TLSAuth(pin=server.pin))
    assert addresses(pinned.query(query())) == ["192.0.2.80"]
    wrong = Client(host, port, "tls", TLSAuth(pin="A" * 43 + "="))
    with pytest.raises(ClientError, match="SPKI pin"):
        wrong.query(query())


def test_valid_certificate_and_pin(dnstls_test_server: TestServer) -> None:
    """
    The default certificate passes both name verification and the pin.
    """
    server = dnstls_test_server
    host, port = server.tls
    for auth in (TLSAuth(hostname=server.server_name, ca_file=server.ca_path), TLSAuth(pin=server.pin)):
        assert addresses(Client(host, port, "tls", auth).query(query())) == ["192.0.2.80"]


# The query log.


def test_log_of_a_tls_query(dnstls_test_server: TestServer) -> None:
    """
    A dnspython TLS query with padding and keepalive shows in the log with
    its transport, name, options, SNI and ALPN.
    """
    server = dnstls_test_server
    sent = query(WWW, "AAAA", pad=128, options=[keepalive_option()])
    tls(server, sent)
    [entry] = server.queries()
    assert entry["transport"] == "tls"
    assert entry["name"] == WWW and entry["type"] == "AAAA" and entry["rclass"] == "IN"
    assert entry["id"] == sent.id
    assert entry["edns"] == 0 and entry["to"] is False
    assert entry["padding"] is not None
    assert entry["keepalive"] is True
    assert int(dns.edns.OptionType.PADDING) in entry["options"]
    assert entry["upgraded"] is False
    assert entry["peer"].startswith("127.0.0.1:")
    assert entry["tls"]["sni"] == server.server_name
    assert entry["tls"]["alpn"] == "dot"
    assert entry["tls"]["resumed"] is False
    assert entry["tls"]["version"] in ("TLSv1.2", "TLSv1.3")


def test_log_of_plain_queries(dnstls_test_server: TestServer) -> None:
    """
    Plain UDP and TCP queries are logged without TLS details, and
    C{clear_queries} empties the log.
    """
    server = dnstls_test_server
    udp(server, dns.message.make_query(WWW, "A"))
    tcp(server, query(MAIL, "A", want_dnssec=True))
    first, second = server.queries()
    assert first["transport"] == "udp" and first["edns"] == -1 and first["payload"] is None
    assert first["tls"] is None and first["padding"] is None and first["keepalive"] is False
    assert second["transport"] == "tcp" and second["name"] == MAIL and second["do"] is True
    server.clear_queries()
    assert server.queries() == []
    udp(server, query())
    assert len(server.queries()) == 1


def test_log_of_starttls(dnstls_test_server: TestServer) -> None:
    """
    A STARTTLS exchange is logged as the probe over TCP with TO set, then
    the query marked upgraded, over TLS.
    """
    server = dnstls_test_server
    starttls_client(server).query(query())
    probe, asked = server.queries()
    assert probe["transport"] == "tcp"
    assert probe["name"] == "STARTTLS." and probe["rclass"] == "CH" and probe["type"] == "TXT"
    assert probe["to"] is True and probe["rd"] is False
    assert probe["upgraded"] is False
    assert asked["name"] == WWW
    assert asked["upgraded"] is True
    assert asked["transport"] == "tls"
    assert asked["tls"] is not None
    assert asked["tls"]["alpn"] == "dot"
    assert asked["tls"]["sni"] == server.server_name


def test_log_of_a_resumed_session(dnstls_test_server: TestServer) -> None:
    """
    A client that resumes its TLS session is logged with C{resumed} True,
    its first connection with False.
    """
    server = dnstls_test_server
    context = tls_context(server)
    with tls_connect(server, context) as sock:
        sock.sendall(frame(query().to_wire()))
        assert read_reply(sock) is not None
        session = sock.session
    assert session is not None
    with tls_connect(server, context, session=session) as sock:
        assert sock.session_reused
        sock.sendall(frame(query(MAIL).to_wire()))
        assert read_reply(sock) is not None
    first, second = server.queries()
    assert first["tls"]["resumed"] is False
    assert second["tls"]["resumed"] is True
