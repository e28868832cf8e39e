"""
The report's sections for the workloads of issue 14: the large zone (load
time, memory, the miss mix and the random-subdomain flood), recursive cache
hits, and answers over STARTTLS-upgraded connections.
"""

from __future__ import annotations

import argparse

from dnsbench.dnsperf import Perf
from dnsbench.formatting import fmt, fmt_rcodes
from dnsbench.results import Results


def perf_rows(runs: dict[str, Perf], labels: dict[str, str], first: str, ours: Perf | None) -> list[str]:
    """
    One table row a run: C{first} (the workload), the server, queries/s,
    ours over it, latency, losses, CPU, queries per CPU-second, rcodes.
    """
    rows = []
    for server, p in runs.items():
        label = labels.get(server, server)
        if p.error and not p.qps:
            rows.append(f"| {first} | {label} | **FAILED: {p.error}** | | | | | | | | {p.load} |")
            continue
        ratio = ours.qps / p.qps if ours and not ours.error and p.qps else None
        rows.append(
            f"| {first} | {label} | {p.qps:,.0f} | {fmt(ratio)} | {p.avg_ms:.2f} | {p.lost_pct:.2f} | "
            f"{fmt(p.cpu_pct, 0)} | {fmt(p.load_cpu_pct, 0)} | {fmt(p.per_core, 0)} | "
            f"{fmt_rcodes(p.rcodes)} | {p.load} |"
        )
    return rows


PERF_HEAD = [
    "| workload | server | queries/s | dnstls ÷ this | mean ms | lost % | server CPU % | dnsperf CPU % "
    "| queries per CPU-second | response codes | load before |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
]


def large_section(r: Results, args: argparse.Namespace) -> list[str]:
    """
    The large zone: load time and memory, then the miss and flood runs.
    """
    if not (r.large_load or r.miss or r.flood):
        return []
    z = r.large
    out = [
        "## Large zone: load, memory, cache misses, random-subdomain flood (issue 14)",
        "",
        f"A zone generated at run time (`bench/dnsbench/largezone.py`, fixed seed): `example-large.test.` "
        f"with {z.get('names', 0):,} names, an A for each and an AAAA for every tenth "
        f"({z.get('records', 0):,} records with the SOA, NS and their addresses). dnstls, Knot and NSD "
        "serve it alone, one at a time (each started, measured, loaded with dnsperf, stopped). "
        "**Load**: from the start of the process to its first correct answer (the A of the "
        "zone's last name, asked over UDP every 20 ms), the interpreter's or daemon's start "
        "included; RSS is VmRSS of the process and its children 2 s later, PSS (smaps_rollup) "
        "counts the pages NSD's forked processes share once; RSS after is after the runs. "
        f"**Miss mix**: {z.get('miss_queries', 0):,} queries, 60 % A and 10 % AAAA of existing "
        "names taken in a shuffled order (no name twice before all were asked; an AAAA of a "
        "name without one is NODATA), 30 % A of random names that do not exist (NXDOMAIN). "
        f"**Flood**: {z.get('flood_queries', 0):,} distinct random names `<random>.example-large.test` "
        "(all NXDOMAIN, the 'water torture' attack); dnsperf starts the file again at its end, so "
        "names repeat only when more queries were sent than that. "
        f"dnsperf `-c {args.clients} -q {args.outstanding} -l {args.seconds}` over UDP, as the hot set.",
        "",
    ]
    if r.large_load:
        ours = r.large_load.get("dnstls")
        out += [
            "| server | start to first answer | dnstls ÷ this | RSS loaded | dnstls ÷ this | PSS loaded "
            "| RSS after the runs |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for server, load in r.large_load.items():
            label = r.labels.get(server, server)
            if load.error:
                out.append(f"| {label} | **FAILED: {load.error}** | | | | | |")
                continue
            ok = ours is not None and not ours.error
            t = ours.seconds / load.seconds if ok and ours and load.seconds else None
            m = ours.rss_kb / load.rss_kb if ok and ours and load.rss_kb else None
            pss = f"{load.pss_kb / 1024:,.1f} MiB" if load.pss_kb else "-"
            after = f"{load.rss_after_kb / 1024:,.1f} MiB" if load.rss_after_kb else "-"
            out.append(
                f"| {label} | {load.seconds:.2f} s | {fmt(t)} | {load.rss_kb / 1024:,.1f} MiB | {fmt(m)} "
                f"| {pss} | {after} |"
            )
        out.append("")
    if r.miss or r.flood:
        out += PERF_HEAD
        out += perf_rows(r.miss, r.labels, "miss mix", r.miss.get("dnstls"))
        out += perf_rows(r.flood, r.labels, "flood", r.flood.get("dnstls"))
        out.append("")
    return out


def recursive_section(r: Results, args: argparse.Namespace) -> list[str]:
    """
    Recursive cache hits: dnstls and Unbound forwarding to one Knot.
    """
    if not r.recursive:
        return []
    labels = {k: r.labels.get(f"{k}-forward", k) for k in r.recursive}
    return [
        "## Recursive cache hits",
        "",
        "dnstls (`--forward` to Knot, no zone of its own, recursion for loopback clients) and "
        'Unbound (one thread, `forward-zone: "."` to the same Knot, which serves '
        "`bench/example.test.zone`), one at a time: one pass of the queries warms the cache "
        "(`dnsperf -n 1`), then dnsperf over UDP at the settings of the hot set, every answer "
        "from the cache. The queries are `bench/queries.txt` less the names under the delegated "
        "`child.example.test` (a forwarder gets a referral for those, which is not an answer to "
        "cache). No target: an information line in Targets.",
        "",
        *PERF_HEAD,
        *perf_rows(r.recursive, labels, "hot set, cached", r.recursive.get("dnstls")),
        "",
    ]


def starttls_section(r: Results, args: argparse.Namespace) -> list[str]:
    """
    Answers over upgraded connections and over port 853, from one tool.
    """
    if not r.starttls:
        return []
    ref = r.starttls.get("853")
    rounds = getattr(args, "starttls_rounds", 1) or 1
    out = [
        "## Answers over STARTTLS-upgraded connections",
        "",
        f"`bench/dnsbench/tlsload.py` (Python asyncio, one process on the load CPU): {args.clients} "
        f"connections to dnstls, {args.outstanding} queries in flight in all, one more sent for "
        f"each answer, for {args.seconds} s, over the queries of `bench/queries.txt`. **Upgraded**: "
        "TCP/53, the probe `STARTTLS. CH TXT` with TO=1 (README, The STARTTLS upgrade), its "
        "reply checked, then the TLS handshake on the same connection; **port 853**: TLS at "
        "once. Both TLS 1.3 with the run's certificate checked, so the ratio compares the two "
        "paths through the server with one client. The load generator is slower than dnsperf "
        "(its CPU % says when it was the bound); the clock starts once every connection is open. "
        + (f"{rounds} runs of each, taking turns; the median run is shown. " if rounds > 1 else ""),
        "",
        "| connection | answers/s | ÷ port 853 | handshake ms (median) | server CPU % | tlsload CPU % "
        "| answers per CPU-second | response codes | load before |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    names = {"853": "port 853 (DoT)", "upgraded": "TCP/53 upgraded (TO bit)"}
    for key, p in r.starttls.items():
        if p.error and not p.qps:
            out.append(f"| {names.get(key, key)} | **FAILED: {p.error}** | | | | | | | {p.load} |")
            continue
        ratio = p.qps / ref.qps if ref and ref.qps else None
        out.append(
            f"| {names.get(key, key)} | {p.qps:,.0f} | {fmt(ratio)} | {fmt(p.conn_ms)} | {fmt(p.cpu_pct, 0)} "
            f"| {fmt(p.load_cpu_pct, 0)} | {fmt(p.per_core, 0)} | {fmt_rcodes(p.rcodes)} | {p.load} |"
        )
    out.append("")
    if rounds > 1 and r.starttls_rates:
        for key, rates in r.starttls_rates.items():
            out.append(
                f"- {names.get(key, key)}, every run in turn: " + ", ".join(f"{q:,.0f}" for q in rates)
            )
        out.append("")
    return out
