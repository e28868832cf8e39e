"""
What /proc tells of a server: its process tree, CPU time and resident memory.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """
    C{pid} and its descendants (a server's worker processes, for one).
    """
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                pending.extend(int(c) for c in (task / "children").read_text().split())
            except (OSError, ValueError):
                pass
    return found


def cpu_seconds(pid: int | None) -> float | None:
    """
    User plus system CPU time of process C{pid} and its descendants so far,
    or C{None}.
    """
    if pid is None:
        return None
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if member == pid:
                return None
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    """
    VmRSS of process C{pid} and its descendants, in kB.
    """
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    if not total:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return total


def pss_kb(pid: int) -> int | None:
    """
    The proportional set size of process C{pid} and its descendants, in
    kB (/proc/PID/smaps_rollup): pages shared among them (NSD's forked
    server processes share its zone) counted once in all, or C{None}.
    """
    total, found = 0, False
    for member in process_tree(pid):
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                found = True
    return total if found else None
