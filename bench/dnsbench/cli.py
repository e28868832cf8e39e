"""
dnstls benchmark: one command that starts dnstls and its peers on loopback,
loads each with dnsperf and writes BENCHMARKS.md.

  bench/run                 the full matrix (10 s runs, about 12-15 minutes)
  bench/run --quick         3 s runs and 2,000 idle connections, a smoke test
  bench/run --only udp,memory --peers knot,twisted
  bench/run --only large-load,miss-udp,flood-udp --peers knot,nsd
  bench/run --help

What it does (issue 7):
  * starts dnstls (twistd dnstls, the installed package) and the peers Knot
    (knotd), Unbound (with a DoT port), Twisted Names (twistd dns) and dnsdist
    (DoT proxy in front of Knot, optional) on 127.0.0.1 with the same zone
    (bench/example.test.zone); the servers are pinned to one CPU, dnsperf and
    the other load generators to another;
  * correctness: each server and mode answers bench/queries.txt once through
    (dnsperf -n 1); the rcode counts must equal Knot's;
  * throughput: dnsperf in udp, tcp and dot modes (dot only for servers that
    speak it): queries/s, mean latency, and p50/p99 latency from a second,
    shorter run with dnsperf -v (per-query latencies);
  * new DoT handshakes per second: dnsperf -m dot -O num-queries-per-conn=1,
    three runs per server taking turns, the median reported;
  * resident memory per idle DoT connection: fresh instances of dnstls and
    Unbound, RSS (/proc/PID/status) before and after bench/idle_dot.py opens
    N connections (handshake, one query, then idle);
  * the cache-miss path (issue 14): a generated zone of --large-names names
    (default 200,000: an A each, an AAAA every tenth) served by dnstls, Knot
    and NSD in turn: start to first answer and RSS (large-load), dnsperf
    over a mix of unique existing and nonexistent names (miss-udp) and over
    a random-subdomain flood, every name distinct (flood-udp);
  * recursive-hits: dnstls (--forward) and Unbound (forward-zone), both
    forwarding to the Knot of the hot zone, over their warm caches;
  * starttls: dnstls over TO-bit-upgraded TCP/53 connections and over port
    853, both from bench/dnsbench/tlsload.py (dnsperf cannot upgrade);
  * the issues' targets as pass/fail lines, computed from ratios measured in
    the same run, with how far a target is missed.

Everything it starts is stopped on exit (by PID, TERM then KILL), every step
has a time limit, only loopback addresses are accepted, scratch files
(rendered configs, a throw-away CA and key, logs, raw dnsperf outputs) live
in a temporary directory removed at the end (--keep keeps it).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import resource
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from dnsbench.certs import make_certs
from dnsbench.environment import dnstls_source, machine
from dnsbench.layout import REPO, ZONE
from dnsbench.phases import run_phases
from dnsbench.processes import Abort, Processes, capture, note
from dnsbench.report import write_report
from dnsbench.results import Results, from_json, jsonable
from dnsbench.servers import raise_nofile
from dnsbench.verdicts import correctness_verdicts

PHASES = (
    "correctness",
    "udp",
    "tcp",
    "dot",
    "handshake",
    "recursive-hits",
    "starttls",
    "large-load",
    "miss-udp",
    "flood-udp",
    "memory",
)
ALL_PEERS = ("knot", "nsd", "unbound", "twisted", "dnsdist")


def parse(argv: list[str]) -> argparse.Namespace:
    """
    The options of C{bench/run}, with their defaults filled in and checked.
    """
    p = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke test: 3 s runs, 2 s latency runs, 2,000 idle connections"
    )
    p.add_argument("--seconds", type=int, help="length of each dnsperf run (default 10; 3 with --quick)")
    p.add_argument(
        "--latency-seconds", type=int, help="length of each -v latency run (default 3; 2 with --quick)"
    )
    p.add_argument("--clients", type=int, default=8, help="dnsperf -c (default 8)")
    p.add_argument(
        "--handshake-clients",
        type=int,
        default=8,
        help="dnsperf -c and -q for the handshake runs (default 8; dnsperf 2.10 gets slower, "
        "not faster, with more: its own connection handling bounds the rate)",
    )
    p.add_argument(
        "--handshake-rounds",
        type=int,
        help="handshake runs per server, the servers taking turns; the median run is reported "
        "(default 3; 1 with --quick): one run's rate swings by a factor of two with dnsperf's "
        "connection handling",
    )
    p.add_argument("--outstanding", type=int, default=64, help="dnsperf -q (default 64)")
    p.add_argument(
        "--idle-conns",
        type=int,
        help="idle DoT connections for the memory phase (default 10000; 2000 with --quick)",
    )
    p.add_argument(
        "--large-names",
        type=int,
        default=200_000,
        help="names in the generated zone of the large-zone phases (default 200,000)",
    )
    p.add_argument(
        "--miss-queries", type=int, default=300_000, help="queries in the miss mix (default 300,000)"
    )
    p.add_argument(
        "--flood-queries",
        type=int,
        help="distinct names in the random-subdomain flood (default 120,000 a second of --seconds, "
        "so that dnsperf seldom comes back to the start of the file)",
    )
    p.add_argument(
        "--starttls-rounds",
        type=int,
        help="starttls runs of each kind, taking turns; the median is reported (default 3; 1 with --quick)",
    )
    p.add_argument(
        "--peers",
        default=",".join(ALL_PEERS),
        help=f"comma list among {','.join(ALL_PEERS)} (default all; dnsdist needs knot)",
    )
    p.add_argument(
        "--only", default=",".join(PHASES), help=f"comma list of phases (default {','.join(PHASES)})"
    )
    p.add_argument("--addr", default="127.0.0.1", help="loopback address to serve on (default 127.0.0.1)")
    p.add_argument(
        "--base-port", type=int, default=15300, help="ports BASE..BASE+47 are used (default 15300)"
    )
    p.add_argument("--twistd", default="twistd", help="twistd that has the dnstls plugin (default: on PATH)")
    p.add_argument("--names-twistd", default="twistd", help="twistd for Twisted Names (default: on PATH)")
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="one more argument for dnstls (repeatable), e.g. --server-arg=--workers=2",
    )
    p.add_argument("--server-cpu", default="0", help="taskset CPU list for the servers (default 0)")
    p.add_argument("--load-cpu", default="1", help="taskset CPU list for dnsperf (default 1)")
    p.add_argument(
        "--output", default=str(REPO / "BENCHMARKS.md"), help="report file (default BENCHMARKS.md)"
    )
    p.add_argument("--json", help="also write the raw results here, as JSON")
    p.add_argument("--report-from", help="write the report from a --json file of an earlier run; run nothing")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, raw outputs)")
    p.add_argument("--time-limit", type=int, default=1800, help="abort the whole run after this many seconds")
    args = p.parse_args(argv)
    args.argv = argv
    args.seconds = args.seconds or (3 if args.quick else 10)
    args.latency_seconds = args.latency_seconds or (2 if args.quick else 3)
    args.idle_conns = args.idle_conns or (2000 if args.quick else 10000)
    args.handshake_rounds = args.handshake_rounds or (1 if args.quick else 3)
    args.starttls_rounds = args.starttls_rounds or (1 if args.quick else 3)
    args.flood_queries = args.flood_queries or 120_000 * args.seconds
    if args.large_names < 10:
        p.error("--large-names must be at least 10")
    args.peers = [x for x in args.peers.split(",") if x]
    args.only = [x for x in args.only.split(",") if x]
    for x in args.peers:
        if x not in ALL_PEERS:
            p.error(f"unknown peer {x}")
    for x in args.only:
        if x not in PHASES:
            p.error(f"unknown phase {x}")
    if not ipaddress.ip_address(args.addr).is_loopback or ipaddress.ip_address(args.addr).version != 4:
        p.error(f"refusing non-loopback (or IPv6) address {args.addr}")
    return args


def main(argv: list[str]) -> int:
    """
    Run the benchmark (or write the report again) and return the exit status.
    """
    args = parse(argv)
    if args.report_from:
        # runs nothing: needs neither the servers nor dnsperf
        args.source, args.has_no_recursion, args.pin = "", False, False
        return rerender(args)
    for tool in ["dnsperf", "openssl", args.twistd]:
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} not found")
    missing = {"knot": "knotd", "nsd": "nsd", "unbound": "unbound", "dnsdist": "dnsdist"}
    for peer, tool in missing.items():
        if peer in args.peers and not shutil.which(tool):
            note(f"{tool} not installed: leaving {peer} out")
            args.peers.remove(peer)
    if "twisted" in args.peers and not shutil.which(args.names_twistd):
        note("no twistd for Twisted Names: leaving it out")
        args.peers.remove("twisted")
    help_text = capture([args.twistd, "dnstls", "--help"])
    if "--zones" not in help_text:
        raise SystemExit(
            f"bench: `{args.twistd} dnstls --help` fails: is dnstls installed?\n{help_text[-500:]}"
        )
    args.has_no_recursion = "--no-recursion" in help_text
    args.source = dnstls_source(args)
    if args.source and Path(args.source) != REPO / "dnstls":
        note(f"WARNING: twistd imports dnstls from {args.source}, not from this checkout ({REPO})")
    args.pin = bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2
    raise_nofile()
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile != resource.RLIM_INFINITY and nofile < args.idle_conns + 500:
        args.idle_conns = max(100, nofile - 500)
        note(f"open-file limit {nofile}: the memory phase opens {args.idle_conns} connections")

    results = Results(started=_now(), machine=machine())
    scratch = Path(tempfile.mkdtemp(prefix="dnstls-bench-"))
    for sub in ("run/knot", "knot/db", "zones", "unbound", "logs", "raw"):
        (scratch / sub).mkdir(parents=True)
    shutil.copy(ZONE, scratch / "zones" / "example.test.zone")
    procs = Processes(scratch / "logs")

    def stop(signum: int, frame: Any) -> None:
        raise Abort(f"signal {signum}")

    def too_long(signum: int, frame: Any) -> None:
        raise Abort(f"overall time limit of {args.time_limit} s")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(args.time_limit)
    note(f"scratch directory {scratch}")
    status = 0
    try:
        ca = make_certs(scratch / "certs")
        run_phases(args, scratch, ca, procs, results)
    except Abort as e:
        results.failures.append(f"aborted: {e}")
        status = 1
    except Exception as e:  # noqa: BLE001 - reported, then everything is stopped
        results.failures.append(f"{type(e).__name__}: {e}")
        note(f"error: {type(e).__name__}: {e}")
        status = 1
    finally:
        signal.alarm(0)
        procs.stop_all()
        results.finished = _now()
        try:
            write_report(results, args, Path(args.output))
            note(f"wrote {args.output}")
            if args.json:
                Path(args.json).write_text(json.dumps(jsonable(results, args), indent=1, default=str))
        finally:
            if args.keep:
                note(f"kept {scratch}")
            else:
                shutil.rmtree(scratch, ignore_errors=True)
    if results.failures:
        status = 1
    if results.correctness and not correctness_verdicts(results)[1]:
        note("dnstls's rcode mix differs from Knot's")
        status = 1
    return status


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def rerender(args: argparse.Namespace) -> int:
    """
    Write the report again from a run's JSON results (--report-from), with
    that run's settings where the JSON has them.
    """
    try:
        data = json.loads(Path(args.report_from).read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        r = from_json(data)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise SystemExit(f"bench: cannot write the report from {args.report_from}: {e}") from None
    args.argv = ["(options not recorded)"]
    for key, value in data.get("args", {}).items():
        setattr(args, key, value)
    args.rerendered = True
    write_report(r, args, Path(args.output))
    note(f"wrote {args.output} from {args.report_from}")
    return 0
