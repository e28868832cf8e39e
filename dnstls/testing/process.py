# -*- test-case-name: tests.testing.test_testing -*-
"""
Servers in child processes for tests: a program whose output is read line
by line until it is ready, and stopped with everything it leaves behind;
C{twistd -n dnstls} as one, ready once it says so on a pipe (its
C{--ready-fd}, see L{dnstls.ready}), which names its listeners.

L{dnstls.testing} starts its servers with these, and so do the project's
own tests (for dnstls, Knot DNS and Unbound).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

from dnstls.ready import Ready

_T = TypeVar("_T")

#: Runs twistd with this interpreter, whatever C{twistd} on the path is.
TWISTD = (sys.executable, "-c", "from twisted.scripts.twistd import run; run()")

#: Options that choose where answers for names outside the zones come from.
RECURSION_OPTIONS = frozenset({"--no-recursion", "--forward", "--forward-tls", "--root-hints"})


def chooses_recursion(args: Sequence[str]) -> bool:
    """
    Whether the command-line C{args} say where names outside the zones are
    answered from (forwarders, root hints, or none).
    """
    return any(arg.partition("=")[0] in RECURSION_OPTIONS for arg in args)


def twistd_dnstls(args: Sequence[str], start: Sequence[str] = TWISTD) -> list[str]:
    """
    The command line of C{twistd -n dnstls ARGS} in the foreground, without
    a pid file.

    @param start: the program that runs twistd (by default L{TWISTD}).
    """
    return [*start, "-n", "--pidfile=", "dnstls", *args]


class LoggedProcess:
    """
    A program in a child process, its output (stdout and stderr) read line
    by line as it comes.

    @ivar command: its command line.
    @ivar process: the child.
    @ivar lines: its output so far, one string a line.
    @ivar directory: a directory of its own, removed when it stops.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        directory: str | os.PathLike[str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        """
        @param pass_fds: descriptors the child inherits, as themselves.
        """
        self.command = list(command)
        self.directory = directory
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            self.command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, pass_fds=tuple(pass_fds),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        """
        Everything it has written so far.
        """
        return "\n".join(self.lines)

    def wait_for(
        self, ready: Callable[[], _T | None], timeout: float, interval: float = 0.02
    ) -> _T | None:
        """
        Call C{ready} every C{interval} seconds while the child runs, until it
        returns something other than C{None}, which is returned; C{None}
        when the child exits or C{timeout} seconds pass first.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            found = ready()
            if found is not None:
                return found
            time.sleep(interval)
        return None

    def failed(self, message: str, error: type[Exception] = RuntimeError) -> NoReturn:
        """
        Stop the child, then raise C{error} with C{message} and its output.
        """
        self.stop()
        raise error(f"{message}:\n{self.output}")

    def stop(self) -> None:
        """
        Stop the child (SIGTERM, then SIGKILL after five seconds), read the
        rest of its output and remove its directory; harmless when repeated.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(2)
        if self.process.stdout is not None and not self._reader.is_alive():
            self.process.stdout.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


class ReadyPipe:
    """
    A pipe a child reports ready on (C{--ready-fd}), read by a thread.

    @ivar write_fd: the child's end, closed here once the child has it.
    @ivar report: the report read, once the line came.
    @ivar error: why the line that came is no report, if it is none.
    @ivar closed: whether the pipe reached its end.
    """

    def __init__(self) -> None:
        self._read_fd, self.write_fd = os.pipe()
        self.report: Ready | None = None
        self.error: str | None = None
        self.closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)

    def started(self) -> None:
        """
        The child has its end: close ours and read.
        """
        os.close(self.write_fd)
        self._reader.start()

    def _read(self) -> None:
        data = b""
        with open(self._read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                data += chunk
        line, newline, _ = data.partition(b"\n")
        try:
            if newline:
                self.report = Ready.from_json(line)
        except ValueError as e:
            self.error = f"unreadable --ready-fd line {line!r}: {e}"
        self.closed = True

    def outcome(self) -> Ready | bool | None:
        """
        The report once read, C{False} if the pipe ended without one (or an
        unreadable one), C{None} while it has neither.
        """
        if self.report is not None:
            return self.report
        return False if self.closed else None


class DnstlsChild(LoggedProcess):
    """
    C{twistd -n dnstls ARGS} in a child process, started and ready: it has
    written its readiness report on its C{--ready-fd}.

    @ivar ready: that report.
    @ivar addresses: C{(kind, host, port)} of every listener it reported,
        in order (C{kind} is C{udp}, C{tcp} or C{tls}).
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        timeout: float,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        directory: str | os.PathLike[str] | None = None,
        error: type[Exception] = RuntimeError,
    ) -> None:
        """
        @param error: what to raise, with the log, when the server exits or
            C{timeout} seconds pass before it is ready.
        """
        pipe = ReadyPipe()
        try:
            super().__init__(
                twistd_dnstls([*args, "--ready-fd", str(pipe.write_fd)]),
                cwd=cwd, env=env, directory=directory, pass_fds=[pipe.write_fd],
            )
        finally:
            pipe.started()
        found = self.wait_for(pipe.outcome, timeout)
        if not isinstance(found, Ready):
            self.failed(pipe.error or "dnstls did not start", error)
        self.ready = found
        self.addresses = [(item.transport, item.address, item.port) for item in found.listening]
