# -*- test-case-name: tests.testing.test_testing -*-
"""
A real DNS server for the tests of DNS clients: UDP, TCP, DNS over TLS and
the STARTTLS upgrade on free loopback ports, with a throwaway CA, faults to
inject while the test runs, and a log of what the client sent.

    from dnstls.testing import start_server

    with start_server({"www": ["A 192.0.2.1"]}) as server:
        host, port = server.tls
        ...  # point the client under test at it, trusting server.ca_path
        assert server.queries()[0]["tls"]["alpn"] == "dot"

The server answers only from its zones (C{--no-recursion}) unless it is
given upstreams to forward to (C{forward=[other_server]}) or root hints to
iterate from (C{root_hints=path}), so a test never asks the real root.

The server runs as a child process (C{twistd dnstls}), so it serves
blocking clients, Twisted and asyncio alike; L{TestServer.stop} (or leaving
the C{with} block) ends it and removes its files.  The pytest plugin in
L{dnstls.testing.pytest_plugin} wraps this as fixtures.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import dns.rdataclass
import dns.rdatatype
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec

import dnstls
from dnstls.certs import spki_pin
from dnstls.testing.certs import ca_certificate, server_certificate, write_certificates, write_key
from dnstls.testing.process import DnstlsChild, chooses_recursion

#: The certificate the server presents: valid for the server name, valid
#: for another name, or expired.
CERTIFICATES = ("valid", "other-name", "expired")

_APEX_SOA = "@ SOA ns.fixture.invalid. hostmaster.fixture.invalid. 1 3600 600 86400 60"
_APEX_NS = "@ NS ns.fixture.invalid."
_ORIGIN = re.compile(r"^\$ORIGIN[ \t]+(\S+)", re.M | re.I)

Zones = str | os.PathLike[str] | Mapping[str, Sequence[str]] | None


class TestServerError(RuntimeError):
    """
    The test server could not start, or its control socket failed.
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name


class TestServer:
    """
    A running dnstls for a test.

    @ivar udp: C{(host, port)} of plain DNS over UDP.
    @ivar tcp: C{(host, port)} of plain DNS over TCP, where STARTTLS works.
    @ivar tls: C{(host, port)} of DNS over TLS.
    @ivar ca_path: the PEM file of the throwaway CA that signed the server's
        certificate.
    @ivar server_name: the name the certificate is for (unless
        C{certificate="other-name"}).
    @ivar pin: the SHA-256 SPKI pin of the server's certificate, base64.
    @ivar origin: the zone's origin.
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(
        self,
        zones: Zones = None,
        *,
        origin: str = "example.test.",
        server_name: str = "dns.example.test",
        certificate: str = "valid",
        starttls: str = "probe",
        faults: Mapping[str, Any] | None = None,
        args: Sequence[str] = (),
        timeout: float = 15.0,
        forward: Sequence[str | TestServer] = (),
        root_hints: str | os.PathLike[str] | None = None,
    ) -> None:
        if certificate not in CERTIFICATES:
            raise ValueError(f"certificate must be one of {', '.join(CERTIFICATES)}")
        self.directory = Path(tempfile.mkdtemp(prefix="dnstls-fixture-"))
        self._child: DnstlsChild | None = None
        self.server_name = server_name
        self.origin = origin if origin.endswith(".") else origin + "."
        try:
            zone_dir = self.directory / "zones"
            zone_dir.mkdir()
            self.origin = _write_zones(zone_dir, zones, self.origin) or self.origin
            cert_name = "other.invalid" if certificate == "other-name" else server_name
            self.ca_path, cert, key, self.pin = _make_certificates(
                self.directory, cert_name, expired=certificate == "expired"
            )
            self._control_path = str(self.directory / "control.sock")
            options = [
                "--zones", str(zone_dir),
                "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
                "--tls-cert", str(cert), "--tls-key", str(key),
                "--state-dir", str(self.directory / "state"),
                "--starttls", starttls,
                "--control", self._control_path,
                *args,
                *_recursion_args(args, forward, root_hints),
            ]
            self._child = DnstlsChild(
                options, timeout=timeout, cwd=self.directory, env=_child_environment(),
                error=TestServerError,
            )
            self.process: subprocess.Popen[str] = self._child.process
            addresses: dict[str, tuple[str, int]] = {}
            for kind, host, port in self._child.addresses:
                addresses.setdefault(kind, (host, port))
            if faults:
                self.faults(**faults)
        except BaseException:
            self.stop()
            raise
        self.udp = addresses["udp"]
        self.tcp = addresses["tcp"]
        self.tls = addresses["tls"]

    @property
    def output(self) -> str:
        """
        Everything the server has logged so far.
        """
        return self._child.output if self._child is not None else ""

    def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        data = b""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(self._control_path)
                sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
                while not data.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            reply: dict[str, Any] = json.loads(data)
        except (OSError, ValueError) as e:
            state = "running" if self.process.poll() is None else f"exited ({self.process.returncode})"
            raise TestServerError(
                f"the control socket failed ({e}); the server has {state}:\n{self.output}"
            ) from None
        if not reply.get("ok"):
            raise TestServerError(reply.get("error", "the control socket failed"))
        return reply

    def faults(self, **changes: Any) -> dict[str, Any]:
        """
        Change fault knobs while the server runs, and return them all.  See
        L{dnstls.testing.faults.Faults}: C{delay={"*": 0.5}}, C{rcodes={"x.": "drop"}},
        C{reverse=True}, C{decline_upgrade=True}, C{abort_handshake=True},
        C{close_after=3}, C{idle_timeout=1}, C{keepalive_zero=True},
        C{truncate_udp=True}, C{no_padding=True}.
        """
        faults: dict[str, Any] = self._control({"op": "faults", "set": changes})["faults"]
        return faults

    def reset_faults(self) -> None:
        """
        Turn every fault off.
        """
        self._control({"op": "reset"})

    def queries(self) -> list[dict[str, Any]]:
        """
        What the server received, oldest first: transport, peer, id, name,
        type, rclass, rd, edns, payload, do, to, options, padding,
        keepalive, upgraded, and tls (sni, alpn, resumed, version).
        """
        queries: list[dict[str, Any]] = self._control({"op": "log"})["queries"]
        return queries

    def clear_queries(self) -> None:
        """
        Forget the queries received so far.
        """
        self._control({"op": "clear"})

    def stop(self) -> None:
        """
        Stop the server and remove its files.
        """
        if self._child is not None:
            self._child.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> TestServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_server(zones: Zones = None, **options: Any) -> TestServer:
    """
    Start a L{TestServer}.

    @param zones: zone text (with C{$ORIGIN}, or for C{origin}), a zone
        file's path, a directory of C{*.zone} files (served as they are),
        or a dict of owner names (relative to C{origin}, C{@} for the apex)
        to lists of C{"TYPE RDATA"}.  A default TTL, an SOA and NS are added
        to a zone that has none.  By default a small zone with C{www} and
        C{mail}.
    @param options: C{origin}, C{server_name}, C{certificate} (C{valid},
        C{other-name}, C{expired}), C{starttls} (C{probe}, C{any}, C{off}),
        C{faults} (knobs in force from the first query, as for
        L{TestServer.faults}), C{args} (more command-line options),
        C{timeout}, C{forward} (upstreams for names outside the zones:
        C{"HOST:PORT"} texts or other L{TestServer}s, asked over UDP),
        C{root_hints} (a root hints file to iterate from).  With neither,
        nor C{--forward}, C{--forward-tls} or C{--root-hints} in C{args},
        the server answers only from its zones (C{--no-recursion}: other
        names are REFUSED), so that no test reaches the real root.
    """
    return TestServer(zones, **options)


def _recursion_args(
    args: Sequence[str],
    forward: Sequence[str | TestServer],
    root_hints: str | os.PathLike[str] | None,
) -> list[str]:
    """
    The options for C{forward} and C{root_hints}, or C{--no-recursion} when
    neither they nor C{args} say where other names are resolved.
    """
    added: list[str] = []
    for upstream in forward:
        if isinstance(upstream, TestServer):
            host, port = upstream.udp
            upstream = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        added += ["--forward", upstream]
    if root_hints is not None:
        added += ["--root-hints", os.fspath(root_hints)]
    if not added and not chooses_recursion(args):
        added.append("--no-recursion")
    return added


DEFAULT_RECORDS: dict[str, list[str]] = {
    "@": ["A 192.0.2.1", "MX 10 mail"],
    "www": ["A 192.0.2.80", "AAAA 2001:db8::80"],
    "mail": ["A 192.0.2.25"],
}


def _write_zones(directory: Path, zones: Zones, origin: str) -> str | None:
    """
    Write C{zones} as zone files into C{directory}; return the origin of
    the zone written (its C{$ORIGIN} when it has one), or C{None} for a
    directory of zones.
    """
    if zones is None:
        zones = DEFAULT_RECORDS
    if isinstance(zones, Mapping):
        text = _zone_text(zones, origin)
    elif isinstance(zones, str) and _is_zone_text(zones):
        text = zones
    else:
        source = Path(zones)
        if source.is_dir():
            for path in source.iterdir():
                if path.is_file():
                    shutil.copy(path, directory / path.name)
            return None
        text = source.read_text(encoding="utf-8")
    found = _ORIGIN.search(text)
    if found is None:
        text = f"$ORIGIN {origin}\n{text}"
    else:
        origin = found.group(1) if found.group(1).endswith(".") else found.group(1) + "."
    text = _completed(text, origin)
    (directory / f"{origin.rstrip('.') or 'root'}.zone").write_text(text, encoding="utf-8")
    return origin


def _completed(text: str, origin: str) -> str:
    """
    Zone C{text} (starting with its C{$ORIGIN}) with a default TTL, and an
    SOA and NS at the apex, added where it has none, so that a few records
    are enough to serve.
    """
    added: list[str] = []
    if not re.search(r"^\$TTL\b", text, re.M | re.I):
        added.append("$TTL 300")
    first, _, rest = text.partition("\n")
    try:
        zone = dns.zone.from_text(
            "\n".join([first, *added, rest]), origin, relativize=False, check_origin=False
        )
        apex = zone.get_node(origin)
    except Exception:
        apex = None  # the server will say what is wrong with it
    else:
        if apex is None or apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA) is None:
            added.append(_APEX_SOA)
        if apex is None or apex.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS) is None:
            added.append(_APEX_NS)
    return "\n".join([first, *added, rest])


def _is_zone_text(zones: str) -> bool:
    """
    Whether the string C{zones} is zone text rather than a path: it has
    several lines, a directive, or (naming no file) blanks between fields.
    """
    if "\n" in zones or zones.lstrip().startswith("$"):
        return True
    return not os.path.exists(zones) and len(zones.split()) > 1


def _zone_text(records: Mapping[str, Sequence[str]], origin: str) -> str:
    lines = [f"$ORIGIN {origin}", "$TTL 300"]
    apex = [r.split(None, 1)[0].upper() for r in records.get("@", [])]
    if "SOA" not in apex:
        lines.append(_APEX_SOA)
    if "NS" not in apex:
        lines.append(_APEX_NS)
    for owner, rdatas in records.items():
        for rdata in rdatas:
            lines.append(f"{owner} {rdata}")
    return "\n".join(lines) + "\n"


def _make_certificates(
    directory: Path, name: str, expired: bool = False
) -> tuple[str, Path, Path, str]:
    """
    A throwaway CA and a leaf for C{name} signed by it; return the CA path,
    the leaf and key paths, and the leaf's SPKI pin.
    """
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = ca_certificate(ca_key, "dnstls test CA", now - day, now + 30 * day, path_length=0)
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = (now - 30 * day, now - day) if expired else (now - day, now + 30 * day)
    leaf = server_certificate(key, (name,), start, end, issuer=(ca, ca_key))
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server.key"
    write_certificates(ca_path, [ca])
    write_certificates(cert_path, [leaf])
    write_key(key_path, key)
    return str(ca_path), cert_path, key_path, spki_pin(leaf)


def _child_environment() -> dict[str, str]:
    """
    The environment of the server process: this one, with the dnstls that
    imported this module first on the path (so a source checkout tests
    itself, plugin included).
    """
    root = Path(dnstls.__file__).resolve().parent.parent
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    if (root / "twisted" / "plugins" / "dnstls_plugin.py").exists():
        existing = environment.get("PYTHONPATH")
        environment["PYTHONPATH"] = str(root) + (os.pathsep + existing if existing else "")
    return environment
