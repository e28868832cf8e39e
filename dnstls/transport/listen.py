# -*- test-case-name: tests.transport.test_listen -*-
"""
Listening addresses: parsing C{HOST:PORT}, binding the sockets before the
reactor runs (so that a port in use or a missing privilege is a start-up
error), and a service that adopts them and logs each bound address.

Sockets are bound here rather than through C{listenUDP}/C{listenTCP} so that
an IPv6 wildcard can sit beside the IPv4 one (C{IPV6_V6ONLY}), so that the
UDP and TCP halves of C{--listen HOST:0} share one port number, and so that
start-up fails before the reactor runs, with one line that says why.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from dnstls.errors import StartupError

#: How many times C{HOST:0} retries when the TCP port it got is taken for UDP.
_PORT_ZERO_TRIES = 20
_BACKLOG = 1024


@dataclass(frozen=True)
class Address:
    """
    One C{HOST:PORT} to listen on.
    """

    host: str
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        """
        C{AF_INET} or C{AF_INET6}.
        """
        if ipaddress.ip_address(self.host).version == 6:
            return socket.AF_INET6
        return socket.AF_INET

    def __str__(self) -> str:
        if self.family == socket.AF_INET6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """
    Parse C{HOST:PORT}, with an IPv6 host in brackets (C{[::1]:5353}).

    @raise ValueError: with a message for the operator.
    """
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not [IPV6]:PORT")
        port_text = rest[1:]
        if not _is_ip(host) or ipaddress.ip_address(host).version != 6:
            raise ValueError(f"{text!r}: only an IPv6 address goes in brackets")
    elif text.count(":") > 1:
        host, _, port_text = text.rpartition(":")
        example = f"[{host}]:{port_text}" if _is_ip(host) else f"[{text}]:PORT"
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, as {example}")
    else:
        host, colon, port_text = text.partition(":")
        if not colon or not host:
            raise ValueError(f"{text!r} is not HOST:PORT")
        if not _is_ip(host):
            raise ValueError(f"{text!r}: {host!r} is not an IP address (names are not looked up)")
    # isdigit() alone would take other scripts' digits, which int() reads.
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return Address(str(ipaddress.ip_address(host)), int(port_text))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def family_available(family: socket.AddressFamily) -> bool:
    """
    Whether this host can open sockets of C{family} (IPv6 may be disabled).
    """
    try:
        socket.socket(family, socket.SOCK_DGRAM).close()
    except OSError:
        return False
    return True


def _socket(address: Address, kind: socket.SocketKind, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(address.family, kind)
    try:
        if reuse_port:
            # several worker processes on one port, the kernel spreading
            # datagrams and connections among them (every one sets it)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_STREAM:
            # For TCP this only lets a restart bind past connections in
            # TIME_WAIT.  For UDP it would let two sockets that both set it
            # share one port, so that a port in use went unnoticed.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if address.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _bind(
    address: Address, kind: socket.SocketKind, port: int, reuse_port: bool = False
) -> socket.socket:
    sock = _socket(address, kind, reuse_port)
    try:
        sock.bind((address.host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _why(error: OSError, port: int) -> str:
    if error.errno in (errno.EACCES, errno.EPERM) and 0 < port < 1024:
        return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    if error.errno == errno.EADDRINUSE:
        return "address already in use"
    if error.errno == errno.EADDRNOTAVAIL:
        return "no such address on this machine"
    return (error.strerror or str(error)).lower()


def bind_stream(address: Address, name: str = "tcp", reuse_port: bool = False) -> socket.socket:
    """
    A listening TCP socket on C{address}.

    @param name: how the listener is named in an error (C{tcp}, C{tls}).
    @param reuse_port: set C{SO_REUSEPORT}, to share the port with other
        worker processes.
    @raise StartupError: if it cannot be bound.
    """
    try:
        return _bind(address, socket.SOCK_STREAM, address.port, reuse_port)
    except OSError as e:
        raise StartupError(f"cannot listen on {name} {address}: {_why(e, address.port)}") from None


def bind_udp_and_tcp(
    address: Address, reuse_port: bool = False
) -> tuple[socket.socket, socket.socket]:
    """
    A UDP and a TCP socket on the same address and port; with port 0, one
    free port number that both protocols can have.

    @param reuse_port: set C{SO_REUSEPORT} on both, to share the port with
        other worker processes.
    @raise StartupError: if either cannot be bound.
    """
    tries = _PORT_ZERO_TRIES if address.port == 0 else 1
    for attempt in range(tries):
        tcp = bind_stream(address, reuse_port=reuse_port)
        port = tcp.getsockname()[1]
        try:
            udp = _bind(address, socket.SOCK_DGRAM, port, reuse_port)
        except OSError as e:
            tcp.close()
            if e.errno == errno.EADDRINUSE and attempt + 1 < tries:
                continue
            raise StartupError(f"cannot listen on udp {address}: {_why(e, port)}") from None
        return udp, tcp
    raise AssertionError("unreachable")  # pragma: no cover


def bound_address(sock: socket.socket) -> Address:
    """
    The address C{sock} is bound to, its port chosen when it asked for 0.
    """
    host, port = sock.getsockname()[:2]
    return Address(host, port)


class ListeningService(Service):
    """
    Serves bound sockets: adopts them into the reactor when started and
    logs C{listening on KIND HOST:PORT} for each.

    @ivar ports: the listening ports, once started.
    @ivar addresses: C{(kind, address)} of each socket adopted, in order:
        its port the one the kernel chose for port 0.
    """

    log = Logger()

    def __init__(self, reactor: object) -> None:
        self._reactor = reactor
        self._datagram: list[tuple[socket.socket, DatagramProtocol]] = []
        self._stream: list[tuple[socket.socket, IProtocolFactory, str]] = []
        self._control: tuple[str, IProtocolFactory] | None = None
        self.ports: list[IListeningPort] = []
        self.addresses: list[tuple[str, Address]] = []

    def add_datagram(self, sock: socket.socket, protocol: DatagramProtocol) -> None:
        """
        Serve C{protocol} on the bound UDP socket C{sock}.
        """
        self._datagram.append((sock, protocol))

    def add_stream(self, sock: socket.socket, factory: IProtocolFactory, name: str) -> None:
        """
        Serve C{factory} on the listening socket C{sock}, logged as C{name}.
        """
        self._stream.append((sock, factory, name))

    def add_control(self, path: str, factory: IProtocolFactory) -> None:
        """
        Serve C{factory} on a UNIX socket at C{path} (the test kit's control
        socket), created when the service starts and removed when it stops.

        @raise StartupError: if the socket's directory is missing or not
            writable (the sockets bound so far are closed).
        """
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            self.close()
            raise StartupError(
                f"cannot make the control socket {path}: {directory} is not a writable directory"
            )
        self._control = (path, factory)

    def close(self) -> None:
        """
        Close the sockets not yet adopted (a start-up that failed half way).
        """
        for sock, _ in self._datagram:
            sock.close()
        for sock, _, _ in self._stream:
            sock.close()
        self._datagram.clear()
        self._stream.clear()

    def startService(self) -> None:
        """
        Adopt every socket, log its address, and close our copy of it.
        """
        super().startService()
        reactor = self._reactor
        for sock, protocol in self._datagram:
            port = reactor.adoptDatagramPort(  # type: ignore[attr-defined]
                sock.fileno(), sock.family, protocol, maxPacketSize=65535
            )
            self._adopted(port, sock, "udp")
        for sock, factory, name in self._stream:
            port = reactor.adoptStreamPort(sock.fileno(), sock.family, factory)  # type: ignore[attr-defined]
            self._adopted(port, sock, name)
        self._datagram.clear()
        self._stream.clear()
        if self._control is not None:
            path, factory = self._control
            if os.path.exists(path):
                os.unlink(path)
            port = reactor.listenUNIX(path, factory, mode=0o600)  # type: ignore[attr-defined]
            self.ports.append(port)
            self.log.info("control socket at {path}", path=path)

    def _adopted(self, port: IListeningPort, sock: socket.socket, name: str) -> None:
        host, number = sock.getsockname()[:2]
        sock.close()
        self.ports.append(port)
        self.addresses.append((name, Address(host, number)))
        self.log.info(
            "listening on {kind} {address}",
            kind=name,
            address=str(Address(host, number)),
        )

    def stopService(self) -> Deferred[None]:
        """
        Stop listening on every port.
        """
        super().stopService()
        ports, self.ports = self.ports, []
        stopping = [Deferred.fromCoroutine(_stop(port)) for port in ports]
        return gatherResults(stopping).addCallback(lambda _: None)


async def _stop(port: IListeningPort) -> None:
    result = port.stopListening()
    if isinstance(result, Deferred):
        await result
