"""
A real C{twistd dnstls} reloading a large zone while it is asked questions
over UDP, TCP and DNS over TLS: the zones are read off the reactor thread,
so every query is answered from the old data until the new zone is swapped
in (issue 19 item 2).
"""

from __future__ import annotations

import signal
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from tests.support import DnstlsProcess, recv_exact
from tests.zones.test_zoneset import write

#: Records in the zone added before the reload.
RECORDS = 100_000
#: Seconds between two queries of one client.
INTERVAL = 0.05
#: Seconds a query may take before it counts as unanswered.
TIMEOUT = 2.0
NAME = "dns.example.test"


def write_large(path: Path, origin: str, records: int = RECORDS) -> Path:
    """
    Write a zone for C{origin} of C{records} A records at C{path}.
    """
    lines = [
        f"$ORIGIN {origin}",
        "$TTL 300",
        "@ SOA ns1 hostmaster 1 7200 3600 1209600 300",
        "@ NS ns1",
        "ns1 A 192.0.2.1",
    ]
    lines += [f"h{i} A 198.51.{i // 256 % 256}.{i % 256}" for i in range(records)]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Traffic:
    """
    One client's queries, sent every L{INTERVAL} seconds until stopped.

    @ivar sent: when each query was sent (monotonic), and how long its
        answer took, or C{None} when it timed out or failed.
    """

    kind: str
    server: DnstlsProcess
    context: ssl.SSLContext | None = None
    sent: list[tuple[float, float | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            start = time.monotonic()
            try:
                ok = self.ask(f"n{number}.small.test.")
            except (OSError, dns.exception.DNSException):
                ok = False
            self.sent.append((start, time.monotonic() - start if ok else None))
            time.sleep(max(0.0, INTERVAL - (time.monotonic() - start)))

    def ask(self, name: str) -> bool:
        """
        Ask C{name} over a new UDP socket or a new connection; whether the
        answer is the old data's (NXDOMAIN from small.test.).
        """
        query = dns.message.make_query(name, "A")
        if self.kind == "udp":
            host, port = self.server.address("udp")
            reply = dns.query.udp(query, host, port=port, timeout=TIMEOUT)
            return reply.rcode() == dns.rcode.NXDOMAIN
        host, port = self.server.address(self.kind)
        with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
            sock: socket.socket = raw
            if self.context is not None:
                sock = self.context.wrap_socket(raw, server_hostname=NAME)
            wire = query.to_wire()
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            (length,) = struct.unpack("!H", recv_exact(sock, 2))
            reply = dns.message.from_wire(recv_exact(sock, length))
            return reply.rcode() == dns.rcode.NXDOMAIN

    def during(self, start: float, end: float) -> list[float | None]:
        """
        The latencies of the queries sent between C{start} and C{end}.
        """
        return [latency for sent, latency in self.sent if start <= sent <= end]


def test_reload_of_a_large_zone_keeps_answering(tmp_path: Path) -> None:
    """While a SIGHUP reads a new zone of 100,000 records, UDP, TCP and DoT queries are all
    answered from the old data; once the reload is logged the new zone answers."""
    zones = tmp_path / "zones"
    zones.mkdir()
    write(zones / "small.test.zone", "small.test.")
    state = tmp_path / "state"
    server = DnstlsProcess(
        ["--zones", str(zones), "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
         "--state-dir", str(state), "--tls-name", NAME]
    )
    try:
        context = ssl.create_default_context(cafile=str(state / "dnstls-selfsigned.pem"))
        clients = [Traffic("udp", server), Traffic("tcp", server), Traffic("tls", server, context)]
        write_large(zones / "big.test.zone", "big.test.")
        threads = [threading.Thread(target=client.run, daemon=True) for client in clients]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        mark = len(server.lines)
        begun = time.monotonic()
        server.process.send_signal(signal.SIGHUP)
        deadline = begun + 120
        while not any("reload: serving " in line for line in server.lines[mark:]):
            assert time.monotonic() < deadline, "no reload logged"
            time.sleep(0.01)
        ended = time.monotonic()
        for client in clients:
            client.stop.set()
        for thread in threads:
            thread.join(TIMEOUT + 5)
        figures = {client.kind: client.during(begun, ended) for client in clients}
        report = ", ".join(
            f"{kind} {sum(x is not None for x in ls)}/{len(ls)} answered, "
            f"max {max((x for x in ls if x is not None), default=0) * 1000:.0f} ms"
            for kind, ls in figures.items()
        )
        print(f"reload took {ended - begun:.2f} s; {report}")
        for kind, latencies in figures.items():
            assert latencies, f"no {kind} query sent during the reload"
            assert None not in latencies, f"{kind}: {report}"
        assert any(
            "reload: zone big.test.: serial 1, new, loaded from" in line
            for line in server.lines[mark:]
        )
        host, port = server.address("udp")
        query = dns.message.make_query(f"h{RECORDS - 1}.big.test.", "A")
        reply = dns.query.udp(query, host, port=port, timeout=TIMEOUT)
        assert [str(r) for rrset in reply.answer for r in rrset] == ["198.51.134.159"]
    finally:
        server.stop()

