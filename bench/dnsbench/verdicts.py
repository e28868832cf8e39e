"""
The issue's targets and the correctness comparison, as verdicts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from dnsbench.dnsperf import Perf
from dnsbench.formatting import fmt, fmt_rcodes
from dnsbench.results import Load, Results


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
        measured = f"{value:.2f}x" if value is not None else "-"
        out.append((name, measured, f">= {need:g}x", verdict(value, need), note(ours, peer)))
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
    out.extend(large_targets(r, note))
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


def verdict(value: float | None, need: float, at_most: bool = False) -> str:
    """
    PASS, FAIL with how far the target is missed, or n/a: C{value} must be
    at least C{need} (at most, with C{at_most}).
    """
    if value is None:
        return "n/a"
    if (value <= need) if at_most else (value >= need):
        return "PASS"
    if at_most:
        return f"**FAIL** ({value / need:.1f}x over)"
    return f"**FAIL** ({need / value:.1f}x short)" if value else "**FAIL**"


def large_targets(r: Results, note: Callable[..., str]) -> list[tuple[str, str, str, str, str]]:
    """
    Issue 14's targets and info lines: the large zone against Knot, the
    upgraded connections against port 853, recursive hits against Unbound.
    """

    def ok(p: Perf | None) -> Perf | None:
        return p if p and not p.error and p.qps else None

    out: list[tuple[str, str, str, str, str]] = []

    def ratio(name: str, ours: Perf | None, peer: Perf | None, need: float | None, tool: str = "") -> None:
        ours, peer = ok(ours), ok(peer)
        value = ours.qps / peer.qps if ours and peer else None
        measured = f"{value:.2f}x" if value is not None else "-"
        cpu = note(ours, peer).replace("dnsperf", tool) if tool else note(ours, peer)
        if need is None:
            out.append((f"(info) {name}", measured, "-", "info", cpu))
            return
        out.append((name, measured, f">= {need:g}x", verdict(value, need), cpu))
        if ours and peer and ours.per_core and peer.per_core:
            core = ours.per_core / peer.per_core
            out.append(
                (
                    f"(info) {name}, per server CPU-second",
                    f"{core:.2f}x",
                    f">= {need:g}x",
                    "pass" if core >= need else "fail",
                    "the cost of a query, whatever bounded the rate",
                )
            )

    if r.miss:
        ratio("miss mix (large zone), UDP, vs Knot", r.miss.get("dnstls"), r.miss.get("knot"), 0.5)
        ratio("miss mix (large zone), UDP, vs NSD", r.miss.get("dnstls"), r.miss.get("nsd"), None)
    if r.flood:
        ratio(
            "random-subdomain flood (large zone), UDP, vs Knot",
            r.flood.get("dnstls"),
            r.flood.get("knot"),
            None,
        )
    ours_load, knot_load = r.large_load.get("dnstls"), r.large_load.get("knot")
    if r.large_load:
        both = (
            (ours_load, knot_load)
            if ours_load and knot_load and not ours_load.error and not knot_load.error
            else None
        )
        rows: list[tuple[str, str, float, Callable[[Load], float], Callable[[Load], str]]] = [
            ("large zone load, start to first answer, vs Knot", "<= 3x", 3.0,
             lambda load: load.seconds, lambda load: f"{load.seconds:.1f} s"),
            ("RSS with the large zone loaded, vs Knot", "<= 2x", 2.0,
             lambda load: float(load.rss_kb), lambda load: f"{load.rss_kb / 1024:,.0f} MiB"),
        ]
        for label, needed, limit, measure, shown in rows:
            value = measure(both[0]) / measure(both[1]) if both else None
            out.append(
                (
                    label,
                    f"{value:.1f}x" if value is not None else "-",
                    needed,
                    verdict(value, limit, at_most=True),
                    f"{shown(both[0])}; {shown(both[1])}" if both else "",
                )
            )
    if r.starttls:
        ratio(
            "upgraded (TO bit) connections vs port 853, pipelined (tlsload)",
            r.starttls.get("upgraded"),
            r.starttls.get("853"),
            0.8,
            "tlsload",
        )
    if r.recursive:
        ratio(
            "recursive cache hits, UDP, vs Unbound",
            r.recursive.get("dnstls"),
            r.recursive.get("unbound"),
            None,
        )
    return out
