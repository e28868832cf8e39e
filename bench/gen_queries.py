#!/usr/bin/env python3
"""Generate the deterministic dnsperf query file for example.test.

Usage: gen_queries.py [COUNT] > queries.txt     (default COUNT=1000, seed 20261128)

Mix (by construction, before shuffling):
  ~55% positive answers (apex SOA/NS/A/AAAA/MX/TXT, hosts, CNAME, wildcard)
  ~10% NODATA (name exists, type does not)
  ~ 5% referral into the delegated child.example.test
  ~30% NXDOMAIN (random non-existing labels directly under example.test)
"""
import random
import sys

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
rng = random.Random(20261128)

positive = [
    ("example.test.", "SOA"), ("example.test.", "NS"), ("example.test.", "A"),
    ("example.test.", "AAAA"), ("example.test.", "MX"), ("example.test.", "TXT"),
    ("ns1.example.test.", "A"), ("ns1.example.test.", "AAAA"),
    ("ns2.example.test.", "A"), ("dns.example.test.", "A"),
    ("dns.example.test.", "AAAA"), ("www.example.test.", "A"),
    ("www.example.test.", "AAAA"), ("mail.example.test.", "A"),
    ("mail2.example.test.", "A"), ("alias.example.test.", "A"),
    ("alias.example.test.", "CNAME"), ("txt.example.test.", "TXT"),
]
nodata = [("www.example.test.", "MX"), ("mail.example.test.", "AAAA"),
          ("txt.example.test.", "A"), ("ns2.example.test.", "AAAA")]
referral = [("child.example.test.", "NS"), ("ns1.child.example.test.", "A"),
            ("host.child.example.test.", "A")]


def label(n=8):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


out = []
for _ in range(count):
    r = rng.random()
    if r < 0.45:
        out.append(rng.choice(positive))
    elif r < 0.55:
        out.append((f"{label()}.wild.example.test.", rng.choice(["A", "TXT"])))
    elif r < 0.65:
        out.append(rng.choice(nodata))
    elif r < 0.70:
        out.append(rng.choice(referral))
    else:
        out.append((f"nx-{label()}.example.test.", rng.choice(["A", "AAAA"])))

for name, qtype in out:
    print(f"{name} {qtype}")
