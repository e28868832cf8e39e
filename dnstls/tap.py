# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd dnstls} command line: L{Options} and L{makeService}.

Everything that can fail at start-up (a zone, an address) fails in
L{makeService}, before the reactor runs, with a L{StartupError}; run from
C{twistd}, that becomes one line on standard error and exit status 1, and a
bad option one line and exit status 2.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.logger import Logger
from twisted.python import usage

from dnstls.authority import AuthoritativeZone, ZoneStore
from dnstls.chaos import Chaos
from dnstls.errors import StartupError
from dnstls.handler import Handler, Transport
from dnstls.listen import (
    Address,
    ListeningService,
    bind_udp_and_tcp,
    family_available,
    parse_address,
)
from dnstls.protocol import DEFAULT_IDLE_TIMEOUT, DNSDatagramProtocol, DNSStreamFactory
from dnstls.zonefile import load_zone, zone_files

DEFAULT_LISTEN = ("0.0.0.0:53", "[::]:53")


def default_zones_directory() -> Path:
    """
    The zones the embedded default serves: the project's C{zones/}, installed
    as the package C{dnstls.default_zones}, or beside the package in a source
    checkout.
    """
    here = Path(__file__).resolve().parent
    installed = here / "default_zones"
    if installed.is_dir():
        return installed
    return here.parent / "zones"


def _positive(kind: type[int] | type[float], name: str) -> Any:
    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise usage.UsageError(f"--{name} takes a number, not {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise usage.UsageError(f"--{name} must be a number above 0, not {text!r}")
        return value

    return convert


class Options(usage.Options):
    """
    Options for C{twistd dnstls}.
    """

    synopsis = "[options]"
    longdesc = (
        "An authoritative DNS server for the zones in --zones and --zone, on "
        "UDP and TCP (--listen)."
    )

    optParameters = [
        ["zones", None, None, "Load every *.zone file in DIR [default: the shipped zones/]."],
        [
            "identity",
            None,
            None,
            "Answer id.server and hostname.bind CH TXT with this text [default: refuse].",
        ],
        [
            "version-string",
            None,
            None,
            "Answer version.server and version.bind CH TXT with this text [default: refuse].",
        ],
        [
            "tcp-idle-timeout",
            None,
            DEFAULT_IDLE_TIMEOUT,
            "Close a TCP connection after this many seconds without a complete query.",
            _positive(float, "tcp-idle-timeout"),
        ],
        [
            "max-connections",
            None,
            None,
            "Most TCP connections open at once [default: half the open-file limit].",
            _positive(int, "max-connections"),
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["zone"] = []
        self["listen"] = []

    def opt_zone(self, path: str) -> None:
        # One line: usage.Options shows a docstring as --help text, line
        # breaks and indentation included.
        """One more zone file (repeatable); its origin is its first $ORIGIN, or its file name (example.test.zone serves example.test.)."""  # noqa: E501
        self["zone"].append(path)

    def opt_listen(self, text: str) -> None:
        """Plain DNS on UDP and TCP at HOST:PORT (repeatable); IPv6 as [::1]:5353; port 0 takes a free port [default: 0.0.0.0:53 and [::]:53]."""  # noqa: E501
        try:
            self["listen"].append(parse_address(text))
        except ValueError as e:
            raise usage.UsageError(f"--listen {e}") from None

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse, and turn a usage error into one line on standard error and
        exit status 2.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            print(f"twistd dnstls: {e} (see twistd dnstls --help)", file=sys.stderr)
            raise SystemExit(2) from None

    def postOptions(self) -> None:
        """
        Fill in the default addresses; the IPv6 one only on a host that has
        IPv6, so that the default starts everywhere.
        """
        if not self["listen"]:
            defaults = [parse_address(text) for text in DEFAULT_LISTEN]
            self["listen"] = [a for a in defaults if family_available(a.family)]


def load_store(zones_directory: str | os.PathLike[str] | None, zone_paths: Sequence[str]) -> ZoneStore:
    """
    Load every zone the options name.

    @raise StartupError: for a broken zone, or two files with one origin.
    """
    directory = zones_directory if zones_directory is not None else default_zones_directory()
    paths = [*zone_files(directory), *(Path(p) for p in zone_paths)]
    store = ZoneStore()
    sources: dict[object, Path] = {}
    for path in paths:
        zone = AuthoritativeZone(load_zone(path))
        if zone.origin in sources:
            raise StartupError(
                f"{path}: zone {zone.origin} is already loaded from {sources[zone.origin]}"
            )
        sources[zone.origin] = path
        store.add(zone)
    return store


def default_max_connections() -> int:
    """
    Half the process's open-file limit, as Knot DNS does, raising the soft
    limit to the hard one first.
    """
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        if soft == resource.RLIM_INFINITY:
            soft = 65536
    except (ImportError, OSError, ValueError):
        soft = 1024
    return max(16, soft // 2)


def makeService(options: usage.Options, reactor: Any = None) -> ServerService:
    """
    Build the server the options describe, with its sockets already bound.

    @param reactor: the reactor to serve on; the global one by default.
    @raise StartupError: if a zone or an address is unusable.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    store = load_store(options["zones"], options["zone"])
    handler = Handler(store, Chaos(options["identity"], options["version-string"]))
    listening = ListeningService(reactor)
    stream = DNSStreamFactory(
        handler,
        reactor,
        Transport.TCP,
        idle_timeout=options["tcp-idle-timeout"],
        max_connections=options["max-connections"] or default_max_connections(),
    )
    addresses: list[Address] = options["listen"]
    try:
        for address in addresses:
            udp, tcp = bind_udp_and_tcp(address)
            listening.add_datagram(udp, DNSDatagramProtocol(handler))
            listening.add_stream(tcp, stream, "tcp")
    except StartupError:
        listening.close()
        raise
    return ServerService(handler, listening)


class ServerService(MultiService):
    """
    The whole server, as a service: start it to serve.

    @ivar handler: the query handler every listener shares.
    @ivar listening: the listeners; their ports once started.
    """

    log = Logger()

    def __init__(self, handler: Handler, listening: ListeningService) -> None:
        super().__init__()
        self.handler = handler
        self.listening = listening
        listening.setServiceParent(self)

    def startService(self) -> None:
        """
        Start listening, then log one line with the zones served: the sign
        that the server is ready.
        """
        super().startService()
        zones = sorted(self.handler.zones, key=lambda zone: zone.origin)
        self.log.info(
            "serving {count} zones: {zones}",
            count=len(zones),
            zones=" ".join(f"{zone.origin}(serial {zone.serial})" for zone in zones) or "none",
        )
