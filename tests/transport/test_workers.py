"""
Tests for C{--workers N} (L{dnstls.transport.workers}): a supervisor and N worker
processes on one set of ports, with real processes on loopback, and the
supervisor's restart policy with a fake reactor.
"""

from __future__ import annotations

import collections
import io
import os
import re
import select
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype
import pytest
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from dnstls.ready import Listener, Ready, ReadyChannel
from dnstls.transport.workerprocess import worker_arguments
from dnstls.transport.workers import MAX_FAILURES, STABLE_AFTER, WorkersService
from tests.certs import make_ca, make_leaf
from tests.support import DnstlsProcess, run_dnstls

ZONE_TEXT = """$ORIGIN workers.test.
$TTL 300
@   SOA ns hostmaster {serial} 7200 3600 1209600 300
    NS  ns
ns  A   192.0.2.53
www A   {address}
"""


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether process C{pid} runs (a zombie nobody reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def children(pid: int) -> set[int]:
    """The running processes whose parent is C{pid}, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def ready_count(process: DnstlsProcess, start: int = 0) -> int:
    """How many times a worker logged that it serves, from line C{start} on."""
    return sum(
        bool(re.search(r"worker \d+ \(pid \d+\): .*(?<!reload: )serving \d+ zones?\b", line))
        for line in process.lines[start:]
    )


def identity_query() -> dns.message.Message:
    return dns.message.make_query("id.server.", dns.rdatatype.TXT, dns.rdataclass.CH)


def text_of(reply: dns.message.Message) -> str:
    [rrset] = reply.answer
    return b"".join(next(iter(rrset)).strings).decode()


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(str(r) for rrset in reply.answer for r in rrset)


def tcp_pair(host: str, port: int, second: dns.message.Message) -> tuple[str, dns.message.Message]:
    """On one TCP connection (so one worker): its identity, and the reply to C{second}."""
    with socket.create_connection((host, port), timeout=5) as sock:
        dns.query.send_tcp(sock, identity_query())
        who, _ = dns.query.receive_tcp(sock, time.time() + 5)
        dns.query.send_tcp(sock, second)
        reply, _ = dns.query.receive_tcp(sock, time.time() + 5)
    return text_of(who), reply


@pytest.fixture
def zone(tmp_path: Path) -> Path:
    zones = tmp_path / "zones"
    zones.mkdir()
    path = zones / "workers.test.zone"
    path.write_text(ZONE_TEXT.format(serial=1, address="192.0.2.1"))
    return path


@pytest.fixture
def server(zone: Path) -> Iterator[DnstlsProcess]:
    process = DnstlsProcess(
        [
            "--zones", str(zone.parent), "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
            "--workers", "2", "--identity", "w{worker}",
        ]
    )
    try:
        wait_for(lambda: ready_count(process) == 2)
        yield process
    finally:
        process.stop()


def test_workers_share_every_port(server: DnstlsProcess) -> None:
    """With --workers 2, two worker processes run under the server, and both answer on the one
    UDP, TCP and TLS port (200 datagrams from different source ports, 20 TCP and 20 TLS
    connections), each giving its own number in id.server."""
    assert len(children(server.process.pid)) == 2
    host, port = server.address("udp")
    assert server.address("tcp") == (host, port)
    udp = collections.Counter(
        text_of(dns.query.udp(identity_query(), host, port=port, timeout=5)) for _ in range(200)
    )
    tcp = collections.Counter(
        text_of(dns.query.tcp(identity_query(), host, port=port, timeout=5)) for _ in range(20)
    )
    tls_host, tls_port = server.address("tls")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = collections.Counter(
        text_of(dns.query.tls(identity_query(), tls_host, port=tls_port, timeout=5, ssl_context=context))
        for _ in range(20)
    )
    assert set(udp) == {"w1", "w2"}
    assert set(tcp) == {"w1", "w2"}
    assert set(tls) == {"w1", "w2"}


def test_reload_reaches_every_worker(server: DnstlsProcess, zone: Path) -> None:
    """SIGHUP to the server after the zone file changed makes every worker serve the new data
    (each of 24 TCP connections, on both workers, and 100 datagrams see it)."""
    host, port = server.address("tcp")
    query = dns.message.make_query("www.workers.test.", "A")
    zone.write_text(ZONE_TEXT.format(serial=2, address="192.0.2.2"))
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: sum("reload: serving 1 zone:" in line for line in server.lines) == 2)
    seen = collections.defaultdict(set)
    for _ in range(24):
        who, reply = tcp_pair(host, port, query)
        seen[who].add(tuple(addresses(reply)))
    assert dict(seen) == {"w1": {("192.0.2.2",)}, "w2": {("192.0.2.2",)}}
    for _ in range(100):
        assert addresses(dns.query.udp(query, host, port=port, timeout=5)) == ["192.0.2.2"]


def test_stop_stops_workers_and_frees_ports(zone: Path) -> None:
    """Stopping the server (SIGTERM) leaves no worker process, and its UDP and TCP port can be
    bound again."""
    process = DnstlsProcess(
        ["--zones", str(zone.parent), "--listen", "127.0.0.1:0", "--workers", "2"]
    )
    try:
        wait_for(lambda: ready_count(process) == 2)
        workers = children(process.process.pid)
        assert len(workers) == 2
        host, port = process.address("udp")
    finally:
        process.stop()
    # twistd ends by re-raising the SIGTERM it handled; -SIGKILL would
    # mean the stop hung and DnstlsProcess had to kill it
    assert process.process.returncode == -signal.SIGTERM
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10)
    with socket.socket(type=socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind((host, port))
        tcp.bind((host, port))


def test_killed_worker_is_restarted(server: DnstlsProcess) -> None:
    """A worker killed outright is replaced by a new process, and both workers answer again."""
    first = children(server.process.pid)
    victim = min(first)
    lines = len(server.lines)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(children(server.process.pid) - first) == 1)
    wait_for(lambda: ready_count(server, lines) == 1)
    assert any("restarting it" in line for line in server.lines[lines:])
    assert not alive(victim)
    host, port = server.address("udp")
    answers = {
        text_of(dns.query.udp(identity_query(), host, port=port, timeout=5)) for _ in range(200)
    }
    assert answers == {"w1", "w2"}


def test_killed_server_takes_workers(zone: Path) -> None:
    """A server killed outright (SIGKILL) takes its worker processes with it."""
    process = DnstlsProcess(["--zones", str(zone.parent), "--listen", "127.0.0.1:0", "--workers", "2"])
    try:
        wait_for(lambda: ready_count(process) == 2)
        workers = children(process.process.pid)
        assert len(workers) == 2
        process.process.kill()
        process.process.wait(5)
        wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10)
    finally:
        process.stop()


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_workers_usage_error(value: str) -> None:
    """--workers takes a whole number above 0; anything else is one line on standard error and
    exit status 2."""
    result = run_dnstls(["--listen", "127.0.0.1:0", "--workers", value])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--workers" in result.stderr


def test_workers_refuse_control(tmp_path: Path) -> None:
    """--workers with the test kit's --control socket is a usage error, exit status 2."""
    result = run_dnstls(
        ["--listen", "127.0.0.1:0", "--workers", "2", "--control", str(tmp_path / "c.sock")]
    )
    assert result.returncode == 2
    assert "--workers and --control" in result.stderr


def test_port_in_use_is_a_startup_error() -> None:
    """A port another process holds, even with SO_REUSEPORT, is a one-line start-up error, not
    shared."""
    with socket.socket(type=socket.SOCK_DGRAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        result = run_dnstls(["--listen", f"127.0.0.1:{port}", "--workers", "2"])
    assert result.returncode == 1
    assert "address already in use" in result.stderr
    assert result.stderr.count("\n") == 1


def test_one_worker_starts_no_process(zone: Path) -> None:
    """The default, one worker, serves from the process itself, with no child."""
    process = DnstlsProcess(["--zones", str(zone.parent), "--listen", "127.0.0.1:0"])
    try:
        assert children(process.process.pid) == set()
        host, port = process.address("udp")
        query = dns.message.make_query("www.workers.test.", "A")
        assert addresses(dns.query.udp(query, host, port=port, timeout=5)) == ["192.0.2.1"]
    finally:
        process.stop()


# The pieces, without processes.


def test_worker_arguments() -> None:
    """A worker runs the server's options with --workers 1, the shared state directory, and its
    number in place of {worker} in --identity."""
    args = ["--listen", "127.0.0.1:0", "--workers", "2", "--identity", "ns1-{worker}"]
    assert worker_arguments(args, 2, "/state", "ns1-{worker}") == [
        *args, "--workers", "1", "--state-dir", "/state", "--identity", "ns1-2",
    ]
    assert worker_arguments(["--workers=2"], 1, "/s", "plain") == [
        "--workers=2", "--workers", "1", "--state-dir", "/s",
    ]


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class FakeReactor(Clock):
    running = True

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, FakeProcess, dict[int, object], dict[str, str]]] = []
        self.stopped = False

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: dict[str, str],
                     childFDs: dict[int, object]) -> FakeProcess:
        process = FakeProcess(1000 + len(self.spawned))
        protocol.makeConnection(process)
        self.spawned.append((protocol, process, childFDs, env))
        return process

    def stop(self) -> None:
        self.stopped = True


def supervisor(
    count: int = 2, stderr: io.StringIO | None = None, ready: ReadyChannel | None = None
) -> tuple[WorkersService, FakeReactor, list[int], list[socket.socket]]:
    reactor = FakeReactor()
    exits: list[int] = []
    socks = [socket.socket(type=socket.SOCK_DGRAM) for _ in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    service = WorkersService(
        reactor, [[("udp", s)] for s in socks], lambda n: [f"--n={n}"], exit_later=exits.append,
        stderr=stderr, ready=ready,
    )
    service._catch_hangup = lambda: None  # type: ignore[method-assign]
    service.startService()
    return service, reactor, exits, socks


def say(protocol: Any, text: bytes, fd: int = 1) -> None:
    protocol.childDataReceived(fd, text)


def report_ready(protocol: Any) -> None:
    """The worker says on its ready pipe that it serves one zone."""
    ready = Ready(protocol.pid, (Listener("udp", "127.0.0.1", 5300),), (("w.test.", 1),))
    say(protocol, ready.to_json(), fd=protocol.ready_fd)


def end(protocol: Any, code: int = 1) -> None:
    protocol.processEnded(Failure(ProcessTerminated(exitCode=code)))


def test_restart_backs_off_then_gives_up() -> None:
    """A worker that keeps dying soon after starting is restarted after growing delays, then
    given up with its sockets closed; the other worker keeps serving."""
    service, reactor, exits, socks = supervisor()
    for protocol, *_ in list(reactor.spawned):
        report_ready(protocol)
    delays = []
    for _ in range(MAX_FAILURES):
        protocol = service.workers[0]
        assert protocol is not None
        before = len(reactor.spawned)
        end(protocol)
        [call] = reactor.getDelayedCalls()
        delays.append(call.getTime() - reactor.seconds())
        reactor.advance(delays[-1])
        assert len(reactor.spawned) == before + 1
        report_ready(reactor.spawned[-1][0])
    assert delays == sorted(delays) and delays[0] < delays[-1]
    protocol = service.workers[0]
    assert protocol is not None
    end(protocol)
    assert reactor.getDelayedCalls() == []
    assert socks[0].fileno() == -1 and socks[1].fileno() != -1
    assert exits == [] and not reactor.stopped
    socks[1].close()


def test_supervisor_ready_when_every_worker_is() -> None:
    """Each worker gets a ready pipe and --ready-fd naming it; a worker's log saying it serves
    does not make it ready, its pipe does; once both have reported, the supervisor writes its
    own report with its bound port, the zones and both workers' pids."""
    read, write = os.pipe()
    service, reactor, exits, socks = supervisor(ready=ReadyChannel(write))
    first, second = (entry[0] for entry in reactor.spawned)
    for protocol, _, fds, _ in reactor.spawned:
        assert fds[protocol.ready_fd] == "r"
    say(first, b"[dnstls.server.ServerService#info] serving 1 zone: w.test. (serial 1)\n")
    report_ready(first)
    assert not second.ready
    assert select.select([read], [], [], 0)[0] == []
    report_ready(second)
    with open(read, "rb") as pipe:
        ready = Ready.from_json(pipe.read())
    assert ready.pid == os.getpid()
    assert ready.listening == (Listener("udp", "127.0.0.1", socks[0].getsockname()[1]),)
    assert ready.zones == (("w.test.", 1),)
    assert ready.workers == ((1, first.pid), (2, second.pid))
    for sock in socks:
        sock.close()


def test_long_ready_line_makes_a_worker_ready() -> None:
    """A worker serving thousands of zones writes a ready line far longer than one pipe read; it
    arrives in 8 KiB pieces and the worker is ready once the line is whole."""
    service, reactor, exits, socks = supervisor(count=1)
    [(protocol, *_)] = reactor.spawned
    zones = tuple((f"zone{n}.test.", n) for n in range(5000))
    line = Ready(protocol.pid, (Listener("udp", "127.0.0.1", 5300),), zones).to_json()
    assert len(line) > 200_000
    for start in range(0, len(line), 8192):
        assert not protocol.ready
        say(protocol, line[start : start + 8192], fd=protocol.ready_fd)
    assert protocol.ready and protocol.report.zones == zones
    socks[0].close()


def test_hangup_while_a_worker_starts_reaches_it_once_ready() -> None:
    """A SIGHUP while one worker is still starting goes at once to the one that serves, and to
    the starting one as soon as it reports that it serves, once."""
    service, reactor, exits, socks = supervisor()
    first, second = (entry[1] for entry in reactor.spawned)
    report_ready(reactor.spawned[0][0])
    service.reload()
    assert first.signals == ["HUP"] and second.signals == []
    report_ready(reactor.spawned[1][0])
    assert second.signals == ["HUP"]
    report_ready(reactor.spawned[1][0])
    assert second.signals == ["HUP"] and first.signals == ["HUP"]
    for sock in socks:
        sock.close()


def test_worker_that_served_long_restarts_at_once() -> None:
    """A worker that served a while before it died is restarted without delay, however often
    it failed before."""
    service, reactor, exits, socks = supervisor()
    for protocol, *_ in list(reactor.spawned):
        report_ready(protocol)
    first = service.workers[0]
    assert first is not None
    end(first)
    [call] = reactor.getDelayedCalls()
    assert call.getTime() > reactor.seconds()
    reactor.advance(call.getTime() - reactor.seconds())
    restarted = service.workers[0]
    assert restarted is not None and restarted is not first
    report_ready(restarted)
    reactor.advance(STABLE_AFTER)
    end(restarted)
    [call] = reactor.getDelayedCalls()
    assert call.getTime() == reactor.seconds()
    for sock in socks:
        sock.close()


def test_worker_that_cannot_start_stops_server() -> None:
    """A worker that exits before serving stops the server with exit status 1 and one line on
    standard error saying why."""
    stderr = io.StringIO()
    service, reactor, exits, socks = supervisor(stderr=stderr)
    protocol = reactor.spawned[0][0]
    say(protocol, b"twistd dnstls: zones: permission denied\n", fd=2)
    end(protocol)
    assert exits == [1]
    assert reactor.stopped
    assert stderr.getvalue() == (
        "twistd dnstls: worker 1 did not start: twistd dnstls: zones: permission denied\n"
    )
    for sock in socks:
        sock.close()


def test_hangup_and_stop_signal_workers() -> None:
    """SIGHUP reaches the workers that are serving, and stopping sends SIGTERM, then SIGKILL to
    a worker still running after the grace period."""
    service, reactor, exits, socks = supervisor()
    first, second = (entry[0] for entry in reactor.spawned)
    report_ready(first)
    service.reload()
    assert reactor.spawned[0][1].signals == ["HUP"]
    assert reactor.spawned[1][1].signals == []
    stopped = service.stopService()
    assert [entry[1].signals for entry in reactor.spawned] == [["HUP", "TERM"], ["TERM"]]
    first.processEnded(Failure(ProcessDone(0)))
    reactor.advance(10)
    assert reactor.spawned[1][1].signals == ["TERM", "KILL"]
    end(second, 9)
    results: list[object] = []
    stopped.addCallback(results.append)
    assert results == [None]
    assert all(sock.fileno() == -1 for sock in socks)
    assert reactor.getDelayedCalls() == []


def test_worker_that_cannot_be_run_stops_server() -> None:
    """A worker whose program cannot be run (the user twistd dropped to may not read the
    interpreter) stops the server with exit status 1 and one line saying why."""
    stderr = io.StringIO()

    class Refusing(FakeReactor):
        def spawnProcess(self, *args: Any, **kwargs: Any) -> FakeProcess:
            raise PermissionError(13, "Permission denied")

    reactor = Refusing()
    exits: list[int] = []
    sock = socket.socket(type=socket.SOCK_DGRAM)
    service = WorkersService(
        reactor, [[("udp", sock)], [("udp", sock)]], lambda n: [], executable="/x/python",
        exit_later=exits.append, stderr=stderr,
    )
    service._catch_hangup = lambda: None  # type: ignore[method-assign]
    service.startService()
    assert exits == [1]
    assert reactor.stopped
    assert stderr.getvalue() == (
        "twistd dnstls: worker 1 did not start: cannot run /x/python: permission denied\n"
    )
    sock.close()


def test_restarted_worker_serves_certificate_read_at_start(tmp_path: Path) -> None:
    """A worker restarted after the key file became unreadable (gone) still serves the
    certificate the server read at start, over TLS."""
    leaf = make_leaf(make_ca(tmp_path), tmp_path / "tls", ("dns.workers.test",))
    process = DnstlsProcess(
        [
            "--listen-tls", "127.0.0.1:0", "--workers", "2", "--identity", "w{worker}",
            "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key_path),
        ]
    )
    try:
        wait_for(lambda: ready_count(process) == 2)
        leaf.key_path.unlink()
        leaf.cert.unlink()
        first = children(process.process.pid)
        lines = len(process.lines)
        os.kill(min(first), signal.SIGKILL)
        wait_for(lambda: len(children(process.process.pid) - first) == 1)
        wait_for(lambda: ready_count(process, lines) == 1)
        host, port = process.address("tls")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        seen: collections.Counter[str] = collections.Counter()
        for _ in range(20):
            with socket.create_connection((host, port), timeout=5) as raw:
                with context.wrap_socket(raw) as tls:
                    assert tls.getpeercert(binary_form=True) == leaf.der
                    dns.query.send_tcp(tls, identity_query())
                    reply, _ = dns.query.receive_tcp(tls, time.time() + 5)
                    seen[text_of(reply)] += 1
        assert set(seen) == {"w1", "w2"}
    finally:
        process.stop()
