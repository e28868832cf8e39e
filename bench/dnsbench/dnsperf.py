"""
One dnsperf run and what it measured.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dnsbench.layout import QUERIES
from dnsbench.procfs import cpu_seconds


@dataclass
class Perf:
    """
    What one dnsperf run measured.
    """

    qps: float = 0.0
    sent: int = 0
    completed: int = 0
    lost_pct: float = 0.0
    avg_ms: float = 0.0
    rcodes: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    conn_ms: float | None = None
    reconnections: int = 0
    run_s: float = 0.0
    cpu_s: float | None = None
    load_cpu_s: float | None = None
    load: str = ""
    error: str = ""

    @property
    def cpu_pct(self) -> float | None:
        """
        The server's CPU use during the run, in % of one core.
        """
        if self.cpu_s is None or not self.run_s:
            return None
        return 100 * self.cpu_s / self.run_s

    @property
    def load_cpu_pct(self) -> float | None:
        """
        dnsperf's own CPU use during the run, in % of one core.
        """
        if self.load_cpu_s is None or not self.run_s:
            return None
        return 100 * self.load_cpu_s / self.run_s

    @property
    def per_core(self) -> float | None:
        """
        Completed queries per second of the server's CPU time: what one
        saturated core would do, whatever held the server back.
        """
        if not self.cpu_s or not self.completed:
            return None
        return self.completed / self.cpu_s


def dnsperf(
    args: argparse.Namespace,
    scratch: Path,
    tag: str,
    port: int,
    mode: str,
    seconds: int,
    extra: list[str] | None = None,
    verbose: bool = False,
    pid: int | None = None,
    queries: Path = QUERIES,
) -> Perf:
    """
    One bounded dnsperf run over C{queries} (bench/queries.txt unless
    told), pinned to the load CPU; its output is kept in scratch/raw/TAG.txt.
    """
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    raw = scratch / "raw" / f"{tag}.txt"
    argv = (["taskset", "-c", args.load_cpu] if args.pin else []) + [
        "dnsperf",
        "-s",
        args.addr,
        "-p",
        str(port),
        "-m",
        mode,
        "-d",
        str(queries),
        "-l",
        str(seconds),
        "-c",
        str(args.clients),
        "-q",
        str(args.outstanding),
        *(extra or []),
        *(["-v"] if verbose else []),
    ]
    result = Perf(load=load)
    cpu_before = cpu_seconds(pid)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        with open(raw, "wb") as out:
            done = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, timeout=seconds + 40, check=False
            )
    except subprocess.TimeoutExpired:
        result.error = "dnsperf timed out"
        return result
    cpu_after = cpu_seconds(pid)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.load_cpu_s = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    if cpu_before is not None and cpu_after is not None:
        result.cpu_s = cpu_after - cpu_before
    if done.returncode != 0:
        result.error = f"dnsperf exit status {done.returncode}"
    _parse(raw, result, verbose)
    if not result.error and result.completed == 0:
        result.error = "no query completed"
    return result


def _parse(raw: Path, result: Perf, verbose: bool) -> None:
    latencies: list[float] = []
    connections = False
    with open(raw, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith("Connection Statistics"):
                connections = True
            if connections:
                if m := re.search(r"Reconnections:\s+(\d+)", line):
                    result.reconnections = int(m[1])
                elif m := re.search(r"Average Latency \(s\):\s+([\d.]+)", line):
                    result.conn_ms = float(m[1]) * 1000
                continue
            if verbose and line.startswith("> "):
                parts = line.split()
                if len(parts) >= 5 and parts[1] not in ("T", "I"):
                    try:
                        latencies.append(float(parts[-1]))
                    except ValueError:
                        pass
                continue
            if m := re.search(r"Queries sent:\s+(\d+)", line):
                result.sent = int(m[1])
            elif m := re.search(r"Queries completed:\s+(\d+)", line):
                result.completed = int(m[1])
            elif m := re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", line):
                result.lost_pct = float(m[1])
            elif "Response codes:" in line:
                for code, count in re.findall(r"([A-Z]+) (\d+) \(", line):
                    result.rcodes[code] = int(count)
            elif m := re.search(r"Run time \(s\):\s+([\d.]+)", line):
                result.run_s = float(m[1])
            elif (m := re.search(r"Queries per second:\s+([\d.]+)", line)) and not result.qps:
                result.qps = float(m[1])
            elif (m := re.search(r"Average Latency \(s\):\s+([\d.]+)", line)) and not result.avg_ms:
                result.avg_ms = float(m[1]) * 1000
    if latencies:
        latencies.sort()
        result.p50_ms = latencies[len(latencies) // 2] * 1000
        result.p99_ms = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000


def median_run(runs: list[Perf]) -> Perf:
    """
    The run of median rate among those that did not fail (the lower middle
    one of an even count), else the first failure.
    """
    good = sorted((p for p in runs if not p.error), key=lambda p: p.qps)
    return good[(len(good) - 1) // 2] if good else runs[0]
