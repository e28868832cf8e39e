"""
The fast reader of plain zone files, L{dnstls.zones.plain}: differential
tests against the exact reader (dnspython's, through
L{dnstls.zones.zonefile.load_zone_exactly}) over the zone files shipped,
generated zones and each kind of line it leaves to the exact reader.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import dns.name
import dns.zone
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.dnsbench.largezone import write_zone
from dnstls.errors import ZoneError
from dnstls.zones import zonefile
from dnstls.zones.plain import read_plain
from dnstls.zones.zonefile import (
    _states_origin,
    load_zone,
    load_zone_exactly,
    load_zone_text,
    origin_from_filename,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(
    [
        *(ROOT / "tests" / "data" / "zones").glob("*.zone"),
        *(ROOT / "zones").glob("*.zone"),
        ROOT / "bench" / "example.test.zone",
    ]
)
T = TypeVar("T")


def shape(zone: dns.zone.Zone) -> list[Any]:
    """
    Everything of C{zone} a reader decides: its origin, its nodes in order
    with their names as written, each node's rdatasets in order with class,
    type, covered type and TTL, and each rdataset's records in order with
    their class, text, wire form and comment.
    """
    out: list[Any] = [type(zone), zone.origin.to_text() if zone.origin else None]
    for name, node in zone.nodes.items():
        rdatasets = [
            (
                type(rdataset),
                rdataset.rdclass,
                rdataset.rdtype,
                rdataset.covers,
                rdataset.ttl,
                [
                    (type(rdata), rdata.to_text(), rdata.to_wire(), rdata.rdcomment)
                    for rdata in rdataset
                ],
            )
            for rdataset in node.rdatasets
        ]
        out.append((name.to_text(), [type(label) for label in name.labels], type(node), rdatasets))
    return out


def outcome(load: Callable[[], dns.zone.Zone]) -> Any:
    """
    The shape of the zone C{load} returns, or the message of its
    L{ZoneError}.
    """
    try:
        return shape(load())
    except ZoneError as e:
        return ("refused", str(e))


def both(text: str, origin: str | None = "p.test.") -> tuple[Any, Any]:
    """
    What L{load_zone_text} and the exact reader make of C{text}.
    """
    name = dns.name.from_text(origin) if origin else None
    return (
        outcome(lambda: load_zone_text(text, name, "p.zone")),
        outcome(lambda: load_zone_exactly(text, name, "p.zone")),
    )


def file_origin(path: Path, text: str) -> dns.name.Name | None:
    """
    The origin L{load_zone} gives the reader for C{path}.
    """
    return None if _states_origin(text) else origin_from_filename(path)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_shipped_zones_read_the_same(path: Path) -> None:
    """Every zone file shipped reads the same fast as exactly, names, rdatasets, TTLs and order alike."""
    text = path.read_text()
    origin = file_origin(path, text)
    exact = shape(load_zone_exactly(text, origin, str(path)))
    assert shape(load_zone(path)) == exact
    fast = read_plain(text, origin)
    if path.name == "corner.test.zone":
        # its DS record is not a type the fast reader knows
        assert fast is None
        plain_text = "".join(
            line for line in text.splitlines(True) if " DS " not in line
        )
        fast = read_plain(plain_text, origin)
        assert fast is not None
        assert shape(fast) == shape(load_zone_exactly(plain_text, origin, str(path)))
    else:
        assert fast is not None
        assert shape(fast) == exact


def test_large_zone_reads_the_same(tmp_path: Path) -> None:
    """The generated large zone (here of 3,000 names) reads plainly, and the same as exactly."""
    path = tmp_path / "example-large.test.zone"
    write_zone(path, 3000)
    text = path.read_text()
    fast = read_plain(text, None)
    assert fast is not None
    assert len(fast.nodes) == 3003
    assert shape(fast) == shape(load_zone_exactly(text, None, str(path)))


def test_reading_puts_off_full_collections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full collections are put off while a zone is read, and the collector's thresholds are as
    they were after, also after a failure."""
    seen: list[tuple[int, int, int]] = []
    real = zonefile.read_plain

    def watched(text: str, origin: dns.name.Name | None) -> object:
        seen.append(gc.get_threshold())
        return real(text, origin)

    monkeypatch.setattr(zonefile, "read_plain", watched)
    before = gc.get_threshold()
    load_zone_text(HEAD, dns.name.from_text("p.test."))
    assert gc.get_threshold() == before
    with pytest.raises(ZoneError):
        load_zone_text(HEAD + "www CNAME a\nwww A 192.0.2.1\n", dns.name.from_text("p.test."))
    assert gc.get_threshold() == before
    assert len(seen) == 2
    assert all(threshold[2] > 2**30 for threshold in seen)


HEAD = """\
$ORIGIN p.test.
$TTL 3600
@       SOA  ns1 hostmaster 1 7200 3600 1209600 300
@       NS   ns1
ns1     A    192.0.2.53
"""

#: Lines the fast reader reads itself, after L{HEAD}.
PLAIN = [
    "www A 192.0.2.1",
    "www.p.test. A 192.0.2.1",
    "WWW.P.Test. a 192.0.2.1",
    "www 300 A 192.0.2.1",
    "www IN 300 A 192.0.2.1",
    "www 300 in A 192.0.2.1",
    "www 1h30M A 192.0.2.1",
    "www 2D IN A 192.0.2.1",
    "www\tIN\tA\t192.0.2.1",
    "www A 192.0.2.1 ; a comment",
    "www A 192.0.2.1 ;",
    "www A 192.0.2.1\n    AAAA 2001:db8::1\n\tMX 10 mail",
    "www AAAA 2001:DB8:0:0::1",
    "www A 192.0.2.1\nwww AAAA 2001:db8::1\nwww A 192.0.2.2",
    "www 600 A 192.0.2.1\nwww 60 A 192.0.2.2\nwww 300 A 192.0.2.1",
    "www 600 A 192.0.2.1 ; first\nwww 60 A 192.0.2.1 ; second",
    "@ 60 SOA ns1 hostmaster 1 7200 3600 1209600 300 ; again",
    "alias CNAME www.example.\nalias CNAME www.example.",
    "mx MX 10 mail\nmx MX 20 mail.example.org.\nmx MX 10 @",
    "srv._tcp SRV 0 5 853 target.example.",
    "ptr PTR host.example.\nname DNAME target.example.",
    'txt TXT "hello world" unquoted "a;b(c)" ""',
    'txt SPF "v=spf1 -all"',
    "txt TXT (\n  one ; inside\n  two ) ; after",
    "paren ( A\n 192.0.2.7 )",
    "* A 192.0.2.99\n*.wild A 192.0.2.98\n_under.score A 192.0.2.97",
    "$TTL 1d\nlater A 192.0.2.1\n$ttl 60\nlatest A 192.0.2.1",
    "$ORIGIN sub.p.test.\nx A 192.0.2.1\n@ A 192.0.2.2\n    AAAA ::1",
    "$ORIGIN sub\nx A 192.0.2.1\n$ORIGIN p.test.\ny MX 1 x.sub",
    "; only a comment\n   ; an indented comment\n\n  \n",
    "www A 0.0.0.0\nwww A 255.255.255.255",
]


@pytest.mark.parametrize("lines", PLAIN)
def test_plain_lines(lines: str) -> None:
    """Each plain kind of line is read by the fast reader, and as the exact reader reads it."""
    text = HEAD + lines + "\n"
    assert read_plain(text, dns.name.from_text("p.test.")) is not None
    fast, exact = both(text)
    assert fast[0] != "refused"
    assert fast == exact


def test_soa_minimum_is_the_default_ttl() -> None:
    """Without $TTL the SOA's minimum is the default TTL and a TTL stated later wins (RFC 2308), read fast."""
    text = (
        "$ORIGIN p.test.\n@ SOA ns1 hostmaster 1 2 3 4 300\n@ NS ns1\nns1 A 192.0.2.1\n"
        "a 60 A 192.0.2.2\nb A 192.0.2.3\n"
    )
    zone = read_plain(text, None)
    assert zone is not None
    ttls = {name.to_text(): node.rdatasets[0].ttl for name, node in zone.nodes.items()}
    assert ttls == {"p.test.": 300, "ns1.p.test.": 300, "a.p.test.": 60, "b.p.test.": 60}
    assert shape(zone) == shape(load_zone_exactly(text, None))


#: Lines the fast reader leaves to the exact reader, after L{HEAD}: the
#: exact reader reads them or gives its message.
NOT_PLAIN = [
    "$INCLUDE other.zone",
    "$GENERATE 1-3 host$ A 192.0.2.$",
    "$UNICODE 2008",
    "esc\\065pe A 192.0.2.1",
    'txt TXT "with \\" a quote"',
    "generic TYPE1 \\# 4 c0000201",
    "type TYPE65534 \\# 1 ab",
    "ds DS 12345 13 2 " + "ab" * 32,
    "chaos CH TXT hi",
    "www ANY A 192.0.2.1",
    "www HS A 192.0.2.1",
    "www CLASS1 A 192.0.2.1",
    "www A 192.0.2.1\r",
    "bücher A 192.0.2.1",
    "www A 192.0.2.1 ; café",
    "at@sign A 192.0.2.1",
    "dollar$ A 192.0.2.1",
    '"quoted" A 192.0.2.1',
    'www "A" 192.0.2.1',
    'www A "192.0.2.1"',
    'www "300" A 192.0.2.1',
    "www A (192.0.2.1",
    "www A 192.0.2.1 )",
    'txt TXT "open',
    "$TTL ( 60 )",
    "$TTL",
    "$TTL 1x",
    "$ORIGIN",
    "$ORIGIN a b",
    "$BOGUS x",
    "outside.example. A 192.0.2.1",
    "$ORIGIN example.org.\nx A 192.0.2.1",
    "www CNAME a\nwww A 192.0.2.1",
    "www A 192.0.2.1\nwww CNAME a",
    "www CNAME a\nwww CNAME b",
    "@ SOA ns2 hostmaster 2 7200 3600 1209600 300",
    "www SOA ns1 hostmaster 1 7200 3600 1209600 300",
    "www A 010.0.0.1",
    "www A 192.0.2",
    "www A 192.0.2.256",
    "www A 192.0.2.1 192.0.2.2",
    "www AAAA 2001:db8::g",
    "www MX 65536 mail",
    "www MX mail",
    "www SRV 0 5 mail",
    "www SOA ns1 hostmaster 1 7200 3600 1209600",
    "www 4294967296 A 192.0.2.1",
    "www 1x A 192.0.2.1",
    "www NS",
    "www",
    "www. A 192.0.2.1",
    "a..b A 192.0.2.1",
    ".a A 192.0.2.1",
    ("x" * 64) + " A 192.0.2.1",
    ".".join(["abcdefghi"] * 26) + " A 192.0.2.1",
    "txt TXT " + "x" * 256,
    "www 300 IN 300 A 192.0.2.1",
    "www IN IN A 192.0.2.1",
    "www BOGUS 1",
]


@pytest.mark.parametrize("lines", NOT_PLAIN)
def test_lines_not_plain(lines: str) -> None:
    """Each kind of line the fast reader does not understand is left to the exact reader, same result."""
    text = HEAD + lines + "\n"
    assert read_plain(text, dns.name.from_text("p.test.")) is None
    fast, exact = both(text)
    assert fast == exact


@pytest.mark.parametrize(
    "text",
    [
        "www A 192.0.2.1\n" + HEAD,
        "  A 192.0.2.1\n" + HEAD.replace("$ORIGIN p.test.\n", ""),
        "$TTL 60\n$ORIGIN relative\n" + HEAD,
    ],
)
def test_without_an_origin(text: str) -> None:
    """A record before any $ORIGIN, with no origin given, is left to the exact reader, which refuses it."""
    assert read_plain(text, None) is None
    fast, exact = both(text, origin=None)
    assert fast == exact
    assert fast[0] == "refused"


def test_a_blank_owner_first_is_the_origin() -> None:
    """A record with no owner before any other is at the origin given, read fast."""
    text = "$TTL 60\n   NS ns2\n" + HEAD
    assert read_plain(text, dns.name.from_text("p.test.")) is not None
    fast, exact = both(text)
    assert fast == exact
    assert fast[0] != "refused"


def test_a_failed_check_is_read_again() -> None:
    """A zone read fast that fails a check is refused with the line the exact reader names."""
    text = HEAD + "sub NS ns.other.\nx.sub TXT hi\n"
    assert read_plain(text, dns.name.from_text("p.test.")) is not None
    fast, exact = both(text)
    assert fast == exact == (
        "refused",
        "p.zone:7: TXT at x.sub.p.test., below the zone cut sub.p.test., "
        "where only glue addresses belong",
    )


# Generated zones: each is the head above, in one of several spellings, and
# lines of records, directives and comments drawn from the lists below, so
# that owners, types and records repeat, fields are left out and spelt in
# every case, and now and then a line is one the exact reader refuses.

OWNERS = ["", "@", "www", "WWW", "www.p.test.", "Www.P.TEST.", "mail", "a.b", "*.w", "_sip._udp", "sub"]
TTLS = ["", "0", "60", "3600", "1h", "1H30m", "2d", "1W", "4294967295"]
CLASSES = ["", "IN", "in", "In"]
TARGETS = ["ns1", "mail", "@", "www.p.test.", "host.example.", "Mail.P.Test.", "x.sub"]
ADDRESSES = ["192.0.2.1", "192.0.2.2", "10.0.0.0", "255.255.255.255", "010.0.0.1"]
ADDRESSES6 = ["2001:db8::1", "2001:DB8:0::1", "::1", "::ffff:192.0.2.1", "fe80::"]
STRINGS = ['"hello"', "word", '"semi;colon (paren)"', '""', '"two" "strings"']
DIRECTIVES = ["$TTL 120", "$TTL 1d", "$ORIGIN sub.p.test.", "$ORIGIN p.test.", "; a comment", ""]
SPACES = [" ", "\t", "  ", " \t"]
COMMENTS = ["", " ; note", ";", "; (paren) \"quote\""]


def generated_zone(choose: Callable[[Sequence[T]], T], count: Callable[[int], int]) -> str:
    """
    A zone text made of the choices C{choose} makes from each list and
    C{count} (C{count(n)} picks from C{range(n)}).
    """
    space = choose(SPACES)
    lines = [
        choose(["$ORIGIN p.test.", "$ORIGIN P.TEST.", ""]),
        choose(["$TTL 3600", "$TTL 1h", ""]),
        choose(
            [
                f"@{space}SOA ns1 hostmaster 1 7200 3600 1209600 300",
                f"p.test.{space}300 IN SOA ns1.p.test. hostmaster.p.test. (\n  1 ; serial\n  2h 1h 1w 5m )",
                f"@ IN 60 SOA ns1 hostmaster 1 7200 3600 1209600 300{choose(COMMENTS)}",
            ]
        ),
        f"@{space}NS{space}ns1",
        "ns1 A 192.0.2.53",
    ]
    for _ in range(count(12)):
        kind = count(10)
        if kind == 0:
            lines.append(choose(DIRECTIVES))
            continue
        owner = choose(OWNERS)
        fields = [choose(TTLS), choose(CLASSES)]
        if count(3) == 0:
            fields.reverse()
        rdtype, rdata = choose(
            [
                ("A", choose(ADDRESSES)),
                ("AAAA", choose(ADDRESSES6)),
                ("MX", f"{count(3) * 10} {choose(TARGETS)}"),
                ("TXT", " ".join(choose(STRINGS) for _ in range(1 + count(2)))),
                ("CNAME", choose(TARGETS)),
                ("SRV", f"0 {count(3)} 853 {choose(TARGETS)}"),
                ("PTR", choose(TARGETS)),
                ("NS", choose(TARGETS)),
                ("a", choose(ADDRESSES)),
                ("Mx", f"5 {choose(TARGETS)}"),
            ]
        )
        if count(6) == 0:
            rdata = f"( {rdata.replace(' ', chr(10) + '  ', 1)} )"
        words = [owner, *(field for field in fields if field), rdtype, rdata]
        lines.append((" " if not owner else "") + space.join(words) + choose(COMMENTS))
    return "\n".join(lines) + choose(["\n", ""])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_zones(data: st.DataObject) -> None:
    """Every generated zone reads the same fast as exactly, or is refused with the same message."""
    text = generated_zone(
        lambda choices: data.draw(st.sampled_from(choices)),
        lambda n: data.draw(st.integers(min_value=0, max_value=n - 1)),
    )
    origin = data.draw(st.sampled_from(["p.test.", None]))
    fast, exact = both(text, origin)
    assert fast == exact


def test_generated_zones_are_mostly_plain() -> None:
    """Most zones the generator makes are read by the fast reader itself, so the test above tests it."""
    rng = random.Random(14)
    plain = loaded = 0
    for _ in range(200):
        text = generated_zone(rng.choice, rng.randrange)
        try:
            load_zone_exactly(text, dns.name.from_text("p.test."))
        except ZoneError:
            continue
        loaded += 1
        plain += read_plain(text, dns.name.from_text("p.test.")) is not None
    assert loaded >= 60
    assert plain >= loaded * 0.9
