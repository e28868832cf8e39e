"""
Tests for L{dnstls.resolver.roothints}: the root hints file in its written forms.
"""

from __future__ import annotations

from pathlib import Path

import dns.name
import pytest

from dnstls.resolver.roothints import default_root_hints_path, load_root_hints, parse_root_hints

#: Hints as C{dig . NS} prints them: comments, and the class column.
DIG_OUTPUT = """\
; <<>> DiG 9.18.49 <<>> +norec @127.53.0.1 . NS
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4711
;; flags: qr aa; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 3

;; QUESTION SECTION:
;.\t\t\t\tIN\tNS

;; ANSWER SECTION:
.\t\t\t3600000\tIN\tNS\ta.root.example.
.\t\t\t3600000\tIN\tNS\tb.root.example.

;; ADDITIONAL SECTION:
a.root.example.\t\t3600000\tIN\tA\t192.0.2.1
a.root.example.\t\t3600000\tIN\tAAAA\t2001:db8::1
b.root.example.\t\t3600000\tIN\tA\t192.0.2.2

;; Query time: 0 msec
"""


def test_shipped_root_hints() -> None:
    """The shipped IANA file gives the 13 root servers, each with IPv4 and IPv6 addresses."""
    hints = load_root_hints()
    assert default_root_hints_path().name == "root.hints"
    assert len(hints.names) == 13
    a = hints.addresses_of(dns.name.from_text("a.root-servers.net."))
    assert "198.41.0.4" in a and any(":" in address for address in a)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("this is not ( a zone", "not a root hints file"),
        ("a.root. 3600 A 192.0.2.1\n", "no NS records"),
        (". 3600 NS a.root.\n", "no address for the root server a.root."),
        (". 3600 NS a.root.\na.root. 3600 A 192.0.2.1\nx. 3600 MX 1 a.\n", "does not belong"),
        (". 3600 CH NS a.root.\na.root. 3600 A 192.0.2.1\n", "line 1: class is not IN"),
        (". 3600 NS a.root.\na.root. 3600 HS A 192.0.2.1\n", "line 2: class is not IN"),
    ],
)
def test_bad_root_hints(tmp_path: Path, text: str, reason: str) -> None:
    """A bad root hints file is one line of ValueError naming the file and the fault."""
    path = tmp_path / "hints"
    path.write_text(text)
    with pytest.raises(ValueError) as raised:
        load_root_hints(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_missing_root_hints(tmp_path: Path) -> None:
    """A root hints file that cannot be read is a ValueError naming it."""
    with pytest.raises(ValueError, match="cannot read root hints"):
        load_root_hints(tmp_path / "absent")


def test_root_hints_text() -> None:
    """Hints parse from text, addresses kept in the file's order."""
    hints = parse_root_hints(". 1 NS b.x.\n. 1 NS a.x.\na.x. 1 A 192.0.2.1\nb.x. 1 AAAA 2001:db8::1\n")
    assert [n.to_text() for n in hints.names] == ["b.x.", "a.x."]
    assert hints.addresses_of(dns.name.from_text("b.x.")) == ("2001:db8::1",)


@pytest.mark.parametrize(
    "text",
    [
        ". 3600000 IN NS a.root.example.\na.root.example. 3600000 IN A 192.0.2.1\n",
        ". IN 3600000 NS a.root.example.\na.root.example. IN 3600000 A 192.0.2.1\n",
        ". 3600000 NS a.root.example.\na.root.example. 3600000 IN A 192.0.2.1\n",
        ". IN NS a.root.example.\na.root.example. IN A 192.0.2.1\n",
    ],
    ids=["ttl-class", "class-ttl", "mixed", "class-no-ttl"],
)
def test_class_column_loads(text: str) -> None:
    """Lines that write the class IN, before or after the TTL, load like lines without it."""
    hints = parse_root_hints(text)
    assert [n.to_text() for n in hints.names] == ["a.root.example."]
    assert hints.addresses_of(dns.name.from_text("a.root.example.")) == ("192.0.2.1",)


def test_dig_output_loads() -> None:
    """The output of C{dig . NS}, comments and class column included, is a root hints file."""
    hints = parse_root_hints(DIG_OUTPUT)
    assert [n.to_text() for n in hints.names] == ["a.root.example.", "b.root.example."]
    assert hints.addresses_of(dns.name.from_text("a.root.example.")) == ("192.0.2.1", "2001:db8::1")
    assert hints.addresses_of(dns.name.from_text("b.root.example.")) == ("192.0.2.2",)
