# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd dnstls} command line: L{Options} and L{makeService}.

Everything that can fail at start-up (the zones, an address) fails in
L{makeService}, before the reactor runs, with a L{StartupError}; run from
C{twistd}, that becomes one line on standard error and exit status 1, and a
bad option one line and exit status 2.  A zone file that fails to load is
not served, and logged once the server runs; only when no zone file loads,
or with C{--strict-zones} when any fails, is that a start-up error.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.python import usage

from dnstls.acl import DEFAULT_ALLOW, AccessList, parse_network
from dnstls.chaos import Chaos
from dnstls.errors import StartupError
from dnstls.handler import Answerer, Handler, Transport
from dnstls.resolver.cache import DEFAULT_MAX_TTL, DEFAULT_SIZE, Cache
from dnstls.resolver.forward import DEFAULT_TIMEOUT, Forwarder, parse_upstream
from dnstls.resolver.iterate import Iterator
from dnstls.resolver.recursion import Recursion, Source
from dnstls.resolver.roothints import load_root_hints
from dnstls.resolver.tlsupstream import TLSUpstream, load_trust_root, parse_pin, parse_tls_upstream
from dnstls.server import CredentialSources, ServerService, default_state_dir
from dnstls.testing.control import ControlFactory
from dnstls.testing.faults import FaultInjector, Faults
from dnstls.testing.querylog import QueryLog
from dnstls.transport.fastpath import FastAnswerer
from dnstls.transport.listen import (
    Address,
    ListeningService,
    bind_stream,
    bind_udp_and_tcp,
    family_available,
    parse_address,
)
from dnstls.transport.protocol import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_PER_CLIENT,
    DEFAULT_TLS_IDLE_TIMEOUT,
    ConnectionLimits,
    DNSDatagramProtocol,
    DNSStreamFactory,
    Upgrade,
)
from dnstls.transport.tls import TLSPolicy, TLSServerFactory
from dnstls.transport.upgrade import UpgradePolicy
from dnstls.transport.workers import InheritedSockets, WorkersService, die_with_parent, supervise
from dnstls.zones.authority import ZoneStore
from dnstls.zones.zoneset import ZoneSet, ZoneSources

DEFAULT_LISTEN = ("0.0.0.0:53", "[::]:53")
DEFAULT_LISTEN_TLS = ("0.0.0.0:853", "[::]:853")


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


def _policy(text: str) -> UpgradePolicy:
    try:
        return UpgradePolicy(text)
    except ValueError:
        raise usage.UsageError(f"--starttls takes off, probe or any, not {text!r}") from None


class Options(usage.Options):
    """
    Options for C{twistd dnstls}.
    """

    synopsis = "[options]"
    longdesc = (
        "An authoritative DNS server for the zones in --zones and --zone, on "
        "UDP and TCP (--listen) and DNS over TLS (--listen-tls). With neither "
        "--listen nor --listen-tls, it listens on port 53 and 853 of every "
        "address; with either, on exactly the addresses given."
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
            "Most TCP and TLS connections open at once [default: half the open-file limit].",
            _positive(int, "max-connections"),
        ],
        [
            "max-connections-per-client",
            None,
            DEFAULT_MAX_PER_CLIENT,
            "Most TCP and TLS connections one client address may hold at once.",
            _positive(int, "max-connections-per-client"),
        ],
        [
            "starttls",
            None,
            "probe",
            "When a TCP/53 connection is upgraded to TLS by the EDNS TO bit: off, probe (only the "
            "first query STARTTLS. CH TXT with TO=1) or any (any first query with TO=1).",
            _policy,
        ],
        [
            "control",
            None,
            None,
            "For tests: a UNIX socket path where the test kit sets faults and reads the query log "
            "(see dnstls.testing).",
        ],
        [
            "state-dir",
            None,
            None,
            "Where the generated TLS key and certificate are kept "
            "[default: /var/lib/dnstls for root, else ~/.local/state/dnstls].",
        ],
        [
            "tls-idle-timeout",
            None,
            DEFAULT_TLS_IDLE_TIMEOUT,
            "Close a TLS session after this many seconds without a complete query.",
            _positive(float, "tls-idle-timeout"),
        ],
        [
            "tls-handshake-timeout",
            None,
            DEFAULT_HANDSHAKE_TIMEOUT,
            "Drop a TLS client that has not finished its handshake after this many seconds.",
            _positive(float, "tls-handshake-timeout"),
        ],
        [
            "tls-ticket-rotation",
            None,
            86400.0,
            "Give TLS session tickets new keys every this many seconds (clients holding an older "
            "ticket make one full handshake).",
            _positive(float, "tls-ticket-rotation"),
        ],
        [
            "forward-tls-ca",
            None,
            None,
            "A PEM file of the roots that --forward-tls upstreams' certificates must chain to "
            "[default: the system's].",
        ],
        [
            "cache-size",
            None,
            DEFAULT_SIZE,
            "Most answers the recursion cache keeps; the least recently used goes first.",
            _positive(int, "cache-size"),
        ],
        [
            "cache-max-ttl",
            None,
            DEFAULT_MAX_TTL,
            "Keep a recursive answer at most this many seconds, whatever its TTL.",
            _positive(int, "cache-max-ttl"),
        ],
        [
            "upstream-timeout",
            None,
            DEFAULT_TIMEOUT,
            "Seconds to wait for one upstream server (a forwarder, or a name server when "
            "iterating) before trying the next.",
            _positive(float, "upstream-timeout"),
        ],
        [
            "root-hints",
            None,
            None,
            "The root hints file iteration starts from (NS records of the root and their "
            "addresses) [default: IANA's named.root, shipped with dnstls].",
        ],
        [
            "workers",
            None,
            1,
            "Serve from this many processes sharing the ports (SO_REUSEPORT); the kernel spreads "
            "queries and connections among them; --max-connections applies to each, and "
            "{worker} in --identity becomes the number of the worker that answers.",
            _positive(int, "workers"),
        ],
    ]

    optFlags = [
        [
            "no-recursion",
            None,
            "Answer only from our zones: every other name is REFUSED, and RA is 0 "
            "[default: recursion for --allow-recursion clients].",
        ],
        [
            "no-qname-minimisation",
            None,
            "When iterating, send each name server the full name asked, not only one label "
            "more than its zone (RFC 9156 QNAME minimisation is on by default).",
        ],
        [
            "query-loopback",
            None,
            "When iterating, also ask name servers at loopback addresses (127.0.0.0/8, ::1) "
            "that referrals and answers give; off by default (as Unbound's "
            "do-not-query-localhost), so that a delegation cannot aim the resolver at this "
            "host's own services. The root hints are always used.",
        ],
        ["no-tls-tickets", None, "Issue no TLS session tickets (sessions resume from a server cache)."],
        [
            "strict-zones",
            None,
            "Refuse to start if any zone file fails to load, and on SIGHUP reload no zone unless "
            "every file loads [default: serve every zone that loads, log one error for each "
            "that does not, and refuse to start only if none loads].",
        ],
        [
            "starttls-legacy-probe",
            None,
            "Also upgrade a TCP/53 connection whose first query is STARTTLS. CH TXT without TO, "
            "as getdns 0.5.1 (2015) sends it; needs --starttls probe or any (off by default).",
        ],
        [
            "advertise-to",
            None,
            "Set the TO bit in UDP replies to queries with EDNS, to advertise the upgrade "
            "(off by default: the bit is CO since RFC 9824).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["zone"] = []
        self["listen"] = []
        self["listen-tls"] = []
        self["tls-cert"] = []
        self["tls-key"] = []
        self["tls-name"] = []
        self["allow-recursion"] = []
        self["forward"] = []

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

    def opt_listen_tls(self, text: str) -> None:
        """DNS over TLS at HOST:PORT (repeatable); IPv6 as [::1]:853; port 0 takes a free port [default: 0.0.0.0:853 and [::]:853]."""  # noqa: E501
        try:
            address = parse_address(text)
        except ValueError as e:
            raise usage.UsageError(f"--listen-tls {e}") from None
        if address.port == 53:
            raise usage.UsageError("--listen-tls: DNS over TLS must not use port 53 (RFC 7858 3.1)")
        self["listen-tls"].append(address)

    def opt_tls_cert(self, path: str) -> None:
        """A PEM certificate chain for DNS over TLS (repeatable, each with its --tls-key; the first is the default, the others are chosen by SNI) [default: a self-signed one generated under --state-dir]."""  # noqa: E501
        self["tls-cert"].append(path)

    def opt_tls_key(self, path: str) -> None:
        """The PEM private key of the --tls-cert given in the same position."""
        self["tls-key"].append(path)

    def opt_tls_name(self, name: str) -> None:
        """A DNS name for the generated self-signed certificate (repeatable) [default: this host's name]."""  # noqa: E501
        self["tls-name"].append(name)

    def opt_allow_recursion(self, text: str) -> None:
        """Clients at ADDRESS/PREFIX may have names outside our zones resolved (repeatable); others get REFUSED for them and RA=0 [default: 127.0.0.0/8 and ::1]."""  # noqa: E501
        try:
            self["allow-recursion"].append(parse_network(text))
        except ValueError as e:
            raise usage.UsageError(f"--allow-recursion {e}") from None

    def opt_forward(self, text: str) -> None:
        """Forward names outside our zones to the resolver at HOST:PORT over UDP, TCP when truncated (repeatable: tried in order) instead of iterating [default: iterate from the root hints]."""  # noqa: E501
        try:
            self["forward"].append(parse_upstream(text))
        except ValueError as e:
            raise usage.UsageError(f"--forward {e}") from None

    def opt_forward_tls(self, text: str) -> None:
        """Forward names outside our zones to the resolver at HOST:PORT#NAME over DNS over TLS, its certificate checked for NAME; one connection, reused and pipelined (repeatable; tried in order among the --forward upstreams)."""  # noqa: E501
        try:
            self["forward"].append(parse_tls_upstream(text))
        except ValueError as e:
            raise usage.UsageError(f"--forward-tls {e}") from None

    def opt_forward_tls_pin(self, text: str) -> None:
        """A base64 SHA-256 SPKI pin for the last --forward-tls upstream given before it (repeatable: any pin matches); a pinned upstream is authenticated by its key alone, not by --forward-tls-ca and NAME."""  # noqa: E501
        tls = [i for i, u in enumerate(self["forward"]) if isinstance(u, TLSUpstream)]
        if not tls:
            raise usage.UsageError("--forward-tls-pin follows the --forward-tls it pins")
        try:
            pin = parse_pin(text)
        except ValueError as e:
            raise usage.UsageError(f"--forward-tls-pin {e}") from None
        upstream = self["forward"][tls[-1]]
        self["forward"][tls[-1]] = dataclasses.replace(upstream, pins=(*upstream.pins, pin))

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse, and turn a usage error into one line on standard error and
        exit status 2.
        """
        #: the options as given, for the copies --workers starts
        self.raw_args = list(options) if options is not None else sys.argv[1:]
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
        if len(self["tls-cert"]) != len(self["tls-key"]):
            raise usage.UsageError("give each --tls-cert its --tls-key, in the same order")
        if self["workers"] > 1 and self["control"]:
            raise usage.UsageError("--workers and --control do not go together (one test server)")
        if self["no-recursion"] and self["forward"]:
            raise usage.UsageError("--no-recursion and --forward/--forward-tls contradict each other")
        if self["root-hints"] is not None and (self["no-recursion"] or self["forward"]):
            raise usage.UsageError(
                "--root-hints is for iterative resolution: it contradicts --no-recursion and --forward"
            )
        if self["starttls-legacy-probe"] and self["starttls"] is UpgradePolicy.OFF:
            raise usage.UsageError("--starttls-legacy-probe needs --starttls probe or any, not off")
        if not self["listen"] and not self["listen-tls"]:
            self["listen"] = _available(DEFAULT_LISTEN)
            self["listen-tls"] = _available(DEFAULT_LISTEN_TLS)


def _available(texts: Sequence[str]) -> list[Address]:
    """
    The addresses in C{texts} whose family this host has.
    """
    addresses = [parse_address(text) for text in texts]
    return [address for address in addresses if family_available(address.family)]


def zone_set(zones_directory: str | os.PathLike[str] | None, zone_paths: Sequence[str]) -> ZoneSet:
    """
    The zones the options name (C{--zones}, by default the shipped ones, and
    C{--zone}), not loaded yet.
    """
    directory = Path(zones_directory) if zones_directory is not None else default_zones_directory()
    return ZoneSet(ZoneSources(directory, tuple(Path(p) for p in zone_paths)))


def load_store(
    zones_directory: str | os.PathLike[str] | None, zone_paths: Sequence[str]
) -> ZoneStore:
    """
    Load every zone the options name, all or none (as C{--strict-zones}).

    @raise StartupError: for a broken zone, or two files with one origin.
    """
    zones = zone_set(zones_directory, zone_paths)
    zones.load()
    zones.check_startup(strict=True)
    return zones.store


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
    state_dir = Path(options["state-dir"]) if options["state-dir"] else default_state_dir()
    zones = zone_set(options["zones"], options["zone"])
    zones.load()
    zones.check_startup(strict=bool(options["strict-zones"]))
    limits = ConnectionLimits(
        total=options["max-connections"] or default_max_connections(),
        per_client=options["max-connections-per-client"],
    )
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
            options, given, str(state_dir), policy.credentials if policy else None, reactor
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
    tcp_factory = DNSStreamFactory(
        answerer,
        reactor,
        Transport.TCP,
        idle_timeout=options["tcp-idle-timeout"],
        limits=limits,
        handshake_timeout=options["tls-handshake-timeout"],
        upgrade=upgrade,
        hooks=hooks,
    )
    try:
        for address in options["listen"]:
            udp, tcp = inherited.udp_and_tcp(address) if inherited else bind_udp_and_tcp(address)
            listening.add_datagram(udp, DNSDatagramProtocol(answerer, hooks))
            listening.add_stream(tcp, tcp_factory, "tcp")
        if options["listen-tls"]:
            assert policy is not None
            tls_factory = TLSServerFactory(
                policy,
                DNSStreamFactory(
                    answerer,
                    reactor,
                    Transport.TLS,
                    idle_timeout=options["tls-idle-timeout"],
                    limits=limits,
                    handshake_timeout=options["tls-handshake-timeout"],
                    hooks=hooks,
                ),
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
    )
