"""
The Markdown report, BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dnsbench.formatting import fmt, fmt_rcodes
from dnsbench.layout import QUERIES, REPO
from dnsbench.results import Results
from dnsbench.sections import large_section, recursive_section, starttls_section
from dnsbench.verdicts import correctness_verdicts, targets


def write_report(r: Results, args: argparse.Namespace, path: Path) -> None:
    """
    BENCHMARKS.md.
    """
    out: list[str] = []
    w = out.append
    w("# Benchmarks")
    w("")
    w(
        f"Written by `bench/run{' ' + ' '.join(args.argv) if args.argv else ''}` "
        f"on {r.started} (finished {r.finished}). "
        + ("**Quick smoke run: short runs, figures are indicative only.** " if args.quick else "")
        + "Figures drift between machines; the ratios measured in one run are what the targets use."
        + (
            " (Report written again from that run's JSON results.)"
            if getattr(args, "rerendered", False)
            else ""
        )
    )
    w("")
    corr_lines, ours_ok = correctness_verdicts(r) if r.correctness else ([], True)
    if r.correctness and not ours_ok:
        w(
            "> **WARNING: dnstls's rcode mix differs from Knot's: speed figures below may hide wrong "
            "answers. See Correctness.**"
        )
        w("")
    if r.failures:
        w("> **Some steps failed:** " + "; ".join(r.failures))
        w("")
    w("## Targets (issues 7 and 14)")
    w("")
    w("| target | measured | needed | verdict | CPU during the runs (dnstls; peer) |")
    w("| --- | ---: | ---: | --- | --- |")
    for row in targets(r, args):
        w("| " + " | ".join(row) + " |")
    if r.correctness:
        w(
            f"| dnstls's rcode mix equals Knot's (udp, tcp, dot) | {'equal' if ours_ok else 'differs'} "
            f"| equal | {'PASS' if ours_ok else '**FAIL**'} | |"
        )
    w("")
    if r.throughput:
        w("## Throughput and latency")
        w("")
        w(
            f"dnsperf `-c {args.clients} -q {args.outstanding} -l {args.seconds}`, query file "
            f"`bench/queries.txt` ({_count_queries()} queries, looped). Mean latency from that run; "
            f"p50/p99 from a separate `-v` run of {args.latency_seconds} s at the same settings "
            "(per-query output slows dnsperf itself, so it is not used for queries/s). "
            "`dnstls ÷ this` is our queries/s over this server's, in the same mode. "
            "Server CPU is the server's user+system time over the run, its child processes "
            "included (/proc/PID/stat; "
            "for dnsdist its own process only, Knot behind it shares the core): near 100 % the "
            "server was the bottleneck, well below it dnsperf or latency was. Queries per "
            "CPU-second is what one saturated core would answer."
        )
        w("")
        w(
            "| mode | server | queries/s | dnstls ÷ this | mean ms | p50 ms | p99 ms | lost % "
            "| server CPU % | dnsperf CPU % | queries per CPU-second | response codes | load before |"
        )
        w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
        for mode in ("udp", "tcp", "dot"):
            ours = r.throughput.get(("dnstls", mode))
            for (server, m), p in r.throughput.items():
                if m != mode:
                    continue
                lat = r.latency.get((server, mode))
                if p.error:
                    w(f"| {mode} | {r.labels[server]} | **FAILED: {p.error}** | | | | | | | | | | {p.load} |")
                    continue
                ratio = ours.qps / p.qps if ours and not ours.error and p.qps else None
                w(
                    f"| {mode} | {r.labels[server]} | {p.qps:,.0f} | {fmt(ratio)} | {p.avg_ms:.2f} | "
                    f"{fmt(lat.p50_ms if lat else None)} | {fmt(lat.p99_ms if lat else None)} | "
                    f"{p.lost_pct:.2f} | {fmt(p.cpu_pct, 0)} | {fmt(p.load_cpu_pct, 0)} | "
                    f"{fmt(p.per_core, 0)} | {fmt_rcodes(p.rcodes)} | {p.load} |"
                )
        w("")
    if r.handshakes:
        rounds = getattr(args, "handshake_rounds", 1) or 1
        w("## New DoT handshakes per second")
        w("")
        w(
            f"dnsperf `-m dot -O num-queries-per-conn=1 -c {args.handshake_clients} "
            f"-q {args.handshake_clients} "
            f"-l {args.seconds}`: every query on a new TLS connection (full handshake, dnsperf "
            "does not resume sessions), so queries/s = handshakes/s. "
            + (
                f"Each server ran {rounds} times, the servers taking turns; the table shows the "
                "run of median rate, and the rates of all runs follow it. "
                if rounds > 1 else ""
            )
            + "With few connections the "
            "rate can be bound by round trips and TCP delayed ACKs rather than by the server's CPU "
            "(server CPU % well below 100), or by dnsperf itself (it spends milliseconds of CPU on "
            "each new TLS connection): handshakes per server CPU-second is then the fairer "
            "measure of the cost, though it also depends on how the load arrives: connections "
            "that come in bursts are handled several to a turn of the server's event loop, spread "
            "evenly each takes its own. A packet capture of dnsperf 2.10 showed one more bound: "
            "on about a fifth of the connections, an answer that arrives within a millisecond "
            "behind the server's TLS 1.3 session tickets sits about 100 ms in dnsperf before it "
            "closes the connection, and so holds one of its few connection slots. dnstls sends "
            "its tickets in the segment of the first answer, which avoids it; Unbound's answer "
            "waits for the client's delayed ACK (Nagle's algorithm on) and does not meet it; "
            "dnsdist does (a mean well above Unbound's 42 ms is the sign)."
        )
        w("")
        w(
            "| server | handshakes/s | dnstls ÷ this | server CPU % | dnsperf CPU % "
            "| handshakes per CPU-second | dnstls ÷ this | connect+handshake ms | query ms | lost % "
            "| load before |"
        )
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        ours = r.handshakes.get("dnstls")
        for server, p in r.handshakes.items():
            if p.error:
                w(f"| {r.labels[server]} | **FAILED: {p.error}** | | | | | | | | | {p.load} |")
                continue
            ratio = ours.qps / p.qps if ours and not ours.error and p.qps else None
            core = ours.per_core / p.per_core if ours and ours.per_core and p.per_core else None
            w(
                f"| {r.labels[server]} | {p.qps:,.0f} | {fmt(ratio)} | {fmt(p.cpu_pct, 0)} | "
                f"{fmt(p.load_cpu_pct, 0)} | "
                f"{fmt(p.per_core, 0)} | {fmt(core)} | {fmt(p.conn_ms)} | {p.avg_ms:.2f} | "
                f"{p.lost_pct:.2f} | {p.load} |"
            )
        w("")
        if rounds > 1 and r.handshake_rates:
            for server, rates in r.handshake_rates.items():
                w(f"- {r.labels[server]}, every run in turn: " + ", ".join(f"{q:,.0f}" for q in rates))
            w("")
    out.extend(large_section(r, args))
    out.extend(recursive_section(r, args))
    out.extend(starttls_section(r, args))
    if r.memory:
        w("## Memory per idle DoT connection")
        w("")
        w(
            f"A fresh instance of each server; 50 connections opened and closed first (one-time "
            f"allocations); then `bench/idle_dot.py` opens {args.idle_conns:,} DoT connections "
            "(TLS 1.3 full handshake, one query answered, then idle) from 127.0.0.10-17; "
            "VmRSS from /proc/PID/status before, and 2 s after the last one opened. Unbound gets "
            "at most half the open-file limit (it shortens its idle timeout once more than half "
            "of `incoming-num-tcp` is in use, and reserves a descriptor for each). Still open: "
            "connections the server had not closed when the memory was read."
        )
        w("")
        w("| server | RSS before | RSS after | connections open (still open) | per connection | open time |")
        w("| --- | ---: | ---: | ---: | ---: | ---: |")
        for server, mem in r.memory.items():
            per = mem.per_conn_kb
            err = f" **{mem.error.strip()}**" if mem.error else ""
            w(
                f"| {r.labels[server]} | {mem.before_kb / 1024:,.1f} MiB | {mem.after_kb / 1024:,.1f} MiB | "
                f"{mem.opened:,} ({mem.alive:,}) | {fmt(per, 1)} kB{err} | {mem.seconds:.1f} s |"
            )
        w("")
    if r.correctness:
        w("## Correctness")
        w("")
        w(
            "Each server and mode answers `bench/queries.txt` once through (`dnsperf -n 1 -c 1 -q 16`); "
            "the rcode counts must equal Knot's over UDP. A mismatch of a peer is the peer's "
            "(Twisted Names has no wildcards, for one); a mismatch of dnstls fails the run."
        )
        w("")
        w("| server | mode | response codes | completed/sent | vs Knot |")
        w("| --- | --- | --- | ---: | --- |")
        out.extend(corr_lines)
        w("")
    w("## Conditions")
    w("")
    mc = r.machine
    if args.source and Path(args.source) != REPO / "dnstls":
        w(f"- **dnstls was imported from {args.source}, not from this checkout** (`pip install -e .`?)")
    else:
        w(f"- dnstls imported from {args.source or 'unknown'}")
    w(
        f"- machine: {mc.get('cpu')}, {mc.get('cores')} cores, {mc.get('memory')}, "
        f"Linux {mc.get('kernel')}, {mc.get('os')}"
    )
    w(
        "- pinning: "
        + (
            f"servers on CPU {args.server_cpu}, dnsperf and the connection holder on CPU "
            f"{args.load_cpu} (taskset)"
            if args.pin
            else "none (taskset missing or fewer than 2 CPUs)"
        )
    )
    w(
        f"- loopback {args.addr}; dnsperf `-c {args.clients} -q {args.outstanding}`, {args.seconds} s "
        f"runs, {args.latency_seconds} s latency runs, 1 s pause between runs"
    )
    w(
        f"- zone `bench/example.test.zone`; dnstls: `twistd -n dnstls "
        f"{'--no-recursion ' if args.has_no_recursion else ''}--zones DIR --listen --listen-tls "
        f"--tls-cert --tls-key` (ECDSA P-256, TLS 1.3), raised connection caps and idle timeouts"
        f"{' ' + ' '.join(args.server_arg) if args.server_arg else ''}"
        + ("" if args.has_no_recursion else " (this build has no --no-recursion)")
    )
    w(
        "- Knot: 1 UDP, 1 TCP, 1 background worker; Unbound: 1 thread, auth-zone, no upstreams; "
        "dnsdist: DoT and plain proxy to Knot (both on the server CPU), no packet cache; "
        "Twisted Names: `twistd dns --bindzone`; NSD: 1 server process, no database file"
    )
    w("- load average before each run is in the tables (other work on the machine skews figures)")
    w("")
    w("Versions:")
    w("")
    for name, version in r.versions.items():
        w(f"- {name}: {version}")
    w("")
    path.write_text("\n".join(out) + "\n")


def _count_queries() -> int:
    return sum(1 for line in QUERIES.read_text().splitlines() if line.strip())
