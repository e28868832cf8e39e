# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd dnstls} options: L{Options}, its parsers and checks, and the
default addresses.

A bad option is one line on standard error and exit status 2, before
anything is read or bound; what the options name (zones, certificates,
addresses) is checked when L{dnstls.tap.makeService} builds the server.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from typing import Any

from twisted.python import usage

from dnstls.acl import parse_network
from dnstls.resolver.cache import DEFAULT_MAX_TTL, DEFAULT_SIZE
from dnstls.resolver.forward import DEFAULT_TIMEOUT, parse_upstream
from dnstls.resolver.tlsupstream import TLSUpstream, parse_pin, parse_tls_upstream
from dnstls.transport.backlog import DEFAULT_MAX_UNSENT, DEFAULT_MAX_UNSENT_TOTAL
from dnstls.transport.connection import DEFAULT_IO_TIMEOUT
from dnstls.transport.limits import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_PER_CLIENT,
    DEFAULT_PREFIX_V4,
    DEFAULT_PREFIX_V6,
    DEFAULT_TLS_IDLE_TIMEOUT,
    PREFIX_SHARE,
)
from dnstls.transport.listen import Address, family_available, parse_address
from dnstls.transport.upgrade import UpgradePolicy

DEFAULT_LISTEN = ("0.0.0.0:53", "[::]:53")
DEFAULT_LISTEN_TLS = ("0.0.0.0:853", "[::]:853")


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


def _prefix_length(name: str, bits: int) -> Any:
    def convert(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= bits:
            raise usage.UsageError(f"--{name} takes a prefix length from 1 to {bits}, not {text!r}")
        return int(text)

    return convert


def _descriptor(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise usage.UsageError(f"--ready-fd takes a file descriptor number, not {text!r}")
    return int(text)


def _policy(text: str) -> UpgradePolicy:
    try:
        return UpgradePolicy(text)
    except ValueError:
        raise usage.UsageError(f"--starttls takes off, probe or any, not {text!r}") from None


#: The options that take a value: name, short name, default, help, parser.
PARAMETERS: list[list[Any]] = [
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
        "tcp-io-timeout",
        None,
        DEFAULT_IO_TIMEOUT,
        "Close a TCP connection or TLS session when a message's rest has not come this many "
        "seconds after its first octet.",
        _positive(float, "tcp-io-timeout"),
    ],
    [
        "max-unsent-per-connection",
        None,
        DEFAULT_MAX_UNSENT,
        "Stop reading a TCP or TLS connection holding more than this many octets of replies its "
        "client has not read, until it reads them; abort it if it has not after its idle timeout.",
        _positive(int, "max-unsent-per-connection"),
    ],
    [
        "max-unsent-total",
        None,
        DEFAULT_MAX_UNSENT_TOTAL,
        "Past this many octets of unread replies on all connections together, stop reading "
        "those holding more than an even share.",
        _positive(int, "max-unsent-total"),
    ],
    [
        "max-connections",
        None,
        None,
        "Most TCP and TLS connections open at once [default: half the open-file limit]. From half "
        "of them on idle timeouts are a tenth (at least 1 s) and keepalive says so; from nine "
        "tenths keepalive says 0 and a connection told so is closed 0.5 s after its last answer; "
        "when all are open the connection idle longest (one told 0 first) is closed for a new one.",
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
        "max-connections-per-prefix",
        None,
        None,
        "Most TCP and TLS connections the addresses of one client prefix (see --client-prefix-v4 "
        "and --client-prefix-v6) may hold at once, counted as well as per address "
        f"[default: {PREFIX_SHARE} times --max-connections-per-client].",
        _positive(int, "max-connections-per-prefix"),
    ],
    [
        "client-prefix-v4",
        None,
        DEFAULT_PREFIX_V4,
        "The length of the IPv4 prefix --max-connections-per-prefix counts by.",
        _prefix_length("client-prefix-v4", 32),
    ],
    [
        "client-prefix-v6",
        None,
        DEFAULT_PREFIX_V6,
        "The length of the IPv6 prefix --max-connections-per-prefix counts by.",
        _prefix_length("client-prefix-v6", 128),
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
    [
        "ready-fd",
        None,
        None,
        "Once serving, write one line of JSON to this open file descriptor and close it: "
        '{"ready": true, "pid": ..., "listening": [{"transport", "address", "port"}...], '
        '"zones": [{"origin", "serial"}...]}, the ports those port 0 chose (see README).',
        _descriptor,
    ],
]

#: The switches: name, short name, help.
FLAGS: list[list[Any]] = [
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

    optParameters = PARAMETERS
    optFlags = FLAGS

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


