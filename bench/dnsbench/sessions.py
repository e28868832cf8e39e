"""
Two phases beyond authoritative UDP (issue 14): recursive-hits, the hot set
answered from the caches of dnstls and Unbound both forwarding to one Knot;
and starttls, dnstls's answers over TO-bit-upgraded TCP/53 connections and
over port 853, both driven by L{dnsbench.tlsload}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from dnsbench.dnsperf import Perf, median_run
from dnsbench.large import Guarded
from dnsbench.layout import HERE, QUERIES, TLS_NAME
from dnsbench.processes import Processes, note
from dnsbench.results import Results
from dnsbench.servers import Server, make_forwarders, start


def recursive_queries(scratch: Path) -> Path:
    """
    bench/queries.txt without the names below the delegation to
    child.example.test: a forwarder gets a referral for those, which no
    resolver caches as an answer.
    """
    path = scratch / "recursive-queries.txt"
    lines = [x for x in QUERIES.read_text().splitlines() if x.strip() and "child.example.test" not in x]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_recursive(
    args: argparse.Namespace,
    scratch: Path,
    ca: Path,
    procs: Processes,
    r: Results,
    knot: Server | None,
    guarded: Guarded,
) -> None:
    """
    Start each forwarder in turn, warm its cache with one pass of the
    queries, then run dnsperf over them.
    """
    if knot is None or knot.proc is None:
        r.failures.append("recursive-hits: needs Knot (--peers knot) as the upstream")
        return
    queries = recursive_queries(scratch)
    for key, server in make_forwarders(args, scratch, knot.port).items():
        r.labels.setdefault(f"{key}-forward", server.label)
        start(server, procs, args, ca)
        once = ["-n", "1", "-c", "1", "-q", "16", "-t", "3"]
        guarded(f"{key}-recursive-warm", server, "udp", 60, extra=once, queries=queries)
        r.recursive[key] = guarded(f"{key}-recursive-hits", server, "udp", args.seconds, queries=queries)
        assert server.proc is not None
        procs.stop(server.proc)


def run_starttls(
    args: argparse.Namespace, scratch: Path, ca: Path, r: Results, dnstls: Server | None
) -> None:
    """
    tlsload against dnstls's port 853 and, upgrading, its TCP port, the two
    taking turns C{args.starttls_rounds} times; the median run of each kept.
    """
    if dnstls is None or dnstls.proc is None or dnstls.tls_port is None:
        r.failures.append("starttls: dnstls is not running")
        return
    runs: dict[str, list[Perf]] = {"853": [], "upgraded": []}
    for turn in range(args.starttls_rounds):
        for key, port in (("853", dnstls.tls_port), ("upgraded", dnstls.port)):
            tag = f"starttls-{key}" + (f"-{turn + 1}" if args.starttls_rounds > 1 else "")
            p = tlsload(args, scratch, ca, tag, port, key == "upgraded", dnstls.proc.pid)
            if p.error:
                r.failures.append(f"{tag}: {p.error}")
            note(f"{tag}: {p.qps:,.0f} q/s, handshake {p.conn_ms or 0:.1f} ms, {p.error or 'ok'}")
            runs[key].append(p)
    for key, done in runs.items():
        r.starttls[key] = median_run(done)
        r.starttls_rates[key] = [p.qps for p in done if not p.error]


def tlsload(
    args: argparse.Namespace, scratch: Path, ca: Path, tag: str, port: int, upgrade: bool, pid: int
) -> Perf:
    """
    One run of L{dnsbench.tlsload} on the load CPU, as a L{Perf}: its JSON
    report and raw output kept in scratch/raw/TAG.txt.
    """
    argv = (["taskset", "-c", args.load_cpu] if args.pin else []) + [
        sys.executable,
        "-m",
        "dnsbench.tlsload",
        "--host",
        args.addr,
        "--port",
        str(port),
        "--ca",
        str(ca),
        "--name",
        TLS_NAME,
        "--queries",
        str(QUERIES),
        "--clients",
        str(args.clients),
        "--outstanding",
        str(args.outstanding),
        "--seconds",
        str(args.seconds),
        "--pid",
        str(pid),
        *(["--starttls"] if upgrade else []),
    ]
    result = Perf(load=" ".join(Path("/proc/loadavg").read_text().split()[:3]))
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    try:
        done = subprocess.run(argv, capture_output=True, env=env, timeout=args.seconds + 60, check=False)
    except subprocess.TimeoutExpired:
        result.error = "tlsload timed out"
        return result
    (scratch / "raw" / f"{tag}.txt").write_bytes(done.stdout + done.stderr)
    try:
        data = json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        result.error = f"tlsload exit status {done.returncode}: {done.stderr.decode()[-300:].strip()}"
        return result
    result.qps = float(data["qps"])
    result.completed = result.sent = int(data["answers"])
    result.run_s = float(data["seconds"])
    result.rcodes = {str(k): int(v) for k, v in data["rcodes"].items()}
    result.conn_ms = data["handshake_ms"]
    # both over the measured window only (handshakes and start-up left out)
    result.cpu_s, result.load_cpu_s = data["server_cpu_s"], float(data["cpu_s"])
    if data["errors"]:
        result.error = "; ".join(f"{n} x {e}" for e, n in data["errors"].items())
    elif not result.completed:
        result.error = "no answer"
    return result
