# -*- test-case-name: tests.transport.test_handdown -*-
"""
What a C{--workers} supervisor hands down to its workers, and how a worker
takes it: the listening sockets, bound by the supervisor with
C{SO_REUSEPORT} before twistd drops privileges (L{bind_for_workers}), and
the TLS credentials it read (L{credentials_file}), both inherited as file
descriptors that L{INHERIT_ENVIRONMENT} names (L{InheritedSockets}); and
the worker's tie to its supervisor (L{die_with_parent}).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dnstls.certs import Credential
from dnstls.errors import StartupError
from dnstls.transport.listen import Address, bind_stream, bind_udp_and_tcp, bound_address

#: The environment variable that makes a process a worker: its number and
#: its inherited sockets (and credentials), as C{2 udp=3,tcp=4,tls=5,pem=6}.
INHERIT_ENVIRONMENT = "DNSTLS_WORKER"
#: The pid of the supervisor that started a worker.
PARENT_ENVIRONMENT = "DNSTLS_WORKER_PARENT"
#: The first inherited descriptor.
FIRST_FD = 3
#: The kind of the descriptor holding the credentials.
CREDENTIALS_KIND = "pem"

_PR_SET_PDEATHSIG = 1
_KINDS = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM, "tls": socket.SOCK_STREAM}


class InheritedSockets:
    """
    The sockets a worker was given by its supervisor, taken in the order
    the options list the addresses: for each C{--listen} a UDP and a TCP
    socket, then for each C{--listen-tls} a TCP one.

    @ivar number: the worker's number, from 1.
    """

    def __init__(self, number: int, descriptors: Sequence[tuple[str, int]]) -> None:
        self.number = number
        self._pending = [(kind, fd) for kind, fd in descriptors if kind != CREDENTIALS_KIND]
        self._credentials = [fd for kind, fd in descriptors if kind == CREDENTIALS_KIND]

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
                if kind not in _KINDS and kind != CREDENTIALS_KIND:
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

def hand_down(
    number: int, share: Sequence[tuple[str, socket.socket]], credentials: int | None
) -> tuple[dict[int, object], dict[str, str]]:
    """
    What worker C{number} inherits: the descriptors, as C{spawnProcess}'s
    C{childFDs} (its standard streams as pipes, then its sockets and the
    credentials' descriptor from L{FIRST_FD} on), and the environment
    variables that name them for L{InheritedSockets.from_environment}.
    """
    fds: dict[int, object] = {0: "w", 1: "r", 2: "r"}
    spec = []
    given = [(kind, sock.fileno()) for kind, sock in share]
    if credentials is not None:
        given.append((CREDENTIALS_KIND, credentials))
    for offset, (kind, fd) in enumerate(given):
        fds[FIRST_FD + offset] = fd
        spec.append(f"{kind}={FIRST_FD + offset}")
    environment = {
        INHERIT_ENVIRONMENT: f"{number} {','.join(spec)}",
        PARENT_ENVIRONMENT: str(os.getpid()),
    }
    return fds, environment


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
