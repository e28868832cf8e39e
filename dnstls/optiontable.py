# -*- test-case-name: tests.test_tap -*-
"""
The table of C{twistd dnstls}'s options: each option's name, default, help
line and parser, as L{dnstls.options.Options} reads them.
"""

from __future__ import annotations

import math
from typing import Any

from twisted.python import usage

from dnstls.resolver.cache import DEFAULT_MAX_TTL, DEFAULT_SIZE
from dnstls.resolver.forward import DEFAULT_TIMEOUT
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
from dnstls.transport.upgrade import UpgradePolicy

DEFAULT_LISTEN = ("0.0.0.0:53", "[::]:53")
DEFAULT_LISTEN_TLS = ("0.0.0.0:853", "[::]:853")


def positive(kind: type[int] | type[float], name: str) -> Any:
    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise usage.UsageError(f"--{name} takes a number, not {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise usage.UsageError(f"--{name} must be a number above 0, not {text!r}")
        return value

    return convert


def prefix_length(name: str, bits: int) -> Any:
    def convert(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= bits:
            raise usage.UsageError(f"--{name} takes a prefix length from 1 to {bits}, not {text!r}")
        return int(text)

    return convert


def descriptor(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise usage.UsageError(f"--ready-fd takes a file descriptor number, not {text!r}")
    return int(text)


def policy(text: str) -> UpgradePolicy:
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
        positive(float, "tcp-idle-timeout"),
    ],
    [
        "tcp-io-timeout",
        None,
        DEFAULT_IO_TIMEOUT,
        "Close a TCP connection or TLS session when a message's rest has not come this many "
        "seconds after its first octet.",
        positive(float, "tcp-io-timeout"),
    ],
    [
        "max-unsent-per-connection",
        None,
        DEFAULT_MAX_UNSENT,
        "Stop reading a TCP or TLS connection holding more than this many octets of replies its "
        "client has not read, until it reads them; abort it if it reads none for its idle timeout.",
        positive(int, "max-unsent-per-connection"),
    ],
    [
        "max-unsent-total",
        None,
        DEFAULT_MAX_UNSENT_TOTAL,
        "Past this many octets of unread replies on all connections together, stop reading "
        "those holding more than an even share.",
        positive(int, "max-unsent-total"),
    ],
    [
        "max-connections",
        None,
        None,
        "Most TCP and TLS connections open at once [default: half the open-file limit]. From half "
        "of them on idle timeouts are a tenth (at least 1 s) and keepalive says so; from nine "
        "tenths keepalive says 0 and a connection told so is closed 0.5 s after its last answer; "
        "when all are open the connection idle longest (one told 0 first) is closed for a new one.",
        positive(int, "max-connections"),
    ],
    [
        "max-connections-per-client",
        None,
        DEFAULT_MAX_PER_CLIENT,
        "Most TCP and TLS connections one client address may hold at once.",
        positive(int, "max-connections-per-client"),
    ],
    [
        "max-connections-per-prefix",
        None,
        None,
        "Most TCP and TLS connections the addresses of one client prefix (see --client-prefix-v4 "
        "and --client-prefix-v6) may hold at once, counted as well as per address "
        f"[default: {PREFIX_SHARE} times --max-connections-per-client].",
        positive(int, "max-connections-per-prefix"),
    ],
    [
        "client-prefix-v4",
        None,
        DEFAULT_PREFIX_V4,
        "The length of the IPv4 prefix --max-connections-per-prefix counts by.",
        prefix_length("client-prefix-v4", 32),
    ],
    [
        "client-prefix-v6",
        None,
        DEFAULT_PREFIX_V6,
        "The length of the IPv6 prefix --max-connections-per-prefix counts by.",
        prefix_length("client-prefix-v6", 128),
    ],
    [
        "starttls",
        None,
        "probe",
        "When a TCP/53 connection is upgraded to TLS by the EDNS TO bit: off, probe (only the "
        "first query STARTTLS. CH TXT with TO=1) or any (any first query with TO=1).",
        policy,
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
        positive(float, "tls-idle-timeout"),
    ],
    [
        "tls-handshake-timeout",
        None,
        DEFAULT_HANDSHAKE_TIMEOUT,
        "Drop a TLS client that has not finished its handshake after this many seconds.",
        positive(float, "tls-handshake-timeout"),
    ],
    [
        "tls-ticket-rotation",
        None,
        86400.0,
        "Give TLS session tickets new keys every this many seconds (clients holding an older "
        "ticket make one full handshake).",
        positive(float, "tls-ticket-rotation"),
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
        positive(int, "cache-size"),
    ],
    [
        "cache-max-ttl",
        None,
        DEFAULT_MAX_TTL,
        "Keep a recursive answer at most this many seconds, whatever its TTL.",
        positive(int, "cache-max-ttl"),
    ],
    [
        "upstream-timeout",
        None,
        DEFAULT_TIMEOUT,
        "Seconds to wait for one upstream server (a forwarder, or a name server when "
        "iterating) before trying the next.",
        positive(float, "upstream-timeout"),
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
        positive(int, "workers"),
    ],
    [
        "ready-fd",
        None,
        None,
        "Once serving, write one line of JSON to this open file descriptor and close it: "
        '{"ready": true, "pid": ..., "listening": [{"transport", "address", "port"}...], '
        '"zones": [{"origin", "serial"}...]}, the ports those port 0 chose (see README).',
        descriptor,
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
