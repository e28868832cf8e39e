"""
Recursion end to end: C{twistd dnstls --root-hints FILE} resolving through
the DNS tree of L{tests.dnstree} (our servers, knotd and crafted responders
on 127.53.X.Y port 53) for kdig, dnspython and the STARTTLS client, over
UDP, TCP, DNS over TLS and an upgraded TCP/53 connection; the tree servers'
query logs show what the resolver asked, and that a cached answer asks
nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator as Iterating
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from twisted.internet.testing import MemoryReactorClock

from dnstls.client import Client, TLSAuth
from dnstls.resolver.forward import DEFAULT_TIMEOUT
from dnstls.resolver.iterate import Iterator
from dnstls.resolver.roothints import default_root_hints_path, load_root_hints
from dnstls.tap import Options, answer_source
from tests.certs import make_ca, make_leaf
from tests.dnstree import PRIMED_ROOT, ROOT_ADDRESS, Tree, running_tree
from tests.support import LOCAL_ZONE, DnstlsProcess, require_tool, run_dnstls

TIMEOUT = 10.0
NAME = "dns.example.test"



@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterating[Tree]:
    """The DNS tree, for the whole module."""
    require_tool("knotd")
    with running_tree(tmp_path_factory.mktemp("tree")) as running:
        yield running


@pytest.fixture(scope="module")
def ca_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """A test CA and a leaf for dns.example.test: (CA file, certificate, key)."""
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory)
    leaf = make_leaf(ca, directory, (NAME,), stem="main")
    return str(ca.path), str(leaf.cert), str(leaf.key_path)


@pytest.fixture(scope="module")
def resolver(
    tree: Tree, ca_path: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterating[DnstlsProcess]:
    """
    A dnstls authoritative for local.test. and recursive, from the tree's
    root hints, for 127.0.0.1 only; plain DNS, DoT and STARTTLS on
    127.0.0.1.
    """
    zones = tmp_path_factory.mktemp("resolver-zones")
    (zones / "local.test.zone").write_text(LOCAL_ZONE)
    _, cert, key = ca_path
    process = DnstlsProcess([
        "--zones", str(zones),
        "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
        "--tls-cert", cert, "--tls-key", key,
        "--root-hints", str(tree.hints), "--query-loopback",
        "--allow-recursion", "127.0.0.1/32",
        "--upstream-timeout", "0.5",
    ])
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def fresh(tree: Tree) -> Tree:
    """The tree with its query logs emptied."""
    tree.clear_queries()
    return tree


def kdig(*args: str) -> str:
    done = subprocess.run(
        [require_tool("kdig"), "+timeout=5", "+retry=0", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def answer_lines(output: str) -> list[str]:
    """The records of kdig's ANSWER SECTION, without TTLs."""
    lines, inside = [], False
    for line in output.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            inside = True
        elif inside and (not line.strip() or line.startswith(";;")):
            break
        elif inside:
            owner, _ttl, rclass, rdtype, *rdata = line.split()
            lines.append(" ".join([owner, rclass, rdtype, *rdata]))
    return lines


def asked(tree: Tree) -> list[tuple[str, str, str]]:
    """Everything our tree servers received."""
    return [query for zone in tree.servers for query in tree.queries(zone)]


def ask(
    resolver: DnstlsProcess, name: str, rdtype: str = "A", source: str | None = None
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0)
    host, port = resolver.address("udp")
    return dns.query.udp(query, host, port=port, timeout=TIMEOUT, source=source)


def test_kdig_resolves_through_the_tree(resolver: DnstlsProcess, fresh: Tree) -> None:
    """kdig www.leaf.test. through our server gets the leaf zone's address, RA set, AA not."""
    host, port = resolver.address("udp")
    output = kdig(f"@{host}", "-p", str(port), "www.leaf.test.")
    assert "status: NOERROR" in output
    assert answer_lines(output) == ["www.leaf.test. IN A 192.0.2.80"]
    flags = output.split(";; Flags:")[1].split(";")[0].split()
    assert "ra" in flags and "aa" not in flags
    assert ("www.leaf.test.", "A", "udp") in fresh.queries("leaf.test.")


def test_second_query_asks_nothing(resolver: DnstlsProcess, fresh: Tree) -> None:
    """The same question again is answered from the cache: no tree server is asked anything."""
    host, port = resolver.address("udp")
    first = kdig(f"@{host}", "-p", str(port), "chain.leaf.test.")
    assert answer_lines(first) == [
        "chain.leaf.test. IN CNAME alias.leaf.test.",
        "alias.leaf.test. IN CNAME www.other.test.",
        "www.other.test. IN A 192.0.2.81",
    ]
    assert asked(fresh)
    fresh.clear_queries()
    again = kdig(f"@{host}", "-p", str(port), "chain.leaf.test.")
    assert answer_lines(again) == answer_lines(first)
    assert asked(fresh) == []


def test_nxdomain_then_cached_nxdomain(resolver: DnstlsProcess, fresh: Tree) -> None:
    """NXDOMAIN comes with the zone's SOA, and the second time from the negative cache."""
    first = ask(resolver, "nothing.leaf.test.")
    assert first.rcode() == dns.rcode.NXDOMAIN
    assert [r.name.to_text() for r in first.authority] == ["leaf.test."]
    assert fresh.queries("leaf.test.") == [("nothing.leaf.test.", "A", "udp")]
    fresh.clear_queries()
    assert ask(resolver, "nothing.leaf.test.").rcode() == dns.rcode.NXDOMAIN
    assert asked(fresh) == []


def test_client_outside_allow_recursion_refused(resolver: DnstlsProcess, fresh: Tree) -> None:
    """A client outside --allow-recursion gets REFUSED and RA=0, and nothing is asked upstream."""
    reply = ask(resolver, "www.other.test.", source="127.0.0.2")
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.RA
    assert asked(fresh) == []
    own = ask(resolver, "www.local.test.", source="127.0.0.2")
    assert own.rcode() == dns.rcode.NOERROR and own.flags & dns.flags.AA


def test_servfail_with_ede(resolver: DnstlsProcess, fresh: Tree) -> None:
    """A zone whose only server is silent gives SERVFAIL with EDE 22 (No Reachable Authority)."""
    reply = ask(resolver, "www.dead.test.")
    assert reply.rcode() == dns.rcode.SERVFAIL
    codes = [o.code for o in reply.options if isinstance(o, dns.edns.EDEOption)]
    assert codes == [dns.edns.EDECode.NO_REACHABLE_AUTHORITY]


def test_recursion_over_tcp(resolver: DnstlsProcess, fresh: Tree) -> None:
    """Recursion answers over TCP: a glueless delegation resolved for kdig +tcp."""
    host, port = resolver.address("tcp")
    output = kdig(f"@{host}", "-p", str(port), "+tcp", "www.glueless.test.")
    assert answer_lines(output) == ["www.glueless.test. IN A 192.0.2.82"]


def test_recursion_over_dot(
    resolver: DnstlsProcess, fresh: Tree, ca_path: tuple[str, str, str]
) -> None:
    """Recursion answers over DNS over TLS: a DNAME into another zone for kdig +tls."""
    host, port = resolver.address("tls")
    output = kdig(
        f"@{host}", "-p", str(port), f"+tls-ca={ca_path[0]}", f"+tls-hostname={NAME}",
        "www.old.dname.test.",
    )
    assert answer_lines(output) == [
        "old.dname.test. IN DNAME leaf.test.",
        "www.old.dname.test. IN CNAME www.leaf.test.",
        "www.leaf.test. IN A 192.0.2.80",
    ]


def test_recursion_over_starttls(
    resolver: DnstlsProcess, fresh: Tree, ca_path: tuple[str, str, str]
) -> None:
    """Recursion answers on a TCP/53 connection upgraded by the TO bit."""
    host, port = resolver.address("tcp")
    client = Client(host, port, "starttls", TLSAuth(hostname=NAME, ca_file=ca_path[0]))
    reply = client.query(dns.message.make_query("www.lame.test.", "A"))
    assert client.last_upgraded
    assert reply.rcode() == dns.rcode.NOERROR
    assert [r.to_text() for r in reply.answer[0]] == ["192.0.2.83"]


def test_server_primes_on_the_first_question(tree: Tree, tmp_path: Path) -> None:
    """A fresh server asks the hints' root server . NS before anything else, then resolves."""
    process = DnstlsProcess([
        "--zones", str(tmp_path), "--listen", "127.0.0.1:0",
        "--root-hints", str(tree.hints), "--query-loopback", "--upstream-timeout", "0.5",
    ])
    try:
        tree.clear_queries()
        host, port = process.address("udp")
        output = kdig(f"@{host}", "-p", str(port), "www.other.test.")
        assert answer_lines(output) == ["www.other.test. IN A 192.0.2.81"]
        roots = tree.queries(".") + tree.queries(PRIMED_ROOT)
        assert tree.queries(".")[0] == (".", "NS", "udp")
        assert roots.count((".", "NS", "udp")) == 1
    finally:
        process.stop()


def test_hints_made_by_dig(tree: Tree, tmp_path: Path) -> None:
    """Root hints saved from C{dig . NS} at the tree's root (class column, comments) load and serve."""
    dig = require_tool("dig")
    made = subprocess.run(
        [dig, "+norec", "+time=2", "+tries=1", f"@{ROOT_ADDRESS}", ".", "NS"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout
    assert "\tIN\tNS\t" in made and "\tIN\tA\t" in made
    hints = tmp_path / "dig.hints"
    hints.write_text(made)
    process = DnstlsProcess([
        "--zones", str(tmp_path), "--listen", "127.0.0.1:0",
        "--root-hints", str(hints), "--query-loopback", "--upstream-timeout", "0.5",
    ])
    try:
        host, port = process.address("udp")
        output = kdig(f"@{host}", "-p", str(port), "www.other.test.")
        assert answer_lines(output) == ["www.other.test. IN A 192.0.2.81"]
    finally:
        process.stop()


def test_resolver_logged_no_errors(resolver: DnstlsProcess) -> None:
    """After all of the above, the resolver has logged no traceback."""
    assert not [line for line in resolver.lines if "Traceback" in line or "Unhandled" in line]


def test_bad_root_hints_stop_the_server(tmp_path: Path) -> None:
    """An unusable --root-hints file is one line on standard error naming it, and exit status 1."""
    hints = tmp_path / "hints"
    hints.write_text(". 3600 NS a.root.\n")
    done = run_dnstls(["--listen", "127.0.0.1:0", "--root-hints", str(hints)])
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"twistd dnstls: --root-hints {hints}: no address for the root server a.root."
    ]


@pytest.mark.parametrize(
    ("args", "minimise", "timeout"),
    [([], True, DEFAULT_TIMEOUT), (["--no-qname-minimisation", "--upstream-timeout", "0.7"], False, 0.7)],
)
def test_iterator_is_the_default_source(args: list[str], minimise: bool, timeout: float) -> None:
    """Without --forward or --no-recursion answers come from iteration from IANA's root hints."""
    options = Options()
    options.parseOptions(["--listen", "127.0.0.1:0", *args])
    source = answer_source(options, MemoryReactorClock())
    assert isinstance(source, Iterator)
    assert (source.minimise, source.timeout, source.port) == (minimise, timeout, 53)
    assert source.hints == load_root_hints(default_root_hints_path())
    options = Options()
    options.parseOptions(["--listen", "127.0.0.1:0", "--no-recursion"])
    assert answer_source(options, MemoryReactorClock()) is None


def test_loopback_name_servers_not_asked_by_default(tree: Tree, tmp_path: Path) -> None:
    """Without --query-loopback, glue at 127.0.0.0/8 is not followed: SERVFAIL, the TLD never asked."""
    process = DnstlsProcess([
        "--zones", str(tmp_path), "--listen", "127.0.0.1:0",
        "--root-hints", str(tree.hints), "--upstream-timeout", "0.5",
    ])
    try:
        tree.clear_queries()
        host, port = process.address("udp")
        output = kdig(f"@{host}", "-p", str(port), "+edns", "www.leaf.test.")
        assert "status: SERVFAIL" in output
        assert "EDE: 22 (No Reachable Authority)" in output
        assert tree.queries(".")  # the root hints are the operator's: asked
        assert tree.queries("test.") == []
        assert "not asking name servers at 127.53.1.1" in process.output
    finally:
        process.stop()
