# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd dnstls} options: L{Options}, the repeatable options' parsers
and the checks across options; the table of the others, with their
defaults and help, is L{dnstls.optiontable}'s.

A bad option is one line on standard error and exit status 2, before
anything is read or bound; what the options name (zones, certificates,
addresses) is checked when L{dnstls.tap.makeService} builds the server.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from twisted.python import usage

from dnstls.acl import parse_network
from dnstls.optiontable import DEFAULT_LISTEN, DEFAULT_LISTEN_TLS, FLAGS, PARAMETERS
from dnstls.resolver.forward import parse_upstream
from dnstls.resolver.tlsupstream import TLSUpstream, parse_pin, parse_tls_upstream
from dnstls.transport.listen import Address, family_available, parse_address
from dnstls.transport.upgrade import UpgradePolicy


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


