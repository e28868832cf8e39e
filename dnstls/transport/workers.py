# -*- test-case-name: tests.transport.test_workers -*-
"""
C{--workers N}: N worker processes serving the same ports, for N cores.

One Python process answers on one core.  With C{--workers N} (N > 1) the
process twistd started becomes a supervisor that answers nothing itself:

  - In C{makeService}, before the reactor runs and before C{twistd -u/-g}
    drops privileges, it checks the configuration as a single server would
    (zones, certificates, generating the self-signed one once so that all
    workers share it, recursion options) and binds, for every listening
    address, one socket per worker, all on the port the first one got
    (C{--listen HOST:0} gives every worker the same port).  The first is
    bound without C{SO_REUSEPORT}, so a port that any other process holds
    is still a start-up error; C{SO_REUSEPORT} is then set on it and the
    others join it.  The kernel spreads datagrams and new connections among
    the sockets, so among the workers.
  - When started, it spawns N copies of C{twistd -n --pidfile= dnstls} with
    the same options plus C{--workers 1} and the state directory it used,
    each inheriting its own sockets as file descriptors 3 and up, and the
    TLS certificates and keys the supervisor read (on Linux, an anonymous
    memory file), so that a key only root may read still serves after
    twistd dropped privileges; the environment variable
    L{INHERIT_ENVIRONMENT} says which descriptor is which, and the worker
    adopts them instead of binding and reading.  Workers run as the user
    twistd dropped to, and read the zones as that user, as do their
    reloads (zones and certificates alike), as in a single server.
  - It keeps its copy of every socket (never reading from it), so that a
    worker that dies is restarted, with a backoff, on the same sockets;
    queries that arrive meanwhile wait in its socket's buffer.  After
    L{MAX_FAILURES} quick failures in a row it gives up on that worker and
    closes its sockets, so that the kernel sends their share to the others.
  - A worker's standard output and error come back to the supervisor and
    are logged, one event per line, tagged with the worker's number and pid.
  - SIGHUP is passed on to every worker that is serving; stopping the
    supervisor stops the workers (SIGTERM, then SIGKILL after
    L{STOP_GRACE} seconds).  A worker asks Linux for SIGTERM when the
    supervisor dies, so that none outlives it.
  - If a worker cannot start, its error is logged, written as one line on
    standard error, and the supervisor stops with exit status 1.

Every worker has its own caches and its own connection caps
(C{--max-connections} is per process).  C{{worker}} in C{--identity} becomes
the worker's number, so that C{id.server} tells which one answered.  The
test kit's C{--control} socket is refused with C{--workers}.

Here is the supervisor; what it hands down, and how a worker takes it, is
in L{dnstls.transport.handdown}; one worker process as the supervisor sees
it, in L{dnstls.transport.workerprocess}.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, TextIO

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from dnstls.certs import Credential
from dnstls.ready import Ready, ReadyChannel
from dnstls.transport.handdown import bind_for_workers, credentials_file, hand_down
from dnstls.transport.listen import Address, bound_address
from dnstls.transport.workerprocess import WorkerProcess, worker_arguments

#: How long a stopping worker has after SIGTERM before SIGKILL.
STOP_GRACE = 5.0
#: A worker that served this many seconds before it ended is restarted
#: at once; one that ended sooner counts as a failure.
STABLE_AFTER = 60.0
#: How many failures in a row before a worker is given up.
MAX_FAILURES = 5
#: The first restart delay, doubled for each failure in a row.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


class WorkersService(Service):
    """
    The supervisor of C{--workers N}: starts the workers with the sockets
    bound for them, relays their logs, restarts the ones that die, passes
    SIGHUP on, and stops them with itself.

    @ivar workers: the running worker of each number (index 0: worker 1).
    @ivar failed: set when the workers could not start or all gave up.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        sockets: Sequence[Sequence[tuple[str, socket.socket]]],
        arguments: Callable[[int], Sequence[str]],
        executable: str = sys.executable,
        exit_later: Callable[[int], object] | None = None,
        stderr: TextIO | None = None,
        credentials: int | None = None,
        ready: ReadyChannel | None = None,
    ) -> None:
        """
        @param sockets: each worker's sockets, from L{bind_for_workers}.
        @param arguments: the C{twistd dnstls} options of a worker, given
            its number (see L{worker_arguments}).
        @param exit_later: called with the exit status the process must
            end with once twistd has stopped, when the workers could not
            start [default: L{exit_when_done}].
        @param stderr: where that failure is written as one line [default:
            the process's standard error, which twistd does not redirect].
        @param credentials: a descriptor every worker is given to read its
            TLS credentials from (see L{credentials_file}); closed when the
            service stops.
        @param ready: where to report ready once every worker is
            (C{--ready-fd}).
        """
        self._reactor = reactor
        self._sockets = [list(share) for share in sockets]
        self._arguments = arguments
        self._executable = executable
        self._exit_later = exit_later or exit_when_done
        self._stderr = stderr
        self._credentials = credentials
        self._ready = ready
        self._listening: list[tuple[str, Address]] = []
        self._failures = [0] * len(self._sockets)
        self._restarts: dict[int, Any] = {}
        self._previous_hup: Callable[[int, FrameType | None], Any] | int | None = None
        self._stopping = False
        self._announced = False
        self.workers: list[WorkerProcess | None] = [None] * len(self._sockets)
        self.failed = False

    def command(self, number: int, ready_fd: int) -> list[str]:
        """
        The command line of worker C{number}, reporting ready on its
        descriptor C{ready_fd}.
        """
        return [
            self._executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "dnstls", *self._arguments(number), "--ready-fd", str(ready_fd),
        ]

    def startService(self) -> None:
        """
        Log the shared addresses, start every worker, and pass SIGHUP on.
        """
        super().startService()  # type: ignore[no-untyped-call]
        self._listening = [(kind, bound_address(sock)) for kind, sock in self._sockets[0]]
        for kind, address in self._listening:
            self.log.info("listening on {kind} {address}", kind=kind, address=str(address))
        self._catch_hangup()
        for index in range(len(self._sockets)):
            if not self.failed:
                self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        number = index + 1
        fds, handed = hand_down(number, self._sockets[index], self._credentials)
        environment = {**os.environ, **handed}
        # the worker's ready pipe, read as its output is
        ready_fd = max(fds) + 1
        fds[ready_fd] = "r"
        worker = WorkerProcess(self, number, self._reactor.seconds(), ready_fd)
        command = self.command(number, ready_fd)
        try:
            process = self._reactor.spawnProcess(
                worker, command[0], command, env=environment, childFDs=fds
            )
        except OSError as e:
            # posix_spawn reports here what exec would have in the child
            how = f"cannot run {command[0]}: {(e.strerror or str(e)).lower()}"
            if self._announced:
                self._retry(index, 0, how, quick=True)
            else:
                self._fail(f"worker {number} did not start: {how}")
            return
        worker.pid = process.pid
        self.workers[index] = worker
        self.log.info("started worker {number}, pid {pid}", number=number, pid=worker.pid)

    def relay(self, worker: WorkerProcess, line: str, level: LogLevel) -> None:
        """
        Log one line of a worker's output at C{level}.
        """
        self.log.emit(
            level, "worker {number} (pid {pid}): {line}", number=worker.number, pid=worker.pid,
            line=line,
        )

    def worker_ready(self, worker: WorkerProcess) -> None:
        """
        A worker reported that it serves: once every one has, the server is
        ready, and says so on its own C{--ready-fd}.  A SIGHUP that came
        while the worker started is passed on now.
        """
        if worker.hup_pending:
            worker.hup_pending = False
            self._signal([worker], "HUP")
        if self._announced or not all(w is not None and w.ready for w in self.workers):
            return
        self._announced = True
        self.log.info("all {count} workers ready", count=len(self.workers))
        if self._ready is not None:
            reports = [w.report for w in self.workers if w is not None and w.report is not None]
            self._ready.report(
                dataclasses.replace(
                    Ready.of(self._listening, ()),
                    zones=reports[0].zones,
                    workers=tuple((w.number, w.pid) for w in self.workers if w is not None),
                )
            )

    def ended(self, worker: WorkerProcess, reason: Failure) -> None:
        """
        A worker ended: expected when stopping; a start-up failure stops the
        server; otherwise it is restarted after a backoff, or given up.
        """
        index = worker.number - 1
        if self.workers[index] is worker:
            self.workers[index] = None
        how = reason.getErrorMessage()
        if self._stopping:
            self.log.info("worker {number} (pid {pid}) stopped", number=worker.number, pid=worker.pid)
            return
        if not worker.ready and not self._announced:
            self._fail(f"worker {worker.number} did not start: {worker.last_error or how}")
            return
        quick = self._reactor.seconds() - worker.started < STABLE_AFTER or not worker.ready
        self._retry(index, worker.pid, how, quick)

    def _retry(self, index: int, pid: int, how: str, quick: bool) -> None:
        """
        Restart worker C{index} after a delay that doubles with each quick
        failure in a row, or give it up after L{MAX_FAILURES} of them.
        """
        number = index + 1
        self._failures[index] = self._failures[index] + 1 if quick else 0
        failures = self._failures[index]
        if failures > MAX_FAILURES:
            self.log.error(
                "worker {number} (pid {pid}) ended ({how}); it failed {count} times in a row, "
                "so it is given up and its sockets closed",
                number=number, pid=pid, how=how, count=failures,
            )
            for _, sock in self._sockets[index]:
                sock.close()
            self._sockets[index] = []
            if not any(self._sockets):
                self._fail("every worker failed")
            return
        delay = 0.0 if failures == 0 else min(FIRST_BACKOFF * 2 ** (failures - 1), MAX_BACKOFF)
        self.log.warn(
            "worker {number} (pid {pid}) ended ({how}); restarting it in {delay} s",
            number=number, pid=pid, how=how, delay=delay,
        )
        self._restarts[index] = self._reactor.callLater(delay, self._spawn, index)

    def _fail(self, message: str) -> None:
        self.log.critical("{message}", message=message)
        if self.failed:
            return
        self.failed = True
        stderr = self._stderr or sys.__stderr__
        if stderr is not None:
            stderr.write(f"twistd dnstls: {message}\n")
            stderr.flush()
        self._exit_later(1)
        if self._reactor.running:
            self._reactor.stop()
        else:
            self._reactor.callWhenRunning(self._reactor.stop)

    def _catch_hangup(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        reactor = self._reactor

        def hangup(signum: int, frame: FrameType | None) -> None:
            reactor.callFromThread(self.reload)

        self._previous_hup = signal.signal(signal.SIGHUP, hangup)

    def reload(self) -> None:
        """
        Pass SIGHUP to every worker that is serving; one still starting may
        have read its files already, so it gets the SIGHUP once it reports
        that it serves.
        """
        serving = [w for w in self.workers if w is not None and w.ready]
        for worker in self.workers:
            if worker is not None and worker.running and not worker.ready:
                worker.hup_pending = True
        self.log.info("reload: passing SIGHUP to {count} workers", count=len(serving))
        self._signal(serving, "HUP")

    def _signal(self, workers: Sequence[WorkerProcess | None], name: str) -> None:
        for worker in workers:
            if worker is None or not worker.running:
                continue
            transport = worker.transport
            try:
                transport.signalProcess(name)  # type: ignore[union-attr]
            except ProcessExitedAlready:
                pass

    def stopService(self) -> Deferred[None]:
        """
        Stop the workers (SIGTERM, then SIGKILL after L{STOP_GRACE}
        seconds), then close the sockets and give SIGHUP back.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        if self._previous_hup is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
            self._previous_hup = None
        running = [w for w in self.workers if w is not None and w.running]
        self._signal(running, "TERM")
        kill = self._reactor.callLater(STOP_GRACE, self._signal, running, "KILL")

        def stopped(_: object) -> None:
            if kill.active():
                kill.cancel()
            for share in self._sockets:
                for _, sock in share:
                    sock.close()
            if self._credentials is not None:
                os.close(self._credentials)
                self._credentials = None

        ended: Deferred[Any] = (
            gatherResults([w.ended for w in running]) if running else succeed(None)
        )
        return ended.addCallback(stopped)


def exit_when_done(status: int) -> None:
    """
    End the process with C{status} once twistd has stopped and cleaned up
    (its pidfile): twistd itself exits with status 0 once the reactor
    stops, whatever stopped it.
    """
    atexit.register(_exit_with, status)


def _exit_with(status: int) -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def supervise(
    options: Mapping[str, Any],
    args: Sequence[str],
    state_dir: str,
    credentials: Sequence[Credential] | None,
    reactor: Any,
    ready: ReadyChannel | None = None,
) -> WorkersService:
    """
    The supervisor of C{options["workers"]} workers, their sockets bound.

    @param args: the C{twistd dnstls} options as given.
    @param state_dir: the state directory this process used.
    @param credentials: the TLS credentials this process read, to hand
        down, if it read any.
    @param ready: the C{--ready-fd} channel, if given.
    @raise StartupError: if a socket cannot be bound.
    """
    sockets = bind_for_workers(options["listen"], options["listen-tls"], options["workers"])
    given = list(args)
    identity = options["identity"]

    def arguments(number: int) -> list[str]:
        return worker_arguments(given, number, state_dir, identity)

    held = credentials_file(credentials) if credentials else None
    return WorkersService(reactor, sockets, arguments, credentials=held, ready=ready)
