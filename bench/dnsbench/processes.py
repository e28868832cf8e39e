"""
The processes a run starts (stopped by PID, TERM then KILL), commands whose
output it reads, and its progress notes.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path
from typing import Any


class Abort(Exception):
    """
    A signal or the overall time limit: stop everything and report.
    """


class Processes:
    """
    Every process this run started, stopped in reverse order by PID.
    """

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """
        Start C{argv} as C{name}, its output going to the logs directory.
        """
        log = open(self.logs / f"{name}.log", "ab")
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", log)
        proc = subprocess.Popen(argv, stderr=log, **kw)
        log.close()
        self.running.append((name, proc))
        note(f"started {name} (pid {proc.pid}): {' '.join(argv)}")
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """
        Stop C{proc}, if this run started it and it is still on the list.
        """
        for i, (name, p) in enumerate(self.running):
            if p is proc:
                del self.running[i]
                _terminate(name, p)
                return

    def stop_all(self) -> None:
        """
        Stop every process still on the list, the last started first.
        """
        while self.running:
            name, proc = self.running.pop()
            _terminate(name, proc)


def _terminate(name: str, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            note(f"{name} (pid {proc.pid}) ignored TERM, killing it")
            proc.kill()
            proc.wait(5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def note(text: str) -> None:
    """
    Progress on standard error.
    """
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {text}", file=sys.stderr, flush=True)


def capture(argv: list[str], timeout: float = 20) -> str:
    """
    A command's standard output and error, or C{""} when it is missing or
    fails to run.  It runs in C{/}, so that C{python -c} imports what a
    server would, not a package in the current directory.
    """
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, cwd="/")
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).decode("utf-8", "replace")
