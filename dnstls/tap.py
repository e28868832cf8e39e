# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd dnstls} command line: L{Options} (from L{dnstls.options}) and
L{makeService}, which builds the server the options describe.

Everything that can fail at start-up (the zones, an address) fails in
L{makeService}, before the reactor runs, with a L{StartupError}; run from
C{twistd}, that becomes one line on standard error and exit status 1, and a
bad option one line and exit status 2.  A zone file that fails to load is
not served, and logged once the server runs; only when no zone file loads,
or with C{--strict-zones} when any fails, is that a start-up error.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.python import usage

from dnstls.acl import DEFAULT_ALLOW, AccessList
from dnstls.chaos import Chaos
from dnstls.context import Answerer, Transport
from dnstls.errors import StartupError
from dnstls.handler import Handler
from dnstls.options import Options
from dnstls.ready import ReadyChannel
from dnstls.resolver.cache import Cache
from dnstls.resolver.forward import Forwarder
from dnstls.resolver.iterate import Iterator
from dnstls.resolver.recursion import Recursion, Source
from dnstls.resolver.roothints import load_root_hints
from dnstls.resolver.tlsupstream import load_trust_root
from dnstls.server import CredentialSources, ServerService, default_state_dir
from dnstls.testing.control import ControlFactory
from dnstls.testing.faults import FaultInjector, Faults
from dnstls.testing.querylog import QueryLog
from dnstls.transport.backlog import Backlog
from dnstls.transport.fastpath import FastAnswerer
from dnstls.transport.handdown import InheritedSockets, die_with_parent
from dnstls.transport.limits import ConnectionLimits
from dnstls.transport.listen import ListeningService, bind_stream, bind_udp_and_tcp
from dnstls.transport.stream import DNSStreamFactory
from dnstls.transport.tls import TLSPolicy, TLSServerFactory
from dnstls.transport.udp import DNSDatagramProtocol
from dnstls.transport.upgrade import Upgrade, UpgradePolicy
from dnstls.transport.workers import WorkersService, supervise
from dnstls.zones.zoneset import ZoneSet, ZoneSources

__all__ = ["Options", "ServerService", "answer_source", "makeService"]


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


def zone_set(zones_directory: str | os.PathLike[str] | None, zone_paths: Sequence[str]) -> ZoneSet:
    """
    The zones the options name (C{--zones}, by default the shipped ones, and
    C{--zone}), not loaded yet.
    """
    directory = Path(zones_directory) if zones_directory is not None else default_zones_directory()
    return ZoneSet(ZoneSources(directory, tuple(Path(p) for p in zone_paths)))


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


def answer_source(options: usage.Options, reactor: Any) -> Source | None:
    """
    Where answers for names outside our zones come from, chosen here and
    nowhere else: none with C{--no-recursion} (REFUSED, RA=0), the
    forwarders with C{--forward}/C{--forward-tls}, else iteration from the
    root hints.

    @raise StartupError: if C{--forward-tls-ca} or C{--root-hints} is unusable.
    """
    if options["no-recursion"]:
        return None
    if options["forward"]:
        try:
            trust = load_trust_root(options["forward-tls-ca"])
        except ValueError as e:
            raise StartupError(f"--forward-tls-ca {e}") from None
        return Forwarder(
            options["forward"], reactor, timeout=options["upstream-timeout"], tls_trust=trust
        )
    try:
        hints = load_root_hints(options["root-hints"])
    except ValueError as e:
        raise StartupError(f"--root-hints {e}") from None
    return Iterator(
        hints,
        reactor,
        timeout=options["upstream-timeout"],
        minimise=not options["no-qname-minimisation"],
        query_loopback=bool(options["query-loopback"]),
    )


def makeService(options: usage.Options, reactor: Any = None) -> ServerService | WorkersService:
    """
    Build the server the options describe, with its sockets already bound;
    with C{--workers} above 1, the supervisor of the worker processes
    (L{dnstls.transport.workers}), the configuration checked first.

    @param reactor: the reactor to serve on; the global one by default.
    @raise StartupError: if no zone loads (with C{--strict-zones}, if any
        zone fails), or a certificate or an address is unusable.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    # a worker started by --workers adopts the sockets it inherited
    inherited = InheritedSockets.from_environment(os.environ)
    if inherited is not None:
        die_with_parent(os.environ)
    ready = ReadyChannel.open(options["ready-fd"])
    state_dir = Path(options["state-dir"]) if options["state-dir"] else default_state_dir()
    zones = zone_set(options["zones"], options["zone"])
    zones.load()
    zones.check_startup(strict=bool(options["strict-zones"]))
    limits = ConnectionLimits(
        total=options["max-connections"] or default_max_connections(),
        per_client=options["max-connections-per-client"],
        per_prefix=options["max-connections-per-prefix"],
        prefix_v4=options["client-prefix-v4"],
        prefix_v6=options["client-prefix-v6"],
    )
    backlog = Backlog(options["max-unsent-per-connection"], options["max-unsent-total"])
    listening = ListeningService(reactor)
    starttls: UpgradePolicy = options["starttls"]
    policy = None
    credentials = None
    if options["listen-tls"] or (options["listen"] and starttls is not UpgradePolicy.OFF):
        credentials = CredentialSources(
            tuple(zip(options["tls-cert"], options["tls-key"], strict=True)),
            state_dir,
            tuple(options["tls-name"]) or (socket.getfqdn() or "localhost",),
        )
        loaded = (inherited and inherited.credentials()) or credentials.load()
        policy = TLSPolicy(loaded, tickets=not options["no-tls-tickets"])
    upgrade = None
    if policy is not None and starttls is not UpgradePolicy.OFF:
        upgrade = Upgrade(
            starttls,
            policy,
            options["tls-idle-timeout"],
            legacy_probe=bool(options["starttls-legacy-probe"]),
        )
    source = answer_source(options, reactor)
    if inherited is None and options["workers"] > 1:
        given = getattr(options, "raw_args", [])
        return supervise(
            options, given, str(state_dir), policy.credentials if policy else None, reactor, ready
        )
    recursion = None
    if source is not None:
        recursion = Recursion(
            AccessList(options["allow-recursion"] or DEFAULT_ALLOW),
            Cache(reactor, options["cache-size"], options["cache-max-ttl"]),
            source,
        )
    handler = Handler(
        zones.store,
        Chaos(options["identity"], options["version-string"]),
        # TO advertises DNS over TLS, which needs a TLS door to be true
        advertise_to=options["advertise-to"] and (upgrade is not None or bool(options["listen-tls"])),
        recursion=recursion,
    )
    # the rendered-answer cache; a test server (--control) keeps it, with
    # the fault injector and the query log hooked in front of it
    answerer: Answerer = FastAnswerer(handler)
    faults = log = hooks = None
    if options["control"]:
        faults, log = Faults(), QueryLog()
        hooks = FaultInjector(faults, log, reactor)

    def streams(kind: Transport, idle_timeout: float, upgrade: Upgrade | None = None) -> DNSStreamFactory:
        return DNSStreamFactory(
            answerer,
            reactor,
            kind,
            idle_timeout=idle_timeout,
            limits=limits,
            handshake_timeout=options["tls-handshake-timeout"],
            upgrade=upgrade,
            hooks=hooks,
            io_timeout=options["tcp-io-timeout"],
            backlog=backlog,
        )

    tcp_factory = streams(Transport.TCP, options["tcp-idle-timeout"], upgrade)
    try:
        for address in options["listen"]:
            udp, tcp = inherited.udp_and_tcp(address) if inherited else bind_udp_and_tcp(address)
            listening.add_datagram(udp, DNSDatagramProtocol(answerer, hooks))
            listening.add_stream(tcp, tcp_factory, "tcp")
        if options["listen-tls"]:
            assert policy is not None
            tls_factory = TLSServerFactory(
                policy, streams(Transport.TLS, options["tls-idle-timeout"])
            )
            for address in options["listen-tls"]:
                tls = inherited.stream(address) if inherited else bind_stream(address, "tls")
                listening.add_stream(tls, tls_factory, "tls")
    except StartupError:
        listening.close()
        raise
    if options["control"]:
        assert faults is not None and log is not None
        listening.add_control(options["control"], ControlFactory(faults, log))
    return ServerService(
        handler,
        listening,
        zones,
        policy,
        credentials,
        reactor,
        ticket_rotation=options["tls-ticket-rotation"],
        strict_zones=bool(options["strict-zones"]),
        ready=ready,
    )
