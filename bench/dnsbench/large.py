"""
The large-zone phases (issue 14): large-load, miss-udp and flood-udp.

Each server (dnstls, Knot, NSD) is started in turn with the generated zone
alone (L{dnsbench.largezone}); large-load times it from its start to the
first correct answer (the A of the zone's last name, over UDP) and reads its
memory 2 s later; miss-udp and flood-udp then run dnsperf over the miss mix
and the random-subdomain flood against it, before it is stopped.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from dnsbench.dnsperf import Perf
from dnsbench.largezone import LargeFiles, generate
from dnsbench.probes import port_free, probe
from dnsbench.processes import Processes, note
from dnsbench.procfs import pss_kb, rss_kb
from dnsbench.results import Load, Results
from dnsbench.servers import Server, make_large_servers, raise_nofile

LARGE_PHASES = ("large-load", "miss-udp", "flood-udp")

#: L{dnsbench.phases}'s dnsperf run with its checks: (tag, server, mode, seconds, queries=...)
Guarded = Callable[..., Perf]


def run_large(
    args: argparse.Namespace, scratch: Path, procs: Processes, r: Results, guarded: Guarded
) -> None:
    """
    Generate the large zone and query files, then start each server with
    it in turn and run the large phases asked for.
    """
    began = time.monotonic()
    files = generate(scratch / "large", args.large_names, args.miss_queries, args.flood_queries)
    r.large = {
        "names": files.names,
        "records": files.records,
        "miss_queries": files.miss_queries,
        "flood_queries": files.flood_queries,
    }
    note(
        f"large zone: {files.names:,} names, {files.records:,} records, {files.miss_queries:,} miss "
        f"and {files.flood_queries:,} flood queries, written in {time.monotonic() - began:.1f} s"
    )
    for key, server in make_large_servers(args, scratch, files.zone).items():
        r.labels.setdefault(key, server.label)
        load = _start_timed(server, procs, args, files)
        if "large-load" in args.only:
            r.large_load[key] = load
        if load.error:
            r.failures.append(f"large-load {key}: {load.error}")
            note(f"large-load {key}: {load.error}")
            if server.proc is not None:
                procs.stop(server.proc)
            continue
        note(f"large-load {key}: first answer after {load.seconds:.2f} s, RSS {load.rss_kb / 1024:,.1f} MiB")
        if "miss-udp" in args.only:
            r.miss[key] = guarded(f"{key}-miss-udp", server, "udp", args.seconds, queries=files.miss)
        if "flood-udp" in args.only:
            r.flood[key] = guarded(f"{key}-flood-udp", server, "udp", args.seconds, queries=files.flood)
        assert server.proc is not None
        try:
            load.rss_after_kb = rss_kb(server.proc.pid)
        except RuntimeError:
            pass
        procs.stop(server.proc)


def _start_timed(server: Server, procs: Processes, args: argparse.Namespace, files: LargeFiles) -> Load:
    """
    Start C{server} and time it until it answers the A of the zone's last
    name over UDP (then once over TCP), polling every 20 ms; its RSS and
    PSS 2 s later.
    """
    load = Load()
    if not port_free(args.addr, server.port):
        load.error = f"port {args.addr}:{server.port} is in use"
        return load
    # a generous bound: dnstls took 38 s for 200,000 names at the outset
    limit = 60 + files.names * 0.0015
    began = time.monotonic()
    server.proc = procs.start(server.name, server.argv, preexec_fn=raise_nofile)
    while not probe(args.addr, server.port, "udp", qname=files.probe_name, qtype=1, timeout=0.05):
        if server.proc.poll() is not None:
            load.error = f"exited with status {server.proc.returncode} before answering (see its log)"
            return load
        if time.monotonic() - began > limit:
            load.error = f"no answer after {limit:.0f} s"
            return load
        time.sleep(0.02)
    load.seconds = time.monotonic() - began
    if not probe(args.addr, server.port, "tcp", qname=files.probe_name, qtype=1, timeout=5):
        load.error = "answers over UDP but not over TCP"
    time.sleep(2)
    load.rss_kb = rss_kb(server.proc.pid)
    load.pss_kb = pss_kb(server.proc.pid)
    return load
