"""
Tests for C{--ready-fd} (L{dnstls.ready}): the one JSON line a server that
serves writes, checked in pieces and against the sockets a real C{twistd
dnstls} child (and one with C{--workers 2}) holds.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from dnstls.errors import StartupError
from dnstls.ready import Listener, Ready, ReadyChannel
from dnstls.tap import Options, ServerService, makeService
from dnstls.testing.process import twistd_dnstls
from dnstls.zones.zonefile import zone_files
from dnstls.zones.zoneset import read_zone
from tests.support import ROOT, ZONES, run_dnstls


def report() -> Ready:
    return Ready(
        42,
        (Listener("udp", "127.0.0.1", 5300), Listener("tls", "::1", 8853)),
        (("example.test.", 7),),
    )


def test_json_round_trip() -> None:
    """A report is one line of JSON, with the keys the README gives, and reads back as it was."""
    line = report().to_json()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "ready": True,
        "pid": 42,
        "listening": [
            {"transport": "udp", "address": "127.0.0.1", "port": 5300},
            {"transport": "tls", "address": "::1", "port": 8853},
        ],
        "zones": [{"origin": "example.test.", "serial": 7}],
    }
    assert Ready.from_json(line) == report()
    workers = Ready(1, (), (), ((1, 2), (2, 3)))
    assert json.loads(workers.to_json())["workers"] == [{"number": 1, "pid": 2}, {"number": 2, "pid": 3}]
    assert Ready.from_json(workers.to_json()) == workers


@pytest.mark.parametrize("line", [b"{}", b'{"ready": false}', b"[1]", b"not json"])
def test_from_json_refuses_other_lines(line: bytes) -> None:
    """A line that is not a readiness report is a ValueError."""
    with pytest.raises(ValueError):
        Ready.from_json(line)


def test_channel_writes_once_and_closes() -> None:
    """The channel writes the first report only, then closes its descriptor."""
    read, write = os.pipe()
    channel = ReadyChannel.open(write)
    assert channel is not None
    channel.report(report())
    channel.report(Ready(1, (), ()))
    with open(read, "rb") as pipe:
        assert pipe.read() == report().to_json()
    with pytest.raises(OSError):
        os.fstat(write)


def test_channel_refuses_bad_descriptors() -> None:
    """A descriptor that is not open, or open only for reading, is a start-up error."""
    read, write = os.pipe()
    os.close(write)
    try:
        with pytest.raises(StartupError, match=f"--ready-fd {read}: not open for writing"):
            ReadyChannel.open(read)
    finally:
        os.close(read)
    with pytest.raises(StartupError, match=f"--ready-fd {read}: bad file descriptor"):
        ReadyChannel.open(read)
    assert ReadyChannel.open(None) is None


def test_server_reports_once_the_reactor_runs() -> None:
    """makeService's server writes its report when the reactor runs, with the ports bound for
    port 0 and the zones loaded."""
    read, write = os.pipe()
    options = Options()
    options.parseOptions(
        ["--zones", str(ZONES), "--listen", "127.0.0.1:0", "--no-recursion", "--ready-fd", str(write)]
    )
    reactor = MemoryReactorClock()
    service = makeService(options, reactor=reactor)
    assert isinstance(service, ServerService)
    service.startService()
    try:
        assert select.select([read], [], [], 0)[0] == []
        reactor.run()
        with open(read, "rb") as pipe:
            ready = Ready.from_json(pipe.read())
        port = service.listening.addresses[0][1].port
        assert port != 0
        assert ready.listening == (
            Listener("udp", "127.0.0.1", port), Listener("tcp", "127.0.0.1", port),
        )
        assert ready.zones == shipped(ZONES)
        assert ready.pid == os.getpid()
    finally:
        service.stopService()


def shipped(directory: Path) -> tuple[tuple[str, int], ...]:
    """C{(origin, serial)} of every zone file in C{directory}, sorted."""
    return tuple(
        sorted((str(zone.origin), zone.serial) for zone in map(read_zone, zone_files(directory)))
    )


def bound(pid: int) -> set[tuple[str, str, int]]:
    """C{(udp or tcp, host, port)} of every bound IPv4 UDP and listening TCP socket of C{pid}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for proto in ("udp", "tcp"):
        for row in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode not in inodes or (proto == "tcp" and state != "0A"):
                continue
            host_hex, port_hex = local.split(":")
            host = ".".join(str(b) for b in reversed(bytes.fromhex(host_hex)))
            found.add((proto, host, int(port_hex, 16)))
    return found


def sockets_of(ready: Ready) -> set[tuple[str, str, int]]:
    """The sockets a report names, TLS as the TCP it is."""
    return {
        ("udp" if item.transport == "udp" else "tcp", item.address, item.port)
        for item in ready.listening
    }


def read_line(fd: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> bytes:
    """Everything written on C{fd} until its end, which must come while C{process} runs."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                assert process.poll() is None, "the server exited"
                return data
            data += chunk
    raise AssertionError(f"no end of the ready pipe after {timeout} s: {data!r}")


@contextmanager
def reporting(args: list[str], workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], bytes]]:
    """A real C{twistd -n dnstls ARGS --ready-fd W} child, and all it wrote on W."""
    read, write = os.pipe()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = twistd_dnstls([*args, "--state-dir", str(workdir / "state"), "--ready-fd", str(write)])
    process = subprocess.Popen(
        command, cwd=workdir, env=env, pass_fds=[write],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        yield process, read_line(read, process)
    finally:
        os.close(read)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


PLAIN_AND_TLS = [
    "--zones", str(ZONES), "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0", "--no-recursion",
]


def test_real_server_reports_its_sockets(tmp_path: Path) -> None:
    """A real twistd dnstls on port 0 writes one JSON line, then closes the pipe while it
    serves: its pid, the UDP, TCP and TLS sockets it holds with their real ports, its zones."""
    with reporting(PLAIN_AND_TLS, tmp_path) as (process, data):
        assert data.count(b"\n") == 1 and data.endswith(b"\n")
        ready = Ready.from_json(data)
        assert ready.pid == process.pid
        assert [item.transport for item in ready.listening] == ["udp", "tcp", "tls"]
        assert all(item.port != 0 for item in ready.listening)
        assert sockets_of(ready) == bound(process.pid)
        assert ready.zones == shipped(ZONES)
        assert ready.workers == ()


def test_workers_report_once_all_serve(tmp_path: Path) -> None:
    """With --workers 2 the supervisor writes the line once both workers serve: its own pid,
    the ports every worker holds, the zones, and each worker's number and pid."""
    with reporting([*PLAIN_AND_TLS, "--workers", "2"], tmp_path) as (process, data):
        ready = Ready.from_json(data)
        assert ready.pid == process.pid
        assert [number for number, _ in ready.workers] == [1, 2]
        sockets = sockets_of(ready)
        assert len(sockets) == 3 and all(port != 0 for _, _, port in sockets)
        assert bound(process.pid) == sockets
        for _, pid in ready.workers:
            assert int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1]) == process.pid
            assert bound(pid) == sockets
        assert ready.zones == shipped(ZONES)


def test_bad_ready_fd_is_one_line() -> None:
    """A --ready-fd that is not open stops the server with exit status 1 and one line saying
    so; one that is not a number is a usage error, exit status 2."""
    result = run_dnstls(["--listen", "127.0.0.1:0", "--ready-fd", "97"])
    assert result.returncode == 1
    assert result.stderr == "twistd dnstls: --ready-fd 97: bad file descriptor\n"
    result = run_dnstls(["--listen", "127.0.0.1:0", "--ready-fd", "three"])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--ready-fd" in result.stderr
