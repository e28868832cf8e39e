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


def make_servers(args: argparse.Namespace, scratch: Path, idle: bool = False) -> dict[str, Server]:
    """
    The servers of this run; C{idle} gives the instances of the memory
    phase (their own ports, limits fit for many idle connections).
    """
    a, base = args.addr, args.base_port + (20 if idle else 0)
    cpu = ["taskset", "-c", args.server_cpu] if args.pin else []
    conns = args.idle_conns + 200
    ours = cpu + [
        args.twistd,
        "-n",
        "--pidfile=",
        f"--logfile={scratch / 'logs' / ('dnstls-idle' if idle else 'dnstls')}.twistd.log",
        "dnstls",
        *(["--no-recursion"] if args.has_no_recursion else []),
        "--zones",
        str(scratch / "zones"),
        "--listen",
        f"{a}:{base}",
        "--listen-tls",
        f"{a}:{base + 10}",
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
    servers = {"dnstls": Server("dnstls", "dnstls", base, base + 10, ours)}
    if idle:
        servers["dnstls"].name = "dnstls-idle"
    peers = set(args.peers)
    if "knot" in peers and not idle:
        conf = render("knot.conf", scratch, "knot.conf", addr=a, port=base + 1)
        servers["knot"] = Server("knot", "Knot DNS", base + 1, None, cpu + ["knotd", "-c", str(conf)])
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
    wait_ready(server.name, server.proc, checks, args.addr, ca, server.wait)
    note(f"{server.name} is answering")


def raise_nofile() -> None:
    """
    Raise this process's open-file limit to its hard limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
