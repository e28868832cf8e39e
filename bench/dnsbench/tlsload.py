"""
A load generator for DNS over TLS, on port 853 or on a TCP/53 connection
upgraded by the TO bit (dnsperf cannot upgrade), so that the two rates come
from one tool.

Each of C{--clients} connections: connects; with C{--starttls} sends the
probe C{STARTTLS. CH TXT} with TO=1 (README, "The STARTTLS upgrade") and
checks the clear-text reply grants it; makes the TLS handshake with
Python's ssl module (the certificate checked against C{--ca} for
C{--name}); then keeps C{--outstanding} queries of the hot query file in
flight (the total, split among the connections, as dnsperf C{-q}), sending
one more for each answer, until C{--seconds} have passed.  One JSON line
on standard output: answers, rate, response codes, handshake time, errors,
the CPU time of the server (C{--pid}) and its own over the measured window.
The standard library and L{dnsbench.procfs} only; loopback addresses only.

  python -m dnsbench.tlsload --port P --ca CA.pem --queries queries.txt
      [--starttls] [--clients 8] [--outstanding 64] [--seconds 10] [--pid PID]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ipaddress
import json
import resource
import ssl
import struct
import sys
import time

from dnsbench.procfs import cpu_seconds

#: the upgrade probe, length prefix included: ID 0x1234, RD=0, STARTTLS. CH TXT, OPT TO=1
PROBE = bytes.fromhex("0025123400000001000000000001085354415254544c53000010000300002904d0000040000000")
TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def framed_queries(path: str) -> list[bytes]:
    """
    The queries of a dnsperf query file (C{NAME TYPE} a line), each in
    wire form with its two-octet length, RD=0, ID 0 (set when sent).
    """
    out = []
    with open(path) as lines:
        for line in lines:
            parts = line.split()
            if len(parts) < 2 or parts[0].startswith(";"):
                continue
            labels = parts[0].rstrip(".").encode().split(b".")
            qname = b"".join(bytes([len(p)]) + p for p in labels if p) + b"\0"
            query = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 0) + qname + struct.pack("!HH", TYPES[parts[1]], 1)
            out.append(struct.pack("!H", len(query)) + query)
    if not out:
        raise SystemExit(f"tlsload: no queries in {path}")
    return out


def granted(reply: bytes) -> bool:
    """
    Whether the clear-text reply to the probe grants the upgrade: RCODE 0,
    an answer, the TXT C{"STARTTLS"} (not C{"NO_TLS"}), and TO=1 in its OPT.
    """
    if len(reply) < 12 or reply[:2] != PROBE[2:4] or reply[3] & 0x0F or not reply[7]:
        return False
    rest = reply[26:]  # after the header and the question (STARTTLS. CH TXT)
    return b"\x08STARTTLS" in rest and b"NO_TLS" not in rest and b"\x00\x00\x29" in rest and _to_bit(rest)


def _to_bit(rest: bytes) -> bool:
    # the OPT record: root name, type 41, class (payload), TTL whose low 16 bits are the flags
    at = rest.rfind(b"\x00\x00\x29")
    return at >= 0 and len(rest) >= at + 9 and bool(rest[at + 7] & 0x40)


class Counts:
    """
    What the connections have counted so far.
    """

    def __init__(self) -> None:
        self.answers = 0
        self.rcodes: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.handshake_s: list[float] = []
        self.running = True


async def one_connection(
    args: argparse.Namespace,
    context: ssl.SSLContext,
    queries: list[bytes],
    first: int,
    window: int,
    c: Counts,
) -> None:
    """
    One connection: open it (upgraded or straight to TLS), then keep
    C{window} queries in flight until the run ends.
    """
    began = time.monotonic()
    try:
        if args.starttls:
            reader, writer = await asyncio.open_connection(args.host, args.port)
            writer.write(PROBE)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            if not granted(await reader.readexactly(length)):
                raise ValueError("upgrade not granted")
            await writer.start_tls(context, server_hostname=args.name)
        else:
            reader, writer = await asyncio.open_connection(
                args.host, args.port, ssl=context, server_hostname=args.name
            )
    except (OSError, ssl.SSLError, ValueError, asyncio.IncompleteReadError) as e:
        c.errors[f"connect: {type(e).__name__}: {e}"] += 1
        return
    c.handshake_s.append(time.monotonic() - began)
    n, qid = len(queries), first
    buffer = b""

    def batch(count: int) -> bytes:
        nonlocal qid
        parts = []
        for _ in range(count):
            q = queries[qid % n]
            parts.append(q[:2] + struct.pack("!H", qid & 0xFFFF) + q[4:])
            qid += 1
        return b"".join(parts)

    try:
        writer.write(batch(window))
        while c.running:
            data = await reader.read(65536)
            if not data:
                c.errors["closed by the server"] += 1
                break
            buffer += data
            done, at = 0, 0
            while len(buffer) - at >= 2:
                (length,) = struct.unpack_from("!H", buffer, at)
                if len(buffer) - at - 2 < length:
                    break
                c.rcodes[RCODES.get(buffer[at + 5] & 0x0F, str(buffer[at + 5] & 0x0F))] += 1
                at += 2 + length
                done += 1
            buffer = buffer[at:]
            c.answers += done
            if done and c.running:
                writer.write(batch(done))
                await writer.drain()
    except (OSError, ssl.SSLError) as e:
        c.errors[f"{type(e).__name__}: {e}"] += 1
    finally:
        writer.close()


async def main(args: argparse.Namespace) -> dict[str, object]:
    """
    Run the load and return what it counted.
    """
    if not ipaddress.ip_address(args.host).is_loopback:
        raise SystemExit(f"tlsload: refusing non-loopback address {args.host}")
    context = ssl.create_default_context(cafile=args.ca)
    context.set_alpn_protocols(["dot"])
    queries = framed_queries(args.queries)
    c = Counts()
    windows = [
        args.outstanding // args.clients + (i < args.outstanding % args.clients) for i in range(args.clients)
    ]
    step = len(queries) // args.clients
    tasks = [
        asyncio.create_task(one_connection(args, context, queries, i * step, max(1, w), c))
        for i, w in enumerate(windows)
    ]
    # the clock starts once every connection is open (or failed)
    while len(c.handshake_s) + sum(c.errors.values()) < args.clients:
        await asyncio.sleep(0.005)
    began, start_answers = time.monotonic(), c.answers
    server_before, own_before = cpu_seconds(args.pid), _own_cpu()
    await asyncio.sleep(args.seconds)
    c.running = False
    run_s = time.monotonic() - began
    answers = c.answers - start_answers
    server_after, own_after = cpu_seconds(args.pid), _own_cpu()
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=5)
    shakes = sorted(c.handshake_s)
    server_s = (
        server_after - server_before if server_before is not None and server_after is not None else None
    )
    return {
        "answers": answers,
        "seconds": run_s,
        "server_cpu_s": server_s,
        "cpu_s": own_after - own_before,
        "qps": answers / run_s if run_s else 0.0,
        "connections": len(shakes),
        "handshake_ms": 1000 * shakes[len(shakes) // 2] if shakes else None,
        "rcodes": dict(c.rcodes),
        "errors": dict(c.errors),
    }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parse(argv: list[str]) -> argparse.Namespace:
    """
    The options (see the module docstring).
    """
    p = argparse.ArgumentParser(prog="tlsload", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--name", default="dns.example.test")
    p.add_argument("--queries", required=True)
    p.add_argument("--starttls", action="store_true", help="connect in clear and upgrade with the TO bit")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--outstanding", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--pid", type=int, help="the server's process, whose CPU time over the run is reported")
    return p.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse(sys.argv[1:])))), flush=True)
