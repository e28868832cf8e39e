"""
The servers under load: their command lines and configurations, and starting
one until it answers.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnsbench.layout import HERE
from dnsbench.probes import port_free, wait_ready
from dnsbench.processes import Processes, note


@dataclass
class Server:
    """
    One DNS server under load: how to start it and where it listens.
    """

    name: str
    label: str
    port: int
    tls_port: int | None
    argv: list[str]
    plain: bool = True
    idle_conns: int | None = None
    wait: float = 30
    #: whether its readiness probe asks for recursion (a forwarder's does)
    rd: bool = False
    proc: subprocess.Popen[bytes] | None = None

    def modes(self) -> list[str]:
        """
        The modes the server answers in: udp and tcp, and dot if it speaks it.
        """
        return ["udp", "tcp"] + (["dot"] if self.tls_port else [])

    @property
    def pid(self) -> int | None:
        """
        The server's process ID (taskset execs it), once started.
        """
        return self.proc.pid if self.proc is not None else None

    def port_for(self, mode: str) -> int:
        """
        The port that answers in C{mode}.
        """
        if mode == "dot":
            assert self.tls_port is not None
            return self.tls_port
        return self.port


def render(template: str, scratch: Path, out_name: str, **values: Any) -> Path:
    """
    bench/TEMPLATE with @SCRATCH@ and @KEY@ replaced, written to the scratch
    directory.
    """
    text = (HERE / template).read_text().replace("@SCRATCH@", str(scratch))
    for key, value in values.items():
        text = text.replace(f"@{key.upper()}@", str(value))
    path = scratch / "run" / out_name
    path.write_text(text)
    return path


def dnstls_argv(
    args: argparse.Namespace,
    scratch: Path,
    log: str,
    port: int,
    tls_port: int | None,
    zones: Path,
    conns: int = 1000,
    authoritative: bool = True,
) -> list[str]:
    """
    The command line of one dnstls instance (pinned to the server CPU):
    plain DNS on C{port}, DoT on C{tls_port} if given, the zones of
    C{zones}, the run's certificate (for port 853 and the upgrade);
    C{authoritative} adds --no-recursion where the build has it.
    """
    return [
        *(["taskset", "-c", args.server_cpu] if args.pin else []),
        args.twistd,
        "-n",
        "--pidfile=",
        f"--logfile={scratch / 'logs' / log}.twistd.log",
        "dnstls",
        *(["--no-recursion"] if args.has_no_recursion and authoritative else []),
        "--zones",
        str(zones),
        "--listen",
        f"{args.addr}:{port}",
        *(["--listen-tls", f"{args.addr}:{tls_port}"] if tls_port else []),
        "--tls-cert",
        str(scratch / "certs" / "server.pem"),
        "--tls-key",
        str(scratch / "certs" / "server.key"),
        "--max-connections",
        str(conns),
        "--max-connections-per-client",
        str(conns),
        "--tls-idle-timeout",
        "900",
        "--tcp-idle-timeout",
        "900",
        *args.server_arg,
    ]


def knot_server(
    args: argparse.Namespace, scratch: Path, name: str, port: int, zone: str, zonefile: Path
) -> Server:
    """
    A knotd serving the one zone C{zone} from C{zonefile} on C{port}, with
    a run and database directory of its own.
    """
    (scratch / "run" / name).mkdir(parents=True, exist_ok=True)
    (scratch / name / "db").mkdir(parents=True, exist_ok=True)
    conf = render(
        "knot.conf",
        scratch,
        f"{name}.conf",
        addr=args.addr,
        port=port,
        rundir=scratch / "run" / name,
        dbdir=scratch / name / "db",
        zonedir=zonefile.parent,
        zone=zone,
        zonefile=zonefile.name,
    )
    return Server(name, "Knot DNS", port, None, _cpu(args) + ["knotd", "-c", str(conf)])


def nsd_server(
    args: argparse.Namespace, scratch: Path, name: str, port: int, zone: str, zonefile: Path
) -> Server:
    """
    An NSD serving the one zone C{zone} from C{zonefile} on C{port} (one
    server process, its state files in a run directory of its own).
    """
    rundir = scratch / "run" / name
    (rundir / "xfr").mkdir(parents=True, exist_ok=True)
    conf = render(
        "nsd.conf",
        scratch,
        f"{name}.conf",
        addr=args.addr,
        port=port,
        rundir=rundir,
        zonedir=zonefile.parent,
        zone=zone,
        zonefile=zonefile.name,
    )
    return Server(name, "NSD", port, None, _cpu(args) + ["nsd", "-d", "-c", str(conf)])


def _cpu(args: argparse.Namespace) -> list[str]:
    return ["taskset", "-c", args.server_cpu] if args.pin else []


def make_servers(args: argparse.Namespace, scratch: Path, idle: bool = False) -> dict[str, Server]:
    """
    The servers of this run; C{idle} gives the instances of the memory
    phase (their own ports, limits fit for many idle connections).
    """
    a, base = args.addr, args.base_port + (20 if idle else 0)
    cpu = _cpu(args)
    # twice the idle connections: a table under half full, so that the
    # memory phase measures memory, not the pressure rules past half
    # (shorter idle timeouts, keepalive 0 past nine tenths)
    conns = 2 * args.idle_conns + 200
    ours = dnstls_argv(
        args, scratch, "dnstls-idle" if idle else "dnstls", base, base + 10, scratch / "zones", conns
    )
    servers = {"dnstls": Server("dnstls", "dnstls", base, base + 10, ours)}
    if idle:
        servers["dnstls"].name = "dnstls-idle"
    peers = set(args.peers)
    hot = scratch / "zones" / "example.test.zone"
    if "knot" in peers and not idle:
        servers["knot"] = knot_server(args, scratch, "knot", base + 1, "example.test.", hot)
    if "nsd" in peers and not idle:
        servers["nsd"] = nsd_server(args, scratch, "nsd", base + 5, "example.test.", hot)
    if "unbound" in peers:
        # Unbound shortens its idle timeout once more than half of
        # incoming-num-tcp is in use, and wants that many descriptors: it
        # holds at most half the open-file limit, less a margin.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        hard = hard if hard != resource.RLIM_INFINITY else 1 << 20
        unbound_conns = min(args.idle_conns, (hard - 200) // 2 - 100)
        conf = render(
            "unbound.conf",
            scratch,
            f"unbound{'-idle' if idle else ''}.conf",
            addr=a,
            port=base + 2,
            tlsport=base + 12,
            tcpconns=2 * unbound_conns + 100 if idle else 256,
            idlems=100_000_000 if idle else 30_000,
            plain="# " if idle else "",
        )
        servers["unbound"] = Server(
            "unbound-idle" if idle else "unbound",
            "Unbound",
            base + 2,
            base + 12,
            cpu + ["unbound", "-d", "-c", str(conf)],
            plain=not idle,
            idle_conns=unbound_conns,
        )
    if "twisted" in peers and not idle:
        servers["twisted"] = Server(
            "twisted",
            "Twisted Names",
            base + 3,
            None,
            cpu
            + [
                args.names_twistd,
                "-n",
                "--pidfile=",
                f"--logfile={scratch / 'logs' / 'twisted.twistd.log'}",
                "dns",
                f"--bindzone={scratch / 'zones' / 'example.test.zone'}",
                "-i",
                a,
                "-p",
                str(base + 3),
            ],
        )
    if "dnsdist" in peers and "knot" in peers and not idle:
        conf = render(
            "dnsdist.conf",
            scratch,
            "dnsdist.conf",
            addr=a,
            port=base + 4,
            tlsport=base + 14,
            backend=base + 1,
        )
        servers["dnsdist"] = Server(
            "dnsdist",
            "dnsdist (DoT proxy to Knot)",
            base + 4,
            base + 14,
            cpu + ["dnsdist", "--supervised", "--disable-syslog", "-C", str(conf)],
        )
    return servers


def make_large_servers(args: argparse.Namespace, scratch: Path, zonefile: Path) -> dict[str, Server]:
    """
    The servers of the large-zone phases, each with the generated zone
    C{zonefile} alone (ports BASE+40 on): dnstls, and Knot and NSD when
    they are among the peers.
    """
    base = args.base_port + 40
    argv = dnstls_argv(args, scratch, "dnstls-large", base, None, zonefile.parent)
    servers = {"dnstls": Server("dnstls-large", "dnstls", base, None, argv)}
    zone = "example-large.test."
    if "knot" in args.peers:
        servers["knot"] = knot_server(args, scratch, "knot-large", base + 1, zone, zonefile)
    if "nsd" in args.peers:
        servers["nsd"] = nsd_server(args, scratch, "nsd-large", base + 5, zone, zonefile)
    for server in servers.values():
        server.label += " (large zone)"
    return servers


def make_forwarders(args: argparse.Namespace, scratch: Path, upstream: int) -> dict[str, Server]:
    """
    The caching resolvers of the recursive-hits phase, both forwarding
    every name to the Knot on port C{upstream} (ports BASE+46 on): dnstls
    (--forward, no zone of its own) and Unbound if it is among the peers.
    """
    base = args.base_port + 46
    empty = scratch / "no-zones"
    empty.mkdir(exist_ok=True)
    argv = dnstls_argv(args, scratch, "dnstls-forward", base, None, empty, authoritative=False)
    argv[argv.index("--zones") : argv.index("--zones")] = ["--forward", f"{args.addr}:{upstream}"]
    servers = {"dnstls": Server("dnstls-forward", "dnstls (forwarding to Knot)", base, None, argv, rd=True)}
    if "unbound" in args.peers:
        conf = render(
            "unbound-forward.conf",
            scratch,
            "unbound-forward.conf",
            addr=args.addr,
            port=base + 1,
            upstream=upstream,
        )
        servers["unbound"] = Server(
            "unbound-forward",
            "Unbound (forwarding to Knot)",
            base + 1,
            None,
            _cpu(args) + ["unbound", "-d", "-c", str(conf)],
            rd=True,
        )
    return servers


def start(server: Server, procs: Processes, args: argparse.Namespace, ca: Path) -> None:
    """
    Start C{server} and wait until every one of its ports answers.
    """
    for port in (server.port if server.plain else None, server.tls_port):
        if port is not None and not port_free(args.addr, port):
            raise RuntimeError(f"port {args.addr}:{port} for {server.name} is in use")
    server.proc = procs.start(server.name, server.argv, preexec_fn=raise_nofile)
    checks = [(server.port, "udp"), (server.port, "tcp")] if server.plain else []
    if server.tls_port:
        checks.append((server.tls_port, "dot"))
    wait_ready(server.name, server.proc, checks, args.addr, ca, server.wait, rd=server.rd)
    note(f"{server.name} is answering")


def raise_nofile() -> None:
    """
    Raise this process's open-file limit to its hard limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
