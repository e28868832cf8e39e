#!/usr/bin/env python3
"""
Hold many idle DNS-over-TLS connections open to one loopback server.

Used by bench/run to measure a server's resident memory per idle DoT
session.  Each connection makes a full TLS handshake (certificate checked
against --ca for --name), asks one query (example.test SOA) and reads its
answer, then stays open and silent.  Only the standard library is used.

Protocol with the parent, one JSON object a line on stdout:
  {"opened": N, "failed": F, "errors": {...}, "seconds": S}  once all tried
then, for each line read on stdin ("status"):
  {"alive": N}   connections the server has not closed
and on "close" or end of stdin every connection is closed and it exits.

Usage: idle_dot.py --port PORT --count N --ca CA.pem [--host 127.0.0.1]
                   [--name dns.example.test] [--sources 127.0.0.1,127.0.0.2]
                   [--concurrency 64] [--timeout 120]
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

#: example.test. SOA IN, ID 0x4242, RD=0, with its two-octet length.
_QNAME = b"\x07example\x04test\x00"
_QUERY = struct.pack("!HHHHHH", 0x4242, 0, 1, 0, 0, 0) + _QNAME + struct.pack("!HH", 6, 1)
FRAMED_QUERY = struct.pack("!H", len(_QUERY)) + _QUERY


def loopback(text: str) -> str:
    """
    C{text} if it is a loopback address, else exit: this tool never talks
    to anything but the local host.
    """
    if not ipaddress.ip_address(text).is_loopback:
        raise SystemExit(f"idle_dot: refusing non-loopback address {text}")
    return text


async def open_one(
    args: argparse.Namespace, context: ssl.SSLContext, source: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """
    One DoT connection that has answered one query.
    """
    reader, writer = await asyncio.open_connection(
        args.host,
        args.port,
        ssl=context,
        server_hostname=args.name,
        local_addr=(source, 0),
        ssl_handshake_timeout=args.timeout,
    )
    try:
        writer.write(FRAMED_QUERY)
        await writer.drain()
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        answer = await reader.readexactly(length)
        if answer[:2] != _QUERY[:2] or answer[3] & 0x0F != 0:
            raise ValueError("unexpected answer")
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def main(args: argparse.Namespace) -> int:
    """
    Open, report, hold, close.
    """
    context = ssl.create_default_context(cafile=args.ca)
    context.set_alpn_protocols(["dot"])
    sources = [loopback(s) for s in args.sources.split(",")]
    gate = asyncio.Semaphore(args.concurrency)
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    errors: collections.Counter[str] = collections.Counter()
    closed = 0

    async def watch(reader: asyncio.StreamReader) -> None:
        nonlocal closed
        try:
            await reader.read(1)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        closed += 1

    async def attempt(i: int) -> None:
        async with gate:
            try:
                pair = await asyncio.wait_for(
                    open_one(args, context, sources[i % len(sources)]), args.timeout
                )
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors[type(e).__name__ + ": " + str(e)[:80]] += 1
                return
            held.append(pair)

    started = time.monotonic()
    await asyncio.gather(*(attempt(i) for i in range(args.count)))
    watchers = [asyncio.ensure_future(watch(reader)) for reader, _ in held]
    report = {
        "opened": len(held),
        "failed": sum(errors.values()),
        "errors": dict(errors.most_common(5)),
        "seconds": round(time.monotonic() - started, 2),
    }
    print(json.dumps(report), flush=True)

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() == "status":
            await asyncio.sleep(0.2)
            print(json.dumps({"alive": len(held) - closed}), flush=True)
            continue
        break
    for _, writer in held:
        writer.close()
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    """
    The command line.
    """
    p = argparse.ArgumentParser(description="hold idle DoT connections open")
    p.add_argument("--host", default="127.0.0.1", type=loopback)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--name", default="dns.example.test")
    p.add_argument("--sources", default="127.0.0.1")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--timeout", type=float, default=120.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
