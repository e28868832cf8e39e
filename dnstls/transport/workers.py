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
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import json
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import InvalidLogLevelError, Logger, LogLevel
from twisted.python.failure import Failure

from dnstls.certs import Credential
from dnstls.errors import StartupError
from dnstls.transport.listen import Address, bind_stream, bind_udp_and_tcp, bound_address

#: The environment variable that makes a process a worker: its number and
#: its inherited sockets (and credentials), as C{2 udp=3,tcp=4,tls=5,pem=6}.
INHERIT_ENVIRONMENT = "DNSTLS_WORKER"
#: The pid of the supervisor that started a worker.
PARENT_ENVIRONMENT = "DNSTLS_WORKER_PARENT"
#: The text in C{--identity} that becomes the worker's number.
WORKER_PLACEHOLDER = "{worker}"
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
#: The first inherited descriptor.
FIRST_FD = 3

_PR_SET_PDEATHSIG = 1
_KINDS = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM, "tls": socket.SOCK_STREAM}
#: The kind of the descriptor holding the credentials.
_CREDENTIALS = "pem"
#: A twistd log line: its timestamp, then C{[namespace#level] text}.
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\S+ ")
_LEVEL = re.compile(r"^\[[^\]#]*#(\w+)\]")
_READY = re.compile(r"\bserving \d+ zones?\b")
#: Output without a line break is logged in pieces of at most this size.
_LONGEST_LINE = 65536


class InheritedSockets:
    """
    The sockets a worker was given by its supervisor, taken in the order
    the options list the addresses: for each C{--listen} a UDP and a TCP
    socket, then for each C{--listen-tls} a TCP one.

    @ivar number: the worker's number, from 1.
    """

    def __init__(self, number: int, descriptors: Sequence[tuple[str, int]]) -> None:
        self.number = number
        self._pending = [(kind, fd) for kind, fd in descriptors if kind != _CREDENTIALS]
        self._credentials = [fd for kind, fd in descriptors if kind == _CREDENTIALS]

    def credentials(self) -> list[Credential] | None:
        """
        The TLS credentials the supervisor read, or C{None} if it handed
        none down.

        @raise StartupError: if they cannot be read.
        """
        if not self._credentials:
            return None
        fd = self._credentials.pop()
        try:
            size = os.fstat(fd).st_size
            data = b""
            while len(data) < size:
                chunk = os.pread(fd, size - len(data), len(data))
                if not chunk:
                    break
                data += chunk
            return decode_credentials(data)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StartupError(f"worker {self.number}: cannot read the credentials: {e}") from None
        finally:
            try:
                os.close(fd)
            except OSError:
                pass

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> InheritedSockets | None:
        """
        The sockets L{INHERIT_ENVIRONMENT} describes, or C{None} when this
        process is not a worker.

        @raise StartupError: if the variable cannot be read.
        """
        text = environ.get(INHERIT_ENVIRONMENT)
        if text is None:
            return None
        try:
            number_text, _, spec = text.partition(" ")
            descriptors = []
            for item in spec.split(","):
                kind, _, fd = item.partition("=")
                if kind not in _KINDS and kind != _CREDENTIALS:
                    raise ValueError(kind)
                descriptors.append((kind, int(fd)))
            return cls(int(number_text), descriptors)
        except ValueError:
            raise StartupError(f"{INHERIT_ENVIRONMENT}={text!r} is not NUMBER KIND=FD,...") from None

    def udp_and_tcp(self, address: Address) -> tuple[socket.socket, socket.socket]:
        """
        The UDP and TCP sockets for C{--listen address}.

        @raise StartupError: if the next descriptors are not those.
        """
        return self._take("udp", address), self._take("tcp", address)

    def stream(self, address: Address, name: str = "tls") -> socket.socket:
        """
        The listening socket for C{address}, a C{--listen-tls} one.

        @raise StartupError: if the next descriptor is not that.
        """
        return self._take(name, address)

    def _take(self, kind: str, address: Address) -> socket.socket:
        if not self._pending:
            raise StartupError(f"worker {self.number}: no inherited socket for {kind} {address}")
        given, fd = self._pending.pop(0)
        try:
            sock = socket.socket(fileno=fd)
        except OSError as e:
            raise StartupError(f"worker {self.number}: descriptor {fd} is no socket: {e}") from None
        bound = bound_address(sock)
        if (
            given != kind
            or sock.type != _KINDS[kind]
            or sock.family != address.family
            or bound.host != address.host
            or address.port not in (0, bound.port)
        ):
            sock.close()
            raise StartupError(
                f"worker {self.number}: descriptor {fd} ({given} {bound}) is not {kind} {address}"
            )
        sock.setblocking(False)
        return sock


def encode_credentials(credentials: Sequence[Credential]) -> bytes:
    """
    C{credentials} as JSON of PEM texts, for L{decode_credentials}.
    """
    pem = serialization.Encoding.PEM
    return json.dumps(
        [
            {
                "source": c.source,
                "chain": [cert.public_bytes(pem).decode("ascii") for cert in c.chain],
                "key": c.key.private_bytes(
                    pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ).decode("ascii"),
            }
            for c in credentials
        ]
    ).encode("ascii")


def decode_credentials(data: bytes) -> list[Credential]:
    """
    The credentials L{encode_credentials} wrote.

    @raise ValueError: if C{data} is not that.
    """
    found = []
    for item in json.loads(data):
        chain = tuple(x509.load_pem_x509_certificate(c.encode("ascii")) for c in item["chain"])
        key = serialization.load_pem_private_key(item["key"].encode("ascii"), password=None)
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ValueError("not an RSA or ECDSA key")
        found.append(Credential(chain, key, str(item["source"])))
    return found


def credentials_file(credentials: Sequence[Credential]) -> int | None:
    """
    An anonymous memory file (Linux's C{memfd_create}) holding
    C{credentials} for the workers, or C{None} where there is none.
    """
    create = getattr(os, "memfd_create", None)
    if create is None:
        return None
    fd: int = create("dnstls-credentials", getattr(os, "MFD_CLOEXEC", 1))
    data = encode_credentials(credentials)
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])
    return fd


def die_with_parent(environ: Mapping[str, str]) -> None:
    """
    Ask Linux to send this worker SIGTERM when its supervisor dies, so that
    it never outlives a supervisor killed without a chance to stop it
    (elsewhere, nothing is asked).

    @raise StartupError: if the supervisor is already gone.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    parent = environ.get(PARENT_ENVIRONMENT)
    if parent is not None and parent != str(os.getppid()):
        raise StartupError(f"the server that started this worker (pid {parent}) is gone")


def bind_for_workers(
    listen: Sequence[Address], listen_tls: Sequence[Address], count: int
) -> list[list[tuple[str, socket.socket]]]:
    """
    For each of C{count} workers, its sockets: for every plain address a
    UDP and a TCP socket, for every TLS address a TCP one, all the workers'
    sockets for one address on one port with C{SO_REUSEPORT}.

    @raise StartupError: if one cannot be bound (those bound are closed).
    """
    shares: list[list[tuple[str, socket.socket]]] = [[] for _ in range(count)]
    try:
        for address in listen:
            udp, tcp = bind_udp_and_tcp(address)
            _share_port(udp, tcp)
            shares[0] += [("udp", udp), ("tcp", tcp)]
            same = bound_address(tcp)
            for share in shares[1:]:
                udp, tcp = bind_udp_and_tcp(same, reuse_port=True)
                share += [("udp", udp), ("tcp", tcp)]
        for address in listen_tls:
            tls = bind_stream(address, "tls")
            _share_port(tls)
            shares[0].append(("tls", tls))
            same = bound_address(tls)
            for share in shares[1:]:
                share.append(("tls", bind_stream(same, "tls", reuse_port=True)))
    except StartupError:
        for share in shares:
            for _, sock in share:
                sock.close()
        raise
    return shares


def _share_port(*socks: socket.socket) -> None:
    # Set after the bind: had it been set before, a port another process
    # holds with SO_REUSEPORT would have been joined instead of refused.
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


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


class _Worker(ProcessProtocol):
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
        """
        self._reactor = reactor
        self._sockets = [list(share) for share in sockets]
        self._arguments = arguments
        self._executable = executable
        self._exit_later = exit_later or exit_when_done
        self._stderr = stderr
        self._credentials = credentials
        self._failures = [0] * len(self._sockets)
        self._restarts: dict[int, Any] = {}
        self._previous_hup: Callable[[int, FrameType | None], Any] | int | None = None
        self._stopping = False
        self._announced = False
        self.workers: list[_Worker | None] = [None] * len(self._sockets)
        self.failed = False

    def command(self, number: int) -> list[str]:
        """
        The command line of worker C{number}.
        """
        return [
            self._executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "dnstls", *self._arguments(number),
        ]

    def startService(self) -> None:
        """
        Log the shared addresses, start every worker, and pass SIGHUP on.
        """
        super().startService()  # type: ignore[no-untyped-call]
        for kind, sock in self._sockets[0]:
            self.log.info(
                "listening on {kind} {address}", kind=kind, address=str(bound_address(sock))
            )
        self._catch_hangup()
        for index in range(len(self._sockets)):
            if not self.failed:
                self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        number = index + 1
        share = self._sockets[index]
        fds: dict[int, object] = {0: "w", 1: "r", 2: "r"}
        spec = []
        for offset, (kind, sock) in enumerate(share):
            fds[FIRST_FD + offset] = sock.fileno()
            spec.append(f"{kind}={FIRST_FD + offset}")
        if self._credentials is not None:
            fds[FIRST_FD + len(share)] = self._credentials
            spec.append(f"{_CREDENTIALS}={FIRST_FD + len(share)}")
        environment = {
            **os.environ,
            INHERIT_ENVIRONMENT: f"{number} {','.join(spec)}",
            PARENT_ENVIRONMENT: str(os.getpid()),
        }
        worker = _Worker(self, number, self._reactor.seconds())
        command = self.command(number)
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

    def relay(self, worker: _Worker, line: str, error: bool = False) -> None:
        """
        Log one line of a worker's output, at its own level (an error for
        its standard error); note when the worker says it is serving.
        """
        match = _LEVEL.match(line)
        level = LogLevel.error if error else LogLevel.info
        if match is not None:
            try:
                level = LogLevel.levelWithName(match.group(1))
            except InvalidLogLevelError:
                pass
        self.log.emit(
            level, "worker {number} (pid {pid}): {line}", number=worker.number, pid=worker.pid,
            line=line,
        )
        if not worker.ready and _READY.search(line):
            worker.ready = True
            if not self._announced and all(w is not None and w.ready for w in self.workers):
                self._announced = True
                self.log.info("all {count} workers ready", count=len(self.workers))

    def ended(self, worker: _Worker, reason: Failure) -> None:
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
        Pass SIGHUP to every worker that is serving; one still starting
        reads the files as they are now anyway.
        """
        serving = [w for w in self.workers if w is not None and w.ready]
        self.log.info("reload: passing SIGHUP to {count} workers", count=len(serving))
        self._signal(serving, "HUP")

    def _signal(self, workers: Sequence[_Worker | None], name: str) -> None:
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
) -> WorkersService:
    """
    The supervisor of C{options["workers"]} workers, their sockets bound.

    @param args: the C{twistd dnstls} options as given.
    @param state_dir: the state directory this process used.
    @param credentials: the TLS credentials this process read, to hand
        down, if it read any.
    @raise StartupError: if a socket cannot be bound.
    """
    sockets = bind_for_workers(options["listen"], options["listen-tls"], options["workers"])
    given = list(args)
    identity = options["identity"]

    def arguments(number: int) -> list[str]:
        return worker_arguments(given, number, state_dir, identity)

    held = credentials_file(credentials) if credentials else None
    return WorkersService(reactor, sockets, arguments, credentials=held)
