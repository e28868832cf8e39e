# -*- test-case-name: tests.transport.test_workers -*-
"""
One worker process as its supervisor sees it (L{WorkerProcess}): its
command-line options, its output relayed to the supervisor's log line by
line, and the readiness it reports on a pipe of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import InvalidLogLevelError, LogLevel
from twisted.python.failure import Failure

from dnstls.ready import Ready

if TYPE_CHECKING:
    from dnstls.transport.workers import WorkersService

#: The text in C{--identity} that becomes the worker's number.
WORKER_PLACEHOLDER = "{worker}"
#: A twistd log line: its timestamp, then C{[namespace#level] text}.
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\S+ ")
_LEVEL = re.compile(r"^\[[^\]#]*#(\w+)\]")
#: Output without a line break is logged in pieces of at most this size.
_LONGEST_LINE = 65536
#: The longest ready line read from a worker: about 55 octets a zone, so
#: room for some 300,000 zones.
_LONGEST_READY = 16 * 1024 * 1024


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
    One worker process: its output relayed line by line at its own level,
    its readiness read from a pipe of its own (its C{--ready-fd}, see
    L{dnstls.ready}), its end reported.

    @ivar ready_fd: the worker's descriptor of that pipe.
    @ivar report: what the worker reported there once it served.
    @ivar last_error: its last line on standard error, or logged as an error.
    """

    def __init__(
        self, supervisor: WorkersService, number: int, started: float, ready_fd: int
    ) -> None:
        self.supervisor = supervisor
        self.number = number
        self.pid = 0
        self.started = started
        self.ready_fd = ready_fd
        self.report: Ready | None = None
        self.last_error = ""
        self.ended: Deferred[None] = Deferred()
        self.running = True
        #: a SIGHUP came while it was starting: it is passed on once ready
        self.hup_pending = False
        self._buffers = {1: b"", 2: b""}
        self._ready_line = b""

    @property
    def ready(self) -> bool:
        """
        Whether the worker has reported that it serves.
        """
        return self.report is not None

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == self.ready_fd:
            self._ready_received(data)
            return
        lines = (self._buffers.get(childFD, b"") + data).split(b"\n")
        self._buffers[childFD] = lines.pop()
        if len(self._buffers[childFD]) > _LONGEST_LINE:
            lines.append(self._buffers[childFD])
            self._buffers[childFD] = b""
        for line in lines:
            self._line(childFD, line)

    def _ready_received(self, data: bytes) -> None:
        if self.report is not None or len(self._ready_line) > _LONGEST_READY:
            return
        self._ready_line += data
        line, newline, _ = self._ready_line.partition(b"\n")
        if not newline:
            if len(self._ready_line) > _LONGEST_READY:
                self.last_error = f"--ready-fd {self.ready_fd}: a ready line over {_LONGEST_READY} octets"
                self.supervisor.relay(self, self.last_error, LogLevel.error)
            return
        try:
            self.report = Ready.from_json(line)
        except ValueError as e:
            self.last_error = f"--ready-fd {self.ready_fd}: {e}"
            return
        self.supervisor.worker_ready(self)

    def _line(self, childFD: int, raw: bytes) -> None:
        line = _TIMESTAMP.sub("", raw.decode("utf-8", "replace").rstrip("\r"))
        if not line.strip():
            return
        if childFD == 2 or "#error]" in line or "#critical]" in line:
            self.last_error = line
        self.supervisor.relay(self, line, _level(line, LogLevel.error if childFD == 2 else LogLevel.info))

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._buffers.items():
            if rest:
                self._line(fd, rest)
        self._buffers = {1: b"", 2: b""}
        self.running = False
        self.supervisor.ended(self, reason)
        self.ended.callback(None)


def _level(line: str, default: LogLevel) -> LogLevel:
    """
    The level of a twistd log line, C{[namespace#level] text}, else C{default}.
    """
    match = _LEVEL.match(line)
    if match is not None:
        try:
            level: LogLevel = LogLevel.levelWithName(match.group(1))
        except InvalidLogLevelError:
            return default
        return level
    return default
