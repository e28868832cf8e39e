"""
--starttls-legacy-probe against a client that behaves on the wire as
getdns 0.5.1 does (L{tests.getdns051}): first that client's own rules,
checked against what a build of getdns 0.5.1 sent and decided, then real
dnstls servers on 127.0.0.1 with and without the switch.
"""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from tests import getdns051
from tests.support import ZONES, DnstlsProcess, require_tool

NAME = "dns.example.test"
TO = 0x4000

#: What C{getdns_query -s -R @127.0.0.1@PORT www.example.test A} (getdns
#: 0.5.1, built from the v0.5.1 tag) wrote on TCP/53 to a dnstls without
#: the switch, and what it was answered, one line a segment.
SEEN_PROBE = bytes.fromhex("0025a0c701000001000000000001085354415254544c530000100003000029ffff000000000000")
SEEN_NO_TLS = bytes.fromhex(
    "0038a0c785000001000100000001085354415254544c530000100003c00c00100003000000000007064e4f5f544c53"
    "00002904d0000000000000"
)
#: ... then, taking that for a no, the question in clear on the same connection.
SEEN_QUERY = bytes.fromhex(
    "002df9830100000100000000000103777777076578616d706c6504746573740000010001000029ffff000000000000"
)
#: ... and with C{-b 512}: the probe without OPT, and its answer.
SEEN_PROBE_NO_OPT = bytes.fromhex("001afdff01000001000000000000085354415254544c530000100003")
SEEN_NO_TLS_NO_OPT = bytes.fromhex(
    "002dfdff85000001000100000000085354415254544c530000100003c00c00100003000000000007064e4f5f544c53"
)

# getdns's rules, checked on bytes.


def test_probe_bytes_as_seen() -> None:
    """The client's probe and query are, ID for ID, the bytes getdns 0.5.1 was seen to write."""
    assert getdns051.starttls_request(0xA0C7) == SEEN_PROBE
    assert getdns051.starttls_request(0xFDFF, opt=False) == SEEN_PROBE_NO_OPT
    www = getdns051.wire_name("www.example.test")
    assert getdns051.query(0xF983, www, 1, getdns051.IN) == SEEN_QUERY


def reply(rcode: int = 0, answers: bytes = b"", ancount: int = 1, opt: bool = True) -> bytes:
    """
    A reply to the probe: the header, the question, C{answers} as given,
    then an OPT unless told otherwise.
    """
    header = struct.pack("!HHHHHH", 0xA0C7, 0x8500 | rcode, 1, ancount, 0, 1 if opt else 0)
    question = getdns051.STARTTLS + struct.pack("!HH", 16, 3)
    return header + question + answers + (bytes.fromhex("00 0029 04d0 0000 4000 0000") if opt else b"")


def txt_rr(rdata: bytes, owner: bytes = b"\xc0\x0c", rrtype: int = 16) -> bytes:
    return owner + struct.pack("!HHIH", rrtype, 3, 0, len(rdata)) + rdata


STARTTLS_TXT = b"\x08STARTTLS"

#: Replies and what getdns 0.5.1's is_starttls_response makes of them.
VERDICTS: dict[str, tuple[bytes, bool]] = {
    "TXT STARTTLS, then OPT": (reply(answers=txt_rr(STARTTLS_TXT)), True),
    "TXT starttls (case)": (reply(answers=txt_rr(b"\x08starttls")), True),
    "owner written out in lower case": (
        reply(answers=txt_rr(STARTTLS_TXT, owner=b"\x08starttls\x00")), True,
    ),
    'TXT "STARTTLS" "" without OPT': (reply(answers=txt_rr(STARTTLS_TXT + b"\x00"), opt=False), True),
    "TXT NO_TLS": (reply(answers=txt_rr(b"\x06NO_TLS")), False),
    'TXT "STARTTLS" "x"': (reply(answers=txt_rr(STARTTLS_TXT + b"\x01x")), False),
    "TXT STARTTLS, REFUSED": (reply(rcode=5, answers=txt_rr(STARTTLS_TXT)), False),
    "TXT STARTTLS, ANCOUNT 2": (
        reply(answers=txt_rr(STARTTLS_TXT) * 2, ancount=2), False,
    ),
    "no answer": (reply(ancount=0), False),
    "an A record": (reply(answers=txt_rr(b"\xc0\x00\x02\x01", rrtype=1)), False),
    "TXT owned by another name": (reply(answers=txt_rr(STARTTLS_TXT, owner=b"\x01x\x00")), False),
}


@pytest.mark.parametrize("case", list(VERDICTS))
def test_is_starttls_response(case: str) -> None:
    """
    getdns takes a reply for a yes on NOERROR, one answer, and a TXT at the query name whose RDATA,
    read as a name, is that name.
    """
    packet, verdict = VERDICTS[case]
    assert getdns051.is_starttls_response(packet) is verdict


def test_no_tls_as_seen_is_a_no() -> None:
    """The NO_TLS replies dnstls sent the real getdns 0.5.1, which then asked in clear, are a no."""
    assert not getdns051.is_starttls_response(SEEN_NO_TLS[2:])
    assert not getdns051.is_starttls_response(SEEN_NO_TLS_NO_OPT[2:])


def test_txt_starttls_last_is_undecided() -> None:
    """
    A lone TXT "STARTTLS" at the end of the reply leaves getdns reading past it, to decide on
    whatever its buffer holds.
    """
    with pytest.raises(getdns051.ReadPastEnd):
        getdns051.is_starttls_response(reply(answers=txt_rr(STARTTLS_TXT), opt=False))


# Real servers.


@pytest.fixture(scope="module")
def legacy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnstlsProcess]:
    """dnstls with --starttls-legacy-probe (policy probe)."""
    yield from start(tmp_path_factory, "--starttls-legacy-probe", "--tls-handshake-timeout", "1")


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnstlsProcess]:
    """dnstls as it starts by default: policy probe, no switch."""
    yield from start(tmp_path_factory)


def start(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[DnstlsProcess]:
    state: Path = tmp_path_factory.mktemp("state")
    process = DnstlsProcess(
        [
            "--zones", str(ZONES), "--listen", "127.0.0.1:0", "--tls-name", NAME,
            "--state-dir", str(state), *extra,
        ]
    )
    try:
        yield process
    finally:
        process.stop()


def addresses(wire: bytes) -> list[str]:
    message = dns.message.from_wire(wire)
    assert message.rcode() == dns.rcode.NOERROR
    return [rdata.to_text() for rrset in message.answer for rdata in rrset]


@pytest.mark.parametrize(
    ("auth_name", "opt"),
    [(None, True), (NAME, True), (NAME, False)],
    ids=["no name", "SNI", "SNI, -b 512 (no OPT)"],
)
def test_getdns_upgrades_with_switch(legacy_server: DnstlsProcess, auth_name: str | None, opt: bool) -> None:
    """
    With --starttls-legacy-probe, getdns's probe is answered so that getdns starts TLS 1.2, and its
    queries are answered inside TLS.
    """
    client = getdns051.Getdns051(legacy_server.address("tcp"), auth_name=auth_name, opt=opt)
    try:
        assert client.starttls()
        reply = dns.message.from_wire(client.probe_reply)
        assert [s for rrset in reply.answer for rdata in rrset for s in rdata.strings][0] == b"STARTTLS"
        if opt:
            assert reply.ednsflags == TO
        assert client.sock.version() == "TLSv1.2"  # type: ignore[union-attr]
        assert addresses(client.ask("www.example.test", 1)) == ["192.0.2.80"]
        assert addresses(client.ask("mail.example.test", 1)) == ["192.0.2.25"]
    finally:
        client.close()


@pytest.mark.parametrize("opt", [True, False], ids=["OPT", "-b 512 (no OPT)"])
def test_getdns_stays_clear_by_default(default_server: DnstlsProcess, opt: bool) -> None:
    """
    Without the switch, getdns's probe gets the NO_TLS reply as before, byte for byte, and getdns's
    queries are answered in clear on the same connection.
    """
    client = getdns051.Getdns051(default_server.address("tcp"), auth_name=NAME, opt=opt)
    try:
        assert not client.starttls(ident=0xA0C7 if opt else 0xFDFF)
        assert client.probe_reply == (SEEN_NO_TLS if opt else SEEN_NO_TLS_NO_OPT)[2:]
        assert addresses(client.ask("www.example.test", 1)) == ["192.0.2.80"]
    finally:
        client.close()


def test_getdns_probe_second_not_upgraded(legacy_server: DnstlsProcess) -> None:
    """With the switch, getdns's probe as the second query on a connection is a no; it stays clear."""
    client = getdns051.Getdns051(legacy_server.address("tcp"))
    try:
        assert addresses(client.ask("www.example.test", 1)) == ["192.0.2.80"]
        assert not client.starttls()
        assert addresses(client.ask("mail.example.test", 1)) == ["192.0.2.25"]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("edns", "text"), [([], '"STARTTLS" ""'), (["+edns"], '"STARTTLS"')], ids=["no OPT", "+edns"]
)
def test_kdig_probe_with_switch(legacy_server: DnstlsProcess, edns: list[str], text: str) -> None:
    """
    With the switch, kdig +tcp asking STARTTLS CH TXT (without TO) gets its answer in clear, with
    the empty second string when it sent no OPT: the cost of the switch is only that the connection
    then waits for TLS.
    """
    host, port = legacy_server.address("tcp")
    kdig = require_tool("kdig")
    result = subprocess.run(
        [
            kdig, f"@{host}", "-p", str(port), "+tcp", "+time=3", "+retry=0", *edns,
            "STARTTLS", "CH", "TXT",
        ],
        capture_output=True, text=True, timeout=15, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer = re.search(r"^starttls\.\s+0\s+CH\s+TXT\s+(.*)$", result.stdout, re.MULTILINE | re.IGNORECASE)
    assert answer is not None, result.stdout
    assert answer.group(1) == text
