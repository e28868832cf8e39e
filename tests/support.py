"""
Helpers the tests share: real servers on loopback (dnstls under twistd, Knot
DNS) and the external tools that talk to them.

With C{CI=true} in the environment a missing tool fails the test instead of
skipping it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest

from dnstls.tap import zone_set
from dnstls.testing.process import DnstlsChild, LoggedProcess, chooses_recursion, twistd_dnstls
from dnstls.zones.store import ZoneStore

ROOT = Path(__file__).resolve().parent.parent
ZONES = ROOT / "tests" / "data" / "zones"
#: The own zone of a server that forwards or recurses: its names answer first.
LOCAL_ZONE = """\
$ORIGIN local.test.
$TTL 3600
@       SOA     ns hostmaster 1 7200 3600 1209600 300
@       NS      ns
ns      A       192.0.2.1
www     A       192.0.2.42
"""
#: The zones the Knot comparison serves: every file in tests/data/zones/.
ZONE_ORIGINS = ("example.test.", "corner.test.", "child.corner.test.", "negttl.test.")


def load_store(
    zones_directory: str | os.PathLike[str] | None, zone_paths: Sequence[str]
) -> ZoneStore:
    """
    Load every zone the options C{--zones} and C{--zone} would name, all
    or none (as C{--strict-zones}), for a handler under test.

    @raise StartupError: for a broken zone, or two files with one origin.
    """
    zones = zone_set(zones_directory, zone_paths)
    zones.load()
    zones.check_startup(strict=True)
    return zones.store


def require_tool(name: str) -> str:
    """
    The path of the program C{name}; skip the test without it, or fail it
    when C{CI=true}.
    """
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        message = f"{name} is not installed (Debian: see .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " and CI=true", pytrace=False)
        pytest.skip(message)
    return path


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago (also free for UDP,
    checked).
    """
    while True:
        with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(port)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """
    Exactly C{size} octets from the stream C{sock} (a TLS one too).

    @raise ConnectionError: if the peer closes first.
    """
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} octets")
        data += chunk
    return data


def without_recursion(args: Sequence[str], recursion: bool = False) -> list[str]:
    """
    C{args} with C{--no-recursion} added, unless they choose a source of
    answers themselves (a forwarder, root hints) or C{recursion} is true:
    recursion is on by default, and a test must never ask the real root.
    """
    if recursion or chooses_recursion(args):
        return list(args)
    return [*args, "--no-recursion"]


def answers_soa(host: str, port: int, origin: str) -> bool:
    """
    Whether the server on C{host} and C{port} answers C{origin}'s SOA over
    UDP (within half a second).
    """
    query = dns.message.make_query(origin, "SOA")
    try:
        response = dns.query.udp(query, host, port=port, timeout=0.5)
    except (OSError, dns.exception.Timeout):
        return False
    return response.rcode() == 0 and bool(response.answer)


class DnstlsProcess(DnstlsChild):
    """
    C{twistd -n dnstls ARGS} in a child process, started from the source
    tree, with its listening addresses read from its C{--ready-fd} report; with
    C{--no-recursion} unless C{ARGS} name forwarders or root hints (see
    L{without_recursion}).
    """

    def __init__(
        self,
        args: Sequence[str],
        timeout: float = 15.0,
        env: dict[str, str] | None = None,
        recursion: bool = False,
    ) -> None:
        """
        @param recursion: leave recursion at its default (iteration from
            IANA's root hints) without C{--no-recursion}: only for a test
            that never asks for a name outside its zones.
        """
        args = without_recursion(args, recursion)
        # the caller's env may override PYTHONPATH too
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.workdir = tempfile.mkdtemp(prefix="dnstls-test-")
        if "--state-dir" not in args and "STATE_DIRECTORY" not in (env or {}):
            # the generated TLS certificate goes with the server, not in ~
            args = [*args, "--state-dir", os.path.join(self.workdir, "state")]
        super().__init__(args, timeout=timeout, cwd=self.workdir, env=env, directory=self.workdir)

    def address(self, kind: str, family: int = socket.AF_INET) -> tuple[str, int]:
        """
        The first listener of C{kind} (C{udp}, C{tcp}, C{tls}) in C{family}.
        """
        for k, host, port in self.addresses:
            is_v6 = ":" in host
            if k == kind and is_v6 == (family == socket.AF_INET6):
                return host, port
        raise LookupError(f"no {kind} listener in {self.addresses}")


#: The child C{run_dnstls(user=...)} runs: twistd as root up to
#: C{dnstls.tap.makeService}, which starts by becoming the user (argv[1]).
#: The interpreter and its site-packages may sit where that user cannot
#: read (a home directory of mode 0700), so C{subprocess}'s C{user=} cannot
#: start it; everything is imported first, then the privileges are dropped
#: before any socket is bound, which is all a privilege test needs.
_AS_USER = """\
import os, resource, sys
import dns.rdata, dns.rdataclass, dns.rdatatype
import dnstls.tap
from twisted.internet import reactor
from twisted.scripts.twistd import run
for rdtype in dns.rdatatype.RdataType:
    dns.rdata.get_rdata_class(dns.rdataclass.IN, rdtype)
uid, gid = (int(n) for n in sys.argv.pop(1).split(":"))
serve = dnstls.tap.makeService
def makeService(options, reactor=None):
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    return serve(options, reactor)
dnstls.tap.makeService = makeService
run()
"""


def run_dnstls(
    args: Sequence[str], timeout: float = 20.0, user: int | None = None, recursion: bool = False
) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd -n dnstls ARGS} expecting it to exit (a start-up error).

    @param user: a uid to run C{makeService} as (the caller must be root);
        its group is its passwd entry's, or the same number.
    @param recursion: leave out the C{--no-recursion} added to C{ARGS} that
        name no forwarder or root hints (see L{without_recursion}).
    """
    args = without_recursion(args, recursion)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if user is None:
        command = twistd_dnstls(args)
    else:
        import pwd

        try:
            gid = pwd.getpwuid(user).pw_gid
        except KeyError:
            gid = user
        command = twistd_dnstls(args, start=[sys.executable, "-c", _AS_USER, f"{user}:{gid}"])
    with tempfile.TemporaryDirectory(prefix="dnstls-test-") as workdir:
        # a generated TLS certificate goes in the scratch directory, which
        # any user the child may become can write to
        os.chmod(workdir, 0o777)
        env["STATE_DIRECTORY"] = workdir
        return subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )


class KnotProcess(LoggedProcess):
    """
    Knot DNS (C{knotd}) serving C{tests/data/zones/} on 127.0.0.1, the reference
    the answers are compared with.
    """

    def __init__(
        self,
        origins: Sequence[str] = ZONE_ORIGINS,
        zones: Path = ZONES,
        listen: tuple[str, int] | None = None,
    ) -> None:
        """
        @param listen: the address and port to serve on; by default a free
            port on 127.0.0.1.
        """
        knotd = require_tool("knotd")
        self.host, self.port = listen if listen is not None else ("127.0.0.1", free_port())
        self.directory = tempfile.mkdtemp(prefix="dnstls-knot-")
        config = Path(self.directory) / "knot.conf"
        zone_lines = "\n".join(f"  - domain: {origin}" for origin in origins)
        config.write_text(
            textwrap.dedent(
                f"""\
                server:
                    rundir: "{self.directory}"
                    listen: {self.host}@{self.port}
                    udp-workers: 1
                    tcp-workers: 1
                    background-workers: 1
                    identity: ""
                    version: ""
                log:
                  - target: stderr
                    any: warning
                database:
                    storage: "{self.directory}/db"
                template:
                  - id: default
                    storage: "{zones}"
                    semantic-checks: on
                    zonefile-sync: -1
                    zonefile-load: whole
                    journal-content: none
                zone:
                """
            )
            + zone_lines
            + "\n"
        )
        super().__init__([knotd, "-c", str(config)], directory=self.directory)
        pending = list(origins)

        def loaded() -> bool | None:
            while pending and answers_soa(self.host, self.port, pending[0]):
                pending.pop(0)
            return True if not pending else None

        if self.wait_for(loaded, 15, interval=0.1) is None:
            self.failed(f"knotd did not load {pending}")


class UnboundProcess(LoggedProcess):
    """
    Unbound authoritative for one small zone from C{local-data}, on plain
    DNS and DNS over TLS on 127.0.0.1, with every query logged; it never
    resolves: every other name is REFUSED (C{local-zone: "." refuse}) and
    no address may be queried (C{do-not-query-address} 0.0.0.0/0 and ::/0),
    so nothing leaves the machine whatever it is asked.

    @ivar port: its plain DNS port (UDP and TCP).
    @ivar tls_port: its DNS-over-TLS port.
    """

    def __init__(
        self,
        cert: Path,
        key: Path,
        origin: str = "unbound.test.",
        records: Sequence[str] = ("www 300 IN A 192.0.2.53",),
        keepalive_ms: int = 10000,
    ) -> None:
        """
        @param cert: the PEM certificate (chain) it presents over TLS.
        @param key: its PEM private key.
        @param records: the zone's records, owners relative to C{origin}
            (an SOA is added).
        @param keepalive_ms: the edns-tcp-keepalive timeout it advertises.
        """
        unbound = require_tool("unbound")
        self.port = free_port()
        self.tls_port = free_port()
        self.directory = tempfile.mkdtemp(prefix="dnstls-unbound-")
        self.origin = origin
        data = [f"{origin} 300 IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 60"]
        data += [f"{r.split(None, 1)[0]}.{origin} {r.split(None, 1)[1]}" for r in records]
        local_data = "\n".join(f'    local-data: "{line}"' for line in data)
        config = Path(self.directory) / "unbound.conf"
        config.write_text(
            textwrap.dedent(
                f"""\
                server:
                    directory: "{self.directory}"
                    chroot: ""
                    username: ""
                    pidfile: "{self.directory}/unbound.pid"
                    do-daemonize: no
                    use-syslog: no
                    logfile: ""
                    verbosity: 1
                    log-queries: yes
                    num-threads: 1
                    so-reuseport: no
                    interface: 127.0.0.1@{self.port}
                    interface: 127.0.0.1@{self.tls_port}
                    port: {self.port}
                    tls-port: {self.tls_port}
                    tls-service-pem: "{cert}"
                    tls-service-key: "{key}"
                    do-ip6: no
                    access-control: 127.0.0.0/8 allow
                    edns-tcp-keepalive: yes
                    edns-tcp-keepalive-timeout: {keepalive_ms}
                    module-config: "iterator"
                    do-not-query-localhost: yes
                    do-not-query-address: 0.0.0.0/0
                    do-not-query-address: ::/0
                    local-zone: "." refuse
                    local-zone: "{origin}" static
                """
            )
            + local_data
            + "\nremote-control:\n    control-enable: no\n"
        )
        super().__init__([unbound, "-d", "-c", str(config)], directory=self.directory)
        started = self.wait_for(
            lambda: answers_soa("127.0.0.1", self.port, origin) or None, 15, interval=0.1
        )
        if started is None:
            self.failed("unbound did not start")

    def queries(self, name: str) -> list[str]:
        """
        The lines Unbound logged for queries for C{name}.
        """
        wanted = f" {name.rstrip('.')}. "
        return [line for line in self.lines if " info: 127." in line and wanted in line]
