"""
Resident memory per idle DoT connection: a fresh server, bench/idle_dot.py
holding N connections open, and the server's RSS before and after.
"""

from __future__ import annotations

import argparse
import json
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnsbench.layout import HERE, TLS_NAME
from dnsbench.processes import Processes
from dnsbench.procfs import rss_kb
from dnsbench.servers import Server, start


@dataclass
class Memory:
    """
    Resident memory of one server before and after N idle DoT connections.
    """

    before_kb: int = 0
    after_kb: int = 0
    opened: int = 0
    alive: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def per_conn_kb(self) -> float | None:
        """
        The RSS growth per opened connection, in kB, or C{None}.
        """
        if not self.opened:
            return None
        return (self.after_kb - self.before_kb) / self.opened


def idle_memory(
    server: Server, procs: Processes, args: argparse.Namespace, scratch: Path, ca: Path
) -> Memory:
    """
    Start C{server} fresh, warm it up, open C{args.idle_conns} idle DoT
    connections to it and read its RSS before and after.
    """
    result = Memory()
    start(server, procs, args, ca)
    assert server.proc is not None and server.tls_port is not None
    pid = server.proc.pid
    sources = ",".join(f"127.0.0.{10 + i}" for i in range(8))
    if not args.addr.startswith("127."):
        sources = args.addr

    def holder(count: int) -> subprocess.Popen[bytes]:
        argv = (["taskset", "-c", args.load_cpu] if args.pin else []) + [
            sys.executable,
            str(HERE / "idle_dot.py"),
            "--host",
            args.addr,
            "--port",
            str(server.tls_port),
            "--count",
            str(count),
            "--ca",
            str(ca),
            "--name",
            TLS_NAME,
            "--sources",
            sources,
        ]
        return procs.start(f"idle-{server.name}-{count}", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read_json(proc: subprocess.Popen[bytes], limit: float) -> dict[str, Any]:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(limit):
                raise RuntimeError(f"no report from the connection holder in {limit:.0f} s")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the connection holder exited")
        data: dict[str, Any] = json.loads(line)
        return data

    try:
        warm = holder(50)  # one-time allocations: first handshakes, caches
        read_json(warm, 60)
        procs.stop(warm)
        time.sleep(1.0)
        result.before_kb = rss_kb(pid)
        hold = holder(server.idle_conns or args.idle_conns)
        opened = read_json(hold, 600)
        result.opened = int(opened["opened"])
        result.seconds = float(opened["seconds"])
        if opened["failed"]:
            result.error = f"{opened['failed']} connections failed: {opened['errors']}"
        time.sleep(2.0)
        result.after_kb = rss_kb(pid)
        assert hold.stdin is not None
        hold.stdin.write(b"status\n")
        hold.stdin.flush()
        result.alive = int(read_json(hold, 60)["alive"])
        if result.alive != result.opened:
            result.error += f" {result.opened - result.alive} closed by the server while idle"
        procs.stop(hold)
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        result.error = str(e)
    finally:
        procs.stop(server.proc)
    return result
