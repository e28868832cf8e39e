"""
Everything a run measured, and its JSON form (--json, --report-from).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from dnsbench.dnsperf import Perf
from dnsbench.memory import Memory


@dataclass
class Load:
    """
    One server started with the large zone: the time from its start to the
    first correct answer, and its memory once loaded and after the runs.
    """

    seconds: float = 0.0
    rss_kb: int = 0
    pss_kb: int | None = None
    rss_after_kb: int | None = None
    error: str = ""


@dataclass
class Results:
    """
    Everything measured, for the report.
    """

    started: str = ""
    finished: str = ""
    correctness: dict[tuple[str, str], Perf] = field(default_factory=dict)
    throughput: dict[tuple[str, str], Perf] = field(default_factory=dict)
    latency: dict[tuple[str, str], Perf] = field(default_factory=dict)
    handshakes: dict[str, Perf] = field(default_factory=dict)
    #: the rate of every handshake run, by server (the median run is in handshakes)
    handshake_rates: dict[str, list[float]] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)
    #: the generated large zone and query files: names, records, queries (issue 14)
    large: dict[str, int] = field(default_factory=dict)
    large_load: dict[str, Load] = field(default_factory=dict)
    #: dnsperf over the miss mix and the random-subdomain flood, by server
    miss: dict[str, Perf] = field(default_factory=dict)
    flood: dict[str, Perf] = field(default_factory=dict)
    #: the hot set from the caches of resolvers forwarding to Knot, by server
    recursive: dict[str, Perf] = field(default_factory=dict)
    #: dnstls over TLS with bench/dnsbench/tlsload.py: "853" and "upgraded"
    starttls: dict[str, Perf] = field(default_factory=dict)
    #: the rate of every starttls run, by key (the median run is in starttls)
    starttls_rates: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


#: The settings the report quotes, kept in the JSON results for --report-from.
REPORT_ARGS = (
    "argv",
    "quick",
    "seconds",
    "latency_seconds",
    "clients",
    "outstanding",
    "handshake_clients",
    "handshake_rounds",
    "idle_conns",
    "large_names",
    "miss_queries",
    "flood_queries",
    "starttls_rounds",
    "pin",
    "server_cpu",
    "load_cpu",
    "addr",
    "has_no_recursion",
    "server_arg",
    "source",
)


def jsonable(r: Results, args: argparse.Namespace) -> dict[str, Any]:
    """
    C{r} and the settings of C{args} the report quotes, as JSON-ready data.
    """

    def table(d: dict[Any, Any]) -> dict[str, Any]:
        return {"/".join(k) if isinstance(k, tuple) else k: vars(v) for k, v in d.items()}

    return {
        "args": {k: getattr(args, k) for k in REPORT_ARGS},
        "labels": r.labels,
        "started": r.started,
        "finished": r.finished,
        "machine": r.machine,
        "versions": r.versions,
        "failures": r.failures,
        "correctness": table(r.correctness),
        "throughput": table(r.throughput),
        "latency": table(r.latency),
        "handshakes": table(r.handshakes),
        "handshake_rates": r.handshake_rates,
        "memory": {k: {**vars(v), "per_conn_kb": v.per_conn_kb} for k, v in r.memory.items()},
        "large": r.large,
        "large_load": {k: vars(v) for k, v in r.large_load.items()},
        "miss": table(r.miss),
        "flood": table(r.flood),
        "recursive": table(r.recursive),
        "starttls": table(r.starttls),
        "starttls_rates": r.starttls_rates,
    }


def from_json(data: dict[str, Any]) -> Results:
    """
    The L{Results} in the JSON data of an earlier run (see L{jsonable}); the
    tables a run of an older harness did not have are left empty.

    @raise ValueError: C{data} is not such a run's results.
    """
    missing = [k for k in ("started", "finished", "machine", "versions", "failures") if k not in data]
    if missing:
        raise ValueError(f"not the JSON results of a bench/run (no {', '.join(missing)})")

    def table(d: dict[str, Any]) -> dict[Any, Perf]:
        return {tuple(k.split("/")) if "/" in k else k: Perf(**v) for k, v in d.items()}

    memory = {
        k: Memory(**{f: v for f, v in m.items() if f != "per_conn_kb"})
        for k, m in data.get("memory", {}).items()
    }
    labels = {"dnstls": "dnstls", "knot": "Knot DNS", "unbound": "Unbound", "twisted": "Twisted Names"}
    labels["dnsdist"] = "dnsdist (DoT proxy to Knot)"
    labels["nsd"] = "NSD"
    return Results(
        started=data["started"],
        finished=data["finished"],
        correctness=table(data.get("correctness", {})),
        throughput=table(data.get("throughput", {})),
        latency=table(data.get("latency", {})),
        handshakes=table(data.get("handshakes", {})),
        handshake_rates=data.get("handshake_rates", {}),
        memory=memory,
        large=data.get("large", {}),
        large_load={k: Load(**v) for k, v in data.get("large_load", {}).items()},
        miss=table(data.get("miss", {})),
        flood=table(data.get("flood", {})),
        recursive=table(data.get("recursive", {})),
        starttls=table(data.get("starttls", {})),
        starttls_rates=data.get("starttls_rates", {}),
        failures=data["failures"],
        versions=data["versions"],
        machine=data["machine"],
        labels=data.get("labels", labels),
    )
