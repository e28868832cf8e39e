# -*- test-case-name: tests.transport.test_workers -*-
"""
One worker process as its supervisor sees it (L{WorkerProcess}): its
command-line options, and its output relayed to the supervisor's log line
by line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from dnstls.transport.workers import WorkersService

#: The text in C{--identity} that becomes the worker's number.
WORKER_PLACEHOLDER = "{worker}"
#: A twistd log line: its timestamp, then C{[namespace#level] text}.
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\S+ ")
#: Output without a line break is logged in pieces of at most this size.
_LONGEST_LINE = 65536


def worker_arguments(
    args: Sequence[str], number: int, state_dir: str, identity: str | None
) -> list[str]:
    """
    The C{twistd dnstls} options of worker C{number}: the supervisor's
    C{args}, then C{--workers 1}, the state directory the supervisor used
    (the shared certificate) and, when it has L{WORKER_PLACEHOLDER}, the
    identity with the worker's number (a later option wins).
    """
    extra = ["--workers", "1", "--state-dir", state_dir]
    if identity is not None and WORKER_PLACEHOLDER in identity:
        extra += ["--identity", identity.replace(WORKER_PLACEHOLDER, str(number))]
    return [*args, *extra]

class WorkerProcess(ProcessProtocol):
    """
    One worker process: its output relayed line by line, its end reported.
    """

    def __init__(self, supervisor: WorkersService, number: int, started: float) -> None:
        self.supervisor = supervisor
        self.number = number
        self.pid = 0
        self.started = started
        self.ready = False
        self.last_error = ""
        self.ended: Deferred[None] = Deferred()
        self.running = True
        self._buffers = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._buffers.get(childFD, b"") + data).split(b"\n")
        self._buffers[childFD] = lines.pop()
        if len(self._buffers[childFD]) > _LONGEST_LINE:
            lines.append(self._buffers[childFD])
            self._buffers[childFD] = b""
        for line in lines:
            self._line(childFD, line)

    def _line(self, childFD: int, raw: bytes) -> None:
        line = _TIMESTAMP.sub("", raw.decode("utf-8", "replace").rstrip("\r"))
        if not line.strip():
            return
        if childFD == 2 or "#error]" in line or "#critical]" in line:
            self.last_error = line
        self.supervisor.relay(self, line, error=childFD == 2)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._buffers.items():
            if rest:
                self._line(fd, rest)
        self._buffers = {1: b"", 2: b""}
        self.running = False
        self.supervisor.ended(self, reason)
        self.ended.callback(None)
