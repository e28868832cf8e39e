"""
A real C{twistd dnstls} on loopback with a broken zone beside good ones, at
start-up and at a SIGHUP reload: the good zones are served, each broken one
is logged once and not served (or keeps its old data), as Knot DNS does.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from dnstls.testing import start_server
from tests.support import DnstlsProcess, require_tool, run_dnstls
from tests.test_tap import failed_start
from tests.zones.test_zoneset import break_, write


def ask(server: DnstlsProcess, name: str, tcp: bool = False) -> dns.message.Message:
    """
    Ask C{server} for C{name} A over UDP or TCP.
    """
    host, port = server.address("udp")
    query = dns.message.make_query(name, "A", use_edns=0)
    if tcp:
        return dns.query.tcp(query, host, port=port, timeout=5)
    return dns.query.udp(query, host, port=port, timeout=5)


def addresses(server: DnstlsProcess, name: str, tcp: bool = False) -> list[str]:
    """
    The addresses C{server} answers for C{name}, checked to be an answer.
    """
    reply = ask(server, name, tcp)
    assert reply.rcode() == dns.rcode.NOERROR, reply
    return sorted(str(rdata) for rrset in reply.answer for rdata in rrset)


def kdig_short(server: DnstlsProcess, name: str) -> tuple[str, list[str]]:
    """
    The status and the C{+short} records kdig gets from C{server} for
    C{name} A.
    """
    kdig = require_tool("kdig")
    host, port = server.address("udp")
    run = [kdig, f"@{host}", "-p", str(port), name, "A", "+timeout=3", "+retry=0"]
    full = subprocess.run(run, capture_output=True, text=True, timeout=10, check=False).stdout
    status = full.split("status: ", 1)[1].split(";", 1)[0] if "status: " in full else full
    short = subprocess.run([*run, "+short"], capture_output=True, text=True, timeout=10, check=False)
    return status, short.stdout.split()


def errors(server: DnstlsProcess) -> list[str]:
    """
    The error lines of C{server}'s log.
    """
    return [line for line in server.lines if "#error]" in line]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def reload(server: DnstlsProcess) -> list[str]:
    """
    SIGHUP C{server}; the lines it logs for the reload, once it has.
    """
    mark = len(server.lines)
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: any("reload: serving " in line for line in server.lines[mark:]))
    return server.lines[mark:]


@pytest.fixture
def zones(tmp_path: Path) -> Path:
    directory = tmp_path / "zones"
    directory.mkdir()
    return directory


def test_good_zone_served_beside_a_broken_one(zones: Path) -> None:
    """With one good and one broken zone the server runs, the good zone answers (kdig), the
    broken zone's names get SERVFAIL with EDE 24 (as from Knot DNS), and the log has exactly
    one error line, for the bad file."""
    good = write(zones / "good.test.zone", "good.test.", serial=2024010101)
    bad = break_(zones / "bad.test.zone", "bad.test.")
    server = DnstlsProcess(["--zones", str(zones), "--listen", "127.0.0.1:0"])
    try:
        assert kdig_short(server, "www.good.test.") == ("NOERROR", ["192.0.2.10"])
        assert kdig_short(server, "www.bad.test.")[0] == "SERVFAIL"
        reply = ask(server, "www.bad.test.", tcp=True)
        assert reply.rcode() == dns.rcode.SERVFAIL and not reply.flags & dns.flags.AA
        assert [e.code for e in reply.extended_errors()] == [dns.edns.EDECode.INVALID_DATA]
        assert server.process.poll() is None
        [error] = errors(server)
        assert error.endswith(
            f"zone bad.test.: not loaded: {bad}:6: malformed record 'www A 192.0.2.300'"
        )
        assert any(
            line.endswith(f"zone good.test.: serial 2024010101, loaded from {good}")
            for line in server.lines
        )
        assert any(
            line.endswith("serving 1 zone: good.test. (serial 2024010101); errors in 1 zone file")
            for line in server.lines
        )
    finally:
        server.stop()


def test_broken_zone_never_forwarded(zones: Path) -> None:
    """A client that may recurse gets SERVFAIL for a broken zone's names, and the forwarder
    never hears of them; once the file is mended, SIGHUP serves the zone."""
    upstream = start_server({"www": ["A 192.0.2.99"]}, origin="bad.test")
    try:
        write(zones / "good.test.zone", "good.test.")
        bad = break_(zones / "bad.test.zone", "bad.test.")
        host, port = upstream.udp
        server = DnstlsProcess(["--zones", str(zones), "--listen", "127.0.0.1:0",
                                "--forward", f"{host}:{port}"])
        try:
            assert ask(server, "www.bad.test.").rcode() == dns.rcode.SERVFAIL
            assert ask(server, "www.bad.test.", tcp=True).rcode() == dns.rcode.SERVFAIL
            assert upstream.queries() == []
            write(bad, "bad.test.")
            lines = reload(server)
            assert any("zone bad.test.: serial 1, new, loaded from" in line for line in lines), lines
            assert addresses(server, "www.bad.test.") == ["192.0.2.10"]
            assert upstream.queries() == []
        finally:
            server.stop()
    finally:
        upstream.stop()


def test_missing_zone_file_beside_good_zones(zones: Path) -> None:
    """A --zone file that does not exist is one error line; the other zones are served."""
    write(zones / "good.test.zone", "good.test.")
    server = DnstlsProcess(
        ["--zones", str(zones), "--zone", "/nonexistent/x.zone", "--listen", "127.0.0.1:0"]
    )
    try:
        assert addresses(server, "www.good.test.") == ["192.0.2.10"]
        [error] = errors(server)
        assert "zone x.: not loaded: /nonexistent/x.zone: cannot read zone file: no such file" in error
    finally:
        server.stop()


def test_one_origin_twice_serves_the_first(zones: Path, tmp_path: Path) -> None:
    """Of two zone files with one origin the first is served and the second is one error line."""
    first = write(zones / "a.test.zone", "a.test.", address="192.0.2.1")
    second = write(tmp_path / "copy.txt", "a.test.", address="192.0.2.2")
    server = DnstlsProcess(
        ["--zones", str(zones), "--zone", str(second), "--listen", "127.0.0.1:0"]
    )
    try:
        assert addresses(server, "www.a.test.") == ["192.0.2.1"]
        [error] = errors(server)
        assert error.endswith(
            f"zone a.test.: not loaded: {second}: zone a.test. is already loaded from {first}"
        )
    finally:
        server.stop()


def test_every_zone_broken(zones: Path) -> None:
    """When no zone file loads the server exits non-zero with one line giving each file's error."""
    first = break_(zones / "a.test.zone", "a.test.")
    second = break_(zones / "b.test.zone", "b.test.")
    line = failed_start(run_dnstls(["--zones", str(zones), "--listen", "127.0.0.1:0"]))
    assert line.startswith(f"twistd dnstls: no zone loaded: {first}:6: ")
    assert f"; {second}:6: " in line


def test_reload_one_broken_one_changed(zones: Path) -> None:
    """At a SIGHUP a changed zone serves its new data, a now broken one keeps its old data, and
    each zone gets one line; then a new file is served and a deleted one keeps serving."""
    changed = write(zones / "changed.test.zone", "changed.test.")
    broken = write(zones / "broken.test.zone", "broken.test.", serial=5, address="192.0.2.5")
    server = DnstlsProcess(["--zones", str(zones), "--listen", "127.0.0.1:0"])
    try:
        for tcp in (False, True, False):  # the fast path has it cached
            assert addresses(server, "www.changed.test.", tcp) == ["192.0.2.10"]
            assert addresses(server, "www.broken.test.", tcp) == ["192.0.2.5"]
        write(changed, "changed.test.", serial=2, address="192.0.2.20")
        break_(broken, "broken.test.")
        lines = reload(server)
        assert addresses(server, "www.changed.test.") == ["192.0.2.20"]
        assert addresses(server, "www.changed.test.", tcp=True) == ["192.0.2.20"]
        assert addresses(server, "www.broken.test.") == ["192.0.2.5"]
        zone_lines = [line.split("] ", 1)[1] for line in lines if "] reload: zone " in line]
        assert zone_lines == [
            f"reload: zone broken.test.: not reloaded, still serving serial 5: {broken}:6: "
            "malformed record 'www A 192.0.2.300'",
            f"reload: zone changed.test.: serial 1 -> 2, reloaded from {changed}",
        ]
        assert [line for line in lines if "#error]" in line] == [
            line for line in lines if "reload: zone broken.test." in line
        ]
        broken.unlink()
        added = write(zones / "added.test.zone", "added.test.", serial=7, address="192.0.2.7")
        lines = reload(server)
        assert addresses(server, "www.added.test.") == ["192.0.2.7"]
        assert addresses(server, "www.broken.test.") == ["192.0.2.5"]
        zone_lines = [line.split("] ", 1)[1] for line in lines if "] reload: zone " in line]
        assert zone_lines == [
            f"reload: zone added.test.: serial 7, new, loaded from {added}",
            "reload: zone changed.test.: serial 2, unchanged",
            f"reload: zone broken.test.: {broken} is gone; still serving serial 5 until a restart",
        ]
        assert any("#warn] reload: zone broken.test." in line for line in lines)
        assert not any("#error]" in line for line in lines)
    finally:
        server.stop()


def test_reload_strict_keeps_every_zone(zones: Path) -> None:
    """With --strict-zones a SIGHUP with one broken file reloads no zone, and says why."""
    changed = write(zones / "changed.test.zone", "changed.test.")
    broken = write(zones / "broken.test.zone", "broken.test.")
    server = DnstlsProcess(["--zones", str(zones), "--listen", "127.0.0.1:0", "--strict-zones"])
    try:
        assert addresses(server, "www.changed.test.") == ["192.0.2.10"]
        write(changed, "changed.test.", serial=2, address="192.0.2.20")
        break_(broken, "broken.test.")
        mark = len(server.lines)
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: any("keeping every zone" in line for line in server.lines[mark:]))
        assert addresses(server, "www.changed.test.") == ["192.0.2.10"]
        assert addresses(server, "www.broken.test.") == ["192.0.2.10"]
        failed = [line for line in server.lines[mark:] if "#error]" in line]
        assert len(failed) == 2
        assert failed[0].endswith(
            f"reload: zone broken.test.: not reloaded, still serving serial 1: {broken}:6: "
            "malformed record 'www A 192.0.2.300'"
        )
        assert "reload: keeping every zone as it was (--strict-zones): serving 2 zones" in failed[1]
    finally:
        server.stop()
