"""
The large-zone workloads (issue 14): a generated zone of N names and the
query files that miss any answer cache, written into the scratch directory
at run time from a fixed seed, so that every run asks the same questions.

  - the zone C{example-large.test.}: SOA, two NS, then N names, an A for
    each and an AAAA for every tenth;
  - the miss mix: 60 % A and 10 % AAAA questions for existing names, 30 %
    A questions for names that do not exist; the existing names are taken
    in a shuffled order, so a name comes back only once all have been asked;
  - the random-subdomain flood ("water torture"): A questions for
    C{<random>.example-large.test.}, every name distinct, all NXDOMAIN.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

ORIGIN = "example-large.test."
SEED = 20261214


@dataclass
class LargeFiles:
    """
    The generated zone and query files, and what they hold.
    """

    zone: Path
    miss: Path
    flood: Path
    names: int
    records: int
    miss_queries: int
    flood_queries: int
    #: a name of the zone that has an A, asked to tell when a server has loaded it
    probe_name: str


def host(i: int) -> str:
    """
    The owner name of the zone's C{i}th host: a customer-like label, unique
    by its index.
    """
    return f"h{i:x}-{(i * 2654435761) % 1000003:05x}.{ORIGIN}"


def _a(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def _aaaa(i: int) -> str:
    return f"2001:db8:{(i >> 16) & 0xFFFF:x}::{i & 0xFFFF:x}"


def write_zone(path: Path, names: int) -> int:
    """
    Write the large zone with C{names} hosts to C{path}; return the number
    of records in it.
    """
    with open(path, "w") as out:
        out.write(
            f"$ORIGIN {ORIGIN}\n$TTL 3600\n"
            f"{ORIGIN} IN SOA ns1.{ORIGIN} hostmaster.{ORIGIN} 2026121401 7200 3600 1209600 300\n"
            f"{ORIGIN} IN NS ns1.{ORIGIN}\n{ORIGIN} IN NS ns2.{ORIGIN}\n"
            f"ns1.{ORIGIN} IN A 192.0.2.53\nns2.{ORIGIN} IN A 198.51.100.53\n"
        )
        records = 5
        chunk: list[str] = []
        for i in range(names):
            name = host(i)
            chunk.append(f"{name} IN A {_a(i)}\n")
            records += 1
            if i % 10 == 0:
                chunk.append(f"{name} IN AAAA {_aaaa(i)}\n")
                records += 1
            if len(chunk) >= 10_000:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))
    return records


def _random_label(rng: random.Random) -> str:
    # 60 random bits in hex: what the floods' labels look like, and never a host() label
    return f"{rng.getrandbits(60):015x}"


def write_miss(path: Path, names: int, count: int, rng: random.Random) -> None:
    """
    The miss mix: C{count} questions, 60 % A and 10 % AAAA of existing
    names (a shuffled order, taken in turn), 30 % A of names that do not
    exist (random labels), in a shuffled order.
    """
    order = list(range(names))
    rng.shuffle(order)
    kinds = ["A"] * 6 + ["AAAA"] + ["NX"] * 3
    lines: list[str] = []
    taken = 0
    for _ in range(count):
        kind = rng.choice(kinds)
        if kind == "NX":
            lines.append(f"nx-{_random_label(rng)}.{ORIGIN} A\n")
            continue
        lines.append(f"{host(order[taken % names])} {kind}\n")
        taken += 1
    path.write_text("".join(lines))


def write_flood(path: Path, count: int, rng: random.Random) -> None:
    """
    The random-subdomain flood: C{count} distinct random names under the
    zone, A questions, all NXDOMAIN.
    """
    seen: set[str] = set()
    lines: list[str] = []
    while len(lines) < count:
        label = _random_label(rng)
        if label in seen:
            continue
        seen.add(label)
        lines.append(f"{label}.{ORIGIN} A\n")
    path.write_text("".join(lines))


def generate(directory: Path, names: int, miss_queries: int, flood_queries: int) -> LargeFiles:
    """
    Write the large zone (in C{directory}/zones, alone there, for the
    servers that load a directory) and both query files into C{directory}.
    """
    rng = random.Random(SEED)
    (directory / "zones").mkdir(parents=True, exist_ok=True)
    zone = directory / "zones" / "example-large.test.zone"
    records = write_zone(zone, names)
    miss, flood = directory / "miss.txt", directory / "flood.txt"
    write_miss(miss, names, miss_queries, rng)
    write_flood(flood, flood_queries, rng)
    return LargeFiles(
        zone=zone,
        miss=miss,
        flood=flood,
        names=names,
        records=records,
        miss_queries=miss_queries,
        flood_queries=flood_queries,
        probe_name=host(names - 1),
    )
