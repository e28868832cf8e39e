"""
The CHAOS identity names (RFC 4892) over real UDP: refused by default,
answered with C{--identity} and C{--version-string}.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from tests.support import ZONES, DnstlsProcess

IDENTITY_NAMES = ("id.server.", "hostname.bind.")
VERSION_NAMES = ("version.server.", "version.bind.")
#: Quotes, a backslash and a non-ASCII letter: text an operator may write.
IDENTITY = 'ns1 "east" \\ café'
#: Longer than one TXT string (255 octets).
VERSION = "dnstls " + "x" * 300


def ask_ch(server: DnstlsProcess, name: str, rdtype: str = "TXT") -> dns.message.Message:
    """
    Ask C{server} over UDP on 127.0.0.1 a question in class CH.
    """
    host, port = server.address("udp")
    query = dns.message.make_query(name, rdtype, rdclass=dns.rdataclass.CH)
    return dns.query.udp(query, host, port=port, timeout=3)


def txt(response: dns.message.Message) -> bytes:
    """
    The text of the one TXT record answering C{response}'s question.
    """
    assert len(response.answer) == 1
    rrset = response.answer[0]
    assert rrset.rdclass == dns.rdataclass.CH and rrset.rdtype == dns.rdatatype.TXT
    assert rrset.name == response.question[0].name
    assert len(rrset) == 1
    return b"".join(rrset[0].strings)


@pytest.fixture(scope="module")
def identified() -> Iterator[DnstlsProcess]:
    """
    dnstls with an identity and a version string.
    """
    server = DnstlsProcess(
        [
            "--zones", str(ZONES), "--listen", "127.0.0.1:0",
            "--identity", IDENTITY, "--version-string", VERSION,
        ]
    )
    yield server
    server.stop()


@pytest.mark.parametrize("name", IDENTITY_NAMES + VERSION_NAMES)
def test_refused_by_default(dnstls_server: DnstlsProcess, name: str) -> None:
    """Without --identity and --version-string every identity name is REFUSED, revealing nothing."""
    response = ask_ch(dnstls_server, name)
    assert response.rcode() == dns.rcode.REFUSED
    assert response.answer == []


@pytest.mark.parametrize("name", IDENTITY_NAMES)
def test_identity(identified: DnstlsProcess, name: str) -> None:
    """With --identity, id.server and hostname.bind CH TXT answer with it, authoritatively."""
    response = ask_ch(identified, name)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert txt(response) == IDENTITY.encode()


@pytest.mark.parametrize("name", VERSION_NAMES)
def test_version(identified: DnstlsProcess, name: str) -> None:
    """With --version-string, version.server and version.bind answer with it, whole, even past 255 octets."""
    response = ask_ch(identified, name)
    assert response.rcode() == dns.rcode.NOERROR
    assert txt(response) == VERSION.encode()


def test_name_case(identified: DnstlsProcess) -> None:
    """The identity names match in any case, and the answer keeps the question's case."""
    response = ask_ch(identified, "ID.Server.")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer[0].name.to_text() == "ID.Server."
    assert txt(response) == IDENTITY.encode()


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("authors.bind.", "TXT"),
        ("example.test.", "SOA"),
        ("www.id.server.", "TXT"),
        ("id.server.", "A"),
    ],
)
def test_other_chaos_questions_refused(identified: DnstlsProcess, name: str, rdtype: str) -> None:
    """Other CH names, and other types at the identity names, are REFUSED even with an identity set."""
    response = ask_ch(identified, name, rdtype)
    assert response.rcode() == dns.rcode.REFUSED
    assert response.answer == []
