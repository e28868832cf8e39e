"""
The measuring phases of a run, in this order: correctness, throughput,
handshakes, recursive-hits and starttls (L{dnsbench.sessions}) on the
servers of the hot zone; then the large-zone phases (L{dnsbench.large});
then memory.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from dnsbench.dnsperf import Perf, dnsperf, median_run
from dnsbench.environment import versions
from dnsbench.formatting import fmt, fmt_rcodes
from dnsbench.large import LARGE_PHASES, run_large
from dnsbench.memory import idle_memory
from dnsbench.processes import Processes, note
from dnsbench.results import Results
from dnsbench.servers import Server, make_servers, start
from dnsbench.sessions import run_recursive, run_starttls

#: the phases that load the servers of the hot zone, bench/example.test.zone
HOT_PHASES = ("correctness", "udp", "tcp", "dot", "handshake")


def run_phases(args: argparse.Namespace, scratch: Path, ca: Path, procs: Processes, r: Results) -> None:
    """
    Start the servers, run every phase asked for, stop them.
    """
    servers = make_servers(args, scratch)
    r.labels = {name: s.label for name, s in servers.items()}
    if not any(p in args.only for p in HOT_PHASES):
        # recursive-hits needs only Knot, starttls only dnstls
        wanted = {"knot": "recursive-hits", "dnstls": "starttls"}
        servers = {k: s for k, s in servers.items() if wanted.get(k) in args.only}
    for server in servers.values():
        start(server, procs, args, ca)
    r.versions = versions(servers, args)

    def guarded(what: str, server: Server, mode: str, seconds: int, **kw: Any) -> Perf:
        """
        One dnsperf run against C{server}, its failures and losses noted.
        """
        assert server.proc is not None
        port = server.port_for(mode)
        p = dnsperf(args, scratch, what, port, mode, seconds, pid=server.proc.pid, **kw)
        if p.error:
            r.failures.append(f"{what}: {p.error}")
            note(f"{what}: {p.error}")
        else:
            note(
                f"{what}: {p.qps:,.0f} q/s, mean {p.avg_ms:.2f} ms, server CPU {fmt(p.cpu_pct, 0)} %, "
                f"rcodes {fmt_rcodes(p.rcodes)}"
            )
            if p.lost_pct > 1:
                r.failures.append(f"{what}: {p.lost_pct:.2f} % of the queries lost")
        time.sleep(1)
        return p

    if "correctness" in args.only:
        for name, s in servers.items():
            for mode in s.modes():
                tag = f"correct-{name}-{mode}"
                r.correctness[(name, mode)] = guarded(
                    tag, s, mode, 60, extra=["-n", "1", "-c", "1", "-q", "16", "-t", "3"]
                )
    for mode in ("udp", "tcp", "dot"):
        if mode not in args.only:
            continue
        for name, s in servers.items():
            if mode not in s.modes():
                continue
            tag = f"{name}-{mode}"
            r.throughput[(name, mode)] = guarded(tag, s, mode, args.seconds)
            r.latency[(name, mode)] = guarded(tag + "-v", s, mode, args.latency_seconds, verbose=True)
    if "handshake" in args.only:
        hs = ["-c", str(args.handshake_clients), "-q", str(args.handshake_clients)]
        rounds: dict[str, list[Perf]] = {}
        for turn in range(args.handshake_rounds):
            # the servers take turns, so that a slow spell of the machine
            # does not fall on one server's runs only
            for name, s in servers.items():
                if "dot" not in s.modes():
                    continue
                tag = f"{name}-handshakes" + (f"-{turn + 1}" if args.handshake_rounds > 1 else "")
                rounds.setdefault(name, []).append(
                    guarded(tag, s, "dot", args.seconds, extra=[*hs, "-O", "num-queries-per-conn=1"])
                )
        for name, runs in rounds.items():
            r.handshakes[name] = median_run(runs)
            r.handshake_rates[name] = [p.qps for p in runs if not p.error]
    if "recursive-hits" in args.only:
        run_recursive(args, scratch, ca, procs, r, servers.get("knot"), guarded)
    if "starttls" in args.only:
        run_starttls(args, scratch, ca, r, servers.get("dnstls"))
    for s in servers.values():
        if s.proc is not None:
            procs.stop(s.proc)
    if any(p in args.only for p in LARGE_PHASES):
        run_large(args, scratch, procs, r, guarded)
    if "memory" in args.only:
        idle = make_servers(args, scratch, idle=True)
        for name, s in idle.items():
            note(f"memory: {args.idle_conns:,} idle DoT connections to {name}")
            m = idle_memory(s, procs, args, scratch, ca)
            r.labels.setdefault(name, s.label)
            r.memory[name] = m
            if m.error:
                r.failures.append(f"memory {name}: {m.error.strip()}")
            note(f"memory {name}: {fmt(m.per_conn_kb, 1)} kB per connection ({m.opened} open) {m.error}")
