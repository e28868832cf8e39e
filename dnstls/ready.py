# -*- test-case-name: tests.test_ready -*-
"""
C{--ready-fd N}: the server says it is ready on file descriptor N, for
programs (service managers, test kits, a C{--workers} supervisor) rather
than people, so that none of them reads the log.

Once the server serves, it writes one line of JSON there and closes it::

    {"ready": true, "pid": 4242,
     "listening": [{"transport": "udp", "address": "127.0.0.1", "port": 40123},
                   {"transport": "tcp", "address": "127.0.0.1", "port": 40123},
                   {"transport": "tls", "address": "::1", "port": 8853}],
     "zones": [{"origin": "example.test.", "serial": 2024010101}]}

(one line; broken here to be read).  C{listening} names every bound socket,
in the order of the options, its port the one the kernel chose for port 0;
C{transport} is C{udp}, C{tcp} (plain DNS, where STARTTLS works) or C{tls}.
A server that cannot start closes the descriptor by exiting, without a
line.  With C{--workers N} the supervisor writes the line once every worker
has written its own on a pipe of its own, with one more key,
C{"workers": [{"number": 1, "pid": 4243}, ...]}.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from dnstls.errors import StartupError
from dnstls.transport.listen import Address
from dnstls.zones.authority import AuthoritativeZone


@dataclass(frozen=True)
class Listener:
    """
    One bound socket: C{transport} (C{udp}, C{tcp}, C{tls}) on C{address}
    and C{port}.
    """

    transport: str
    address: str
    port: int


@dataclass(frozen=True)
class Ready:
    """
    What a server that is ready reports: its pid, its listeners, its zones
    as C{(origin, serial)}, and with C{--workers} each worker's C{(number,
    pid)}.
    """

    pid: int
    listening: tuple[Listener, ...]
    zones: tuple[tuple[str, int], ...]
    workers: tuple[tuple[int, int], ...] = field(default=())

    @classmethod
    def of(
        cls,
        listening: Iterable[tuple[str, Address]],
        zones: Iterable[AuthoritativeZone],
        pid: int | None = None,
    ) -> Ready:
        """
        The report of a server listening on C{listening} (C{(transport,
        address)}) and serving C{zones}; the pid this process's by default.
        """
        return cls(
            os.getpid() if pid is None else pid,
            tuple(Listener(kind, address.host, address.port) for kind, address in listening),
            tuple(sorted((str(zone.origin), zone.serial) for zone in zones)),
        )

    def to_json(self) -> bytes:
        """
        The report as one line of JSON, its line break included.
        """
        report: dict[str, Any] = {
            "ready": True,
            "pid": self.pid,
            "listening": [
                {"transport": item.transport, "address": item.address, "port": item.port}
                for item in self.listening
            ],
            "zones": [{"origin": origin, "serial": serial} for origin, serial in self.zones],
        }
        if self.workers:
            report["workers"] = [{"number": n, "pid": pid} for n, pid in self.workers]
        return json.dumps(report).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, line: bytes | str) -> Ready:
        """
        The report L{to_json} wrote.

        @raise ValueError: if C{line} is not one.
        """
        try:
            report = json.loads(line)
            if report["ready"] is not True:
                raise ValueError("not ready")
            return cls(
                int(report["pid"]),
                tuple(
                    Listener(str(item["transport"]), str(item["address"]), int(item["port"]))
                    for item in report["listening"]
                ),
                tuple((str(item["origin"]), int(item["serial"])) for item in report["zones"]),
                tuple((int(item["number"]), int(item["pid"])) for item in report.get("workers", ())),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a readiness report: {e!r}") from None


class ReadyChannel:
    """
    The descriptor of C{--ready-fd}, written once and closed.
    """

    log = Logger()

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    @classmethod
    def open(cls, fd: int | None) -> ReadyChannel | None:
        """
        The channel on C{fd}, or C{None} without one; C{fd} is kept from
        processes this one starts.

        @raise StartupError: if C{fd} is not open for writing.
        """
        if fd is None:
            return None
        try:
            access = _access_mode(fd)
        except OSError as e:
            raise StartupError(f"--ready-fd {fd}: {(e.strerror or str(e)).lower()}") from None
        if access == os.O_RDONLY:
            raise StartupError(f"--ready-fd {fd}: not open for writing")
        os.set_inheritable(fd, False)
        return cls(fd)

    def report(self, ready: Ready) -> None:
        """
        Write C{ready} and close the descriptor; a reader gone is logged, not
        raised.  Only the first report is written.
        """
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            _write_all(fd, ready.to_json())
        except OSError as e:
            self.log.warn("--ready-fd {fd}: cannot report ready: {error}", fd=fd, error=str(e))
        finally:
            try:
                os.close(fd)
            except OSError:
                pass


def _access_mode(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def _write_all(fd: int, data: bytes) -> None:
    os.set_blocking(fd, True)
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])
