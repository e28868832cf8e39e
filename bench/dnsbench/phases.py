"""
The measuring phases of a run: correctness, throughput, handshakes, memory.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from dnsbench.dnsperf import Perf, dnsperf
from dnsbench.environment import versions
from dnsbench.formatting import fmt, fmt_rcodes
from dnsbench.memory import idle_memory
from dnsbench.processes import Processes, note
from dnsbench.results import Results
from dnsbench.servers import Server, make_servers, start


def run_phases(args: argparse.Namespace, scratch: Path, ca: Path, procs: Processes, r: Results) -> None:
    """
    Start the servers, run every phase asked for, stop them.
    """
    servers = make_servers(args, scratch)
    r.labels = {name: s.label for name, s in servers.items()}
    load_phases = [p for p in args.only if p != "memory"]
    if load_phases:
        for server in servers.values():
            start(server, procs, args, ca)
    r.versions = versions(servers, args)

    def guarded(what: str, server: Server, mode: str, seconds: int, **kw: Any) -> Perf:
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
    for s in servers.values():
        if s.proc is not None:
            procs.stop(s.proc)
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


def median_run(runs: list[Perf]) -> Perf:
    """
    The run of median rate among those that did not fail (the lower middle
    one of an even count), else the first failure.
    """
    good = sorted((p for p in runs if not p.error), key=lambda p: p.qps)
    return good[(len(good) - 1) // 2] if good else runs[0]
