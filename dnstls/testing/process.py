# -*- test-case-name: tests.testing.test_testing -*-
"""
Servers in child processes for tests: a program whose output is read line
by line until it is ready, and stopped with everything it leaves behind;
C{twistd -n dnstls} as one, ready once its log says it serves its zones.

L{dnstls.testing} starts its servers with these, and so do the project's
own tests (for dnstls, Knot DNS and Unbound).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

_T = TypeVar("_T")

_LISTENING = re.compile(r"listening on (udp|tcp|tls) (\S+)")
_READY = re.compile(r"\bserving \d+ zones?\b")

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


def split_address(text: str) -> tuple[str, int]:
    """
    C{("::1", 53)} from C{"[::1]:53"}, C{("127.0.0.1", 53)} from
    C{"127.0.0.1:53"}.
    """
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def listeners(lines: Sequence[str]) -> list[tuple[str, str, int]] | None:
    """
    C{(kind, host, port)} of every listener a dnstls log names, in order,
    once the log says the zones are served; C{None} before.
    """
    if not any(_READY.search(line) for line in lines):
        return None
    found = [m.groups() for line in lines if (m := _LISTENING.search(line))]
    return [(kind, *split_address(text)) for kind, text in found]


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
    ) -> None:
        self.command = list(command)
        self.directory = directory
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            self.command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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


class DnstlsChild(LoggedProcess):
    """
    C{twistd -n dnstls ARGS} in a child process, started and ready: its log
    has said that it serves its zones.

    @ivar addresses: C{(kind, host, port)} of every listener it logged, in
        order (C{kind} is C{udp}, C{tcp} or C{tls}).
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
        super().__init__(twistd_dnstls(args), cwd=cwd, env=env, directory=directory)
        addresses = self.wait_for(lambda: listeners(list(self.lines)), timeout)
        if addresses is None:
            self.failed("dnstls did not start", error)
        self.addresses = addresses
