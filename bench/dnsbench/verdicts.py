"""
The issue's targets and the correctness comparison, as verdicts.
"""

from __future__ import annotations

import argparse

from dnsbench.dnsperf import Perf
from dnsbench.formatting import fmt, fmt_rcodes
from dnsbench.results import Results


def targets(r: Results, args: argparse.Namespace) -> list[tuple[str, str, str, str, str]]:
    """
    The issue's targets: (target, measured, needed, PASS/FAIL/n/a, note).
    The note gives each side's server CPU and dnsperf's: a ratio between
    two runs that were not both bound by the server's CPU says less.
    """

    def run(server: str, mode: str) -> Perf | None:
        p = r.handshakes.get(server) if mode == "handshake" else r.throughput.get((server, mode))
        return p if p and not p.error and p.qps else None

    def note(*runs: Perf | None) -> str:
        parts = [
            f"server {fmt(p.cpu_pct, 0)} % / dnsperf {fmt(p.load_cpu_pct, 0)} % CPU"
            for p in runs
            if p is not None
        ]
        return "; ".join(parts)

    rows = [
        ("UDP vs Twisted Names", ("dnstls", "udp"), ("twisted", "udp"), 3.0),
        ("UDP vs Knot", ("dnstls", "udp"), ("knot", "udp"), 0.5),
        ("TCP (persistent) vs Knot", ("dnstls", "tcp"), ("knot", "tcp"), 0.5),
        ("DoT (persistent, pipelined) vs Unbound", ("dnstls", "dot"), ("unbound", "dot"), 0.5),
        ("DoT vs our own UDP", ("dnstls", "dot"), ("dnstls", "udp"), 0.6),
        ("new DoT handshakes/s vs Unbound", ("dnstls", "handshake"), ("unbound", "handshake"), 0.5),
    ]
    out = []
    for name, ours_key, peer_key, need in rows:
        ours, peer = run(*ours_key), run(*peer_key)
        value = ours.qps / peer.qps if ours and peer else None
        verdict = "n/a" if value is None else ("PASS" if value >= need else "FAIL")
        measured = f"{value:.2f}x" if value is not None else "-"
        out.append((name, measured, f">= {need:g}x", verdict, note(ours, peer)))
    # The same ratios per server CPU-second: what each would do on a
    # saturated core, when the load generator or the machine held them back.
    for name, ours_key, peer_key, need in rows[1:4] + rows[5:]:
        ours, peer = run(*ours_key), run(*peer_key)
        if ours and peer and ours.per_core and peer.per_core:
            value = ours.per_core / peer.per_core
            out.append(
                (
                    f"(info) {name}, per server CPU-second",
                    f"{value:.2f}x",
                    f">= {need:g}x",
                    "pass" if value >= need else "fail",
                    "the cost of a query or handshake, whatever bounded the rate",
                )
            )
    mem = r.memory.get("dnstls")
    per = mem.per_conn_kb if mem else None
    out.append(
        (
            f"memory per idle DoT connection ({args.idle_conns:,} open)",
            f"{per:.1f} kB" if per is not None else "-",
            "< 60 kB",
            "n/a" if per is None else ("PASS" if per < 60 else "FAIL"),
            mem.error.strip() if mem else "",
        )
    )
    return out


def correctness_verdicts(r: Results) -> tuple[list[str], bool]:
    """
    Lines comparing every rcode mix with Knot's, and whether dnstls matched.
    """
    reference = r.correctness.get(("knot", "udp"))
    lines: list[str] = []
    ours_ok = True
    if reference is None or reference.error:
        return ["no reference: Knot's UDP pass did not run"], False
    for (server, mode), p in r.correctness.items():
        same = not p.error and p.rcodes == reference.rcodes and p.completed == reference.completed
        if not same and server == "dnstls":
            ours_ok = False
        mark = "equal" if same else "**MISMATCH**"
        lines.append(
            f"| {r.labels.get(server, server)} | {mode} | {fmt_rcodes(p.rcodes)} | "
            f"{p.completed}/{p.sent} | {mark}{' ' + p.error if p.error else ''} |"
        )
    return lines, ours_ok
