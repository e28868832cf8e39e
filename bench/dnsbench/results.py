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
    }


def from_json(data: dict[str, Any]) -> Results:
    """
    The L{Results} in the JSON data of an earlier run (see L{jsonable}).
    """

    def table(d: dict[str, Any]) -> dict[Any, Perf]:
        return {tuple(k.split("/")) if "/" in k else k: Perf(**v) for k, v in d.items()}

    memory = {
        k: Memory(**{f: v for f, v in m.items() if f != "per_conn_kb"}) for k, m in data["memory"].items()
    }
    labels = {"dnstls": "dnstls", "knot": "Knot DNS", "unbound": "Unbound", "twisted": "Twisted Names"}
    labels["dnsdist"] = "dnsdist (DoT proxy to Knot)"
    return Results(
        started=data["started"],
        finished=data["finished"],
        correctness=table(data["correctness"]),
        throughput=table(data["throughput"]),
        latency=table(data["latency"]),
        handshakes=table(data["handshakes"]),
        handshake_rates=data.get("handshake_rates", {}),
        memory=memory,
        failures=data["failures"],
        versions=data["versions"],
        machine=data["machine"],
        labels=data.get("labels", labels),
    )
