"""
A small DNS tree on loopback for the iterative resolver's tests: each
authoritative server on its own address 127.53.X.Y, port 53, and a root
hints file that points at its root.

    .                   127.53.0.1   dnstls   root, refers test. and example.; the only
                                              root server the hints name (a.root-servers.test.)
    . (primed)          127.53.0.2   dnstls   the same root zone, b.root-servers.test.: named
                                              only by the root's own NS set (priming finds it)
    (hints root)        127.53.0.3   a crafted root for other hints: refers test. but
                                     answers SERVFAIL to the priming query . NS
    test.               127.53.1.1   dnstls   the TLD of the cases below
    example.            127.53.1.2   dnstls   a second TLD: glueless servers' names
    leaf.test.          127.53.2.1   dnstls   www, a CNAME into other.test.
    other.test. and     127.53.3.1   knotd    other.test., glueless.test. (servers named in
      friends                                 example.), dname.test. (DNAME to leaf.test.),
                                              lame.test., silent.test., sub.poison.test.,
                                              upward.test.
    tc.test.            127.53.4.1   dnstls   answers every UDP query with TC=1
    poison.test.        127.53.6.1   a crafted responder: a referral for
                                     sub.poison.test. whose additional section
                                     carries out-of-bailiwick addresses; also
                                     named for upward.test., where it is lame
                                     (refers up to test.)
    (silent)            127.53.9.9   a UDP socket that reads and never answers
    (unreachable)       127.53.99.99 nothing listens: ICMP port unreachable
    (trap)              127.53.66.66 the poisoned glue's address: a UDP socket that
                                     only counts what arrives

lame.test. is delegated to the leaf server (which refuses it: lame) and to
knotd; silent.test. to the silent address and to knotd; dead.test. only to
the silent address; unreachable.test. only to the unreachable one; fan.test. to ten
glueless names in example. that do not exist (the NXNS fan-out); zero.test.
(knotd) to ns1.zero.test., whose glue has TTL 0; fleeting.test. (knotd) to
ns1.fleeting.example., glueless, whose address has TTL 0.

The servers are started in parallel; L{running_tree} takes one to five
seconds, with the machine's load.  Binding port 53 on 127.53.X.Y needs root:
without it L{running_tree} fails loudly.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from dnstls.testing import TestServer, start_server
from tests.support import KnotProcess

ROOT_ADDRESS = "127.53.0.1"
#: the second root server, which only priming (the root's NS set) reveals
PRIMED_ROOT_ADDRESS = "127.53.0.2"
#: a root that refers test. but fails priming (SERVFAIL to . NS)
UNPRIMED_ROOT_ADDRESS = "127.53.0.3"
TEST_ADDRESS = "127.53.1.1"
EXAMPLE_ADDRESS = "127.53.1.2"
LEAF_ADDRESS = "127.53.2.1"
KNOT_ADDRESS = "127.53.3.1"
TC_ADDRESS = "127.53.4.1"
POISON_ADDRESS = "127.53.6.1"
SILENT_ADDRESS = "127.53.9.9"
TRAP_ADDRESS = "127.53.66.66"
#: nothing listens here: a query gets ICMP port unreachable
UNREACHABLE_ADDRESS = "127.53.99.99"
#: the address the poisoned referral gives for its out-of-bailiwick server
#: name, and the address of www.leaf.test. it slips in besides
POISONED_LEAF = "192.0.2.66"

#: The name whose server (the poison.test. one) answers FORMERR to EDNS.
NO_EDNS = dns.name.from_text("noedns.poison.test.")

#: The poison.test. server answers SERVFAIL for this name, the address
#: 192.0.2.89 for any name below it.
BROKEN = dns.name.from_text("x.broken.poison.test.")

#: The zone the poison.test. server is named for but lame: it refers upward.
UPWARD = dns.name.from_text("upward.test.")

#: The poison.test. server answers this name with its address and, besides,
#: an address for its own name server ns1.poison.test. (the trap's): an
#: answer record off the chain asked about.
EXTRA = dns.name.from_text("extra.poison.test.")

#: The poison.test. server answers RRSIG queries for this name with an RRSIG.
SIGNED = dns.name.from_text("signed.poison.test.")

#: The poison.test. server answers A queries for this name with the
#: question and the answer's owner in capitals (as 0x20 would).
CAPITALS = dns.name.from_text("capitals.poison.test.")

#: The poison.test. server answers NXDOMAIN for this empty non-terminal
#: (wrongly), and the address 192.0.2.94 for names below it.
EMPTY_NON_TERMINAL = dns.name.from_text("ent.poison.test.")

#: The poison.test. server holds a DNAME here to L{LONG_TARGET}, and
#: answers YXDOMAIN for names below it (every one overflows).
LONG_DNAME = dns.name.from_text("long.poison.test.")
LONG_TARGET = dns.name.from_text(".".join(c * 63 for c in "xyz") + ".test.")

#: The key of the second root server (127.53.0.2) in L{Tree.servers}.
PRIMED_ROOT = "root (primed)"

#: The number of glueless server names of fan.test.
FAN_OUT = 10

SOA = "SOA ns1.nic.test. hostmaster.nic.test. 1 7200 3600 1209600 300"

ROOT_ZONE = f"""\
$ORIGIN .
$TTL 86400
@                       {SOA}
@                       NS      a.root-servers.test.
@                       NS      b.root-servers.test.
test.                   NS      ns1.nic.test.
example.                NS      ns1.nic.example.
a.root-servers.test.    A       {ROOT_ADDRESS}
b.root-servers.test.    A       {PRIMED_ROOT_ADDRESS}
ns1.nic.test.           A       {TEST_ADDRESS}
ns1.nic.example.        A       {EXAMPLE_ADDRESS}
"""

TEST_ZONE = f"""\
$ORIGIN test.
$TTL 86400
@               {SOA}
@               NS      ns1.nic
ns1.nic         A       {TEST_ADDRESS}
a.root-servers  A       {ROOT_ADDRESS}
b.root-servers  A       {PRIMED_ROOT_ADDRESS}
leaf            NS      ns1.leaf
ns1.leaf        A       {LEAF_ADDRESS}
other           NS      ns1.other
ns1.other       A       {KNOT_ADDRESS}
dname           NS      ns1.other
glueless        NS      ns1.hosting.example.
glueless        NS      ns2.hosting.example.
lame            NS      ns1.lame
lame            NS      ns2.lame
ns1.lame        A       {LEAF_ADDRESS}
ns2.lame        A       {KNOT_ADDRESS}
silent          NS      ns1.silent
silent          NS      ns2.silent
ns1.silent      A       {SILENT_ADDRESS}
ns2.silent      A       {KNOT_ADDRESS}
tc              NS      ns1.tc
ns1.tc          A       {TC_ADDRESS}
poison          NS      ns1.poison
ns1.poison      A       {POISON_ADDRESS}
upward          NS      ns1.poison
upward          NS      ns2.upward
ns2.upward      A       {KNOT_ADDRESS}
dead            NS      ns1.dead
ns1.dead        A       {SILENT_ADDRESS}
unreachable     NS      ns1.unreachable
ns1.unreachable A       {UNREACHABLE_ADDRESS}
zero            NS      ns1.zero
ns1.zero        0 A     {KNOT_ADDRESS}
fleeting        NS      ns1.fleeting.example.
""" + "".join(f"fan             NS      f{i}.example.\n" for i in range(FAN_OUT))

EXAMPLE_ZONE = f"""\
$ORIGIN example.
$TTL 86400
@               {SOA}
@               NS      ns1.nic
ns1.nic         A       {EXAMPLE_ADDRESS}
ns1.hosting     A       {KNOT_ADDRESS}
ns2.hosting     A       {KNOT_ADDRESS}
ns.victim       A       {KNOT_ADDRESS}
ns1.fleeting    0 A     {KNOT_ADDRESS}
"""

LEAF_ZONE = f"""\
$ORIGIN leaf.test.
$TTL 3600
@               {SOA}
@               NS      ns1
ns1             A       {LEAF_ADDRESS}
www             A       192.0.2.80
alias           CNAME   www.other.test.
chain           CNAME   alias
deep.a.b.c.d.e.f  A     192.0.2.90
"""

TC_ZONE = f"""\
$ORIGIN tc.test.
$TTL 3600
@               {SOA}
@               NS      ns1
ns1             A       {TC_ADDRESS}
""" + "".join(f"big             TXT     \"record {i:02d} {'x' * 60}\"\n" for i in range(20))

#: knotd's zones: origin -> text.
KNOT_ZONES = {
    "other.test.": f"""\
$ORIGIN other.test.
$TTL 3600
@       {SOA}
@       NS      ns1
ns1     A       {KNOT_ADDRESS}
www     A       192.0.2.81
""",
    "glueless.test.": f"""\
$ORIGIN glueless.test.
$TTL 3600
@       {SOA}
@       NS      ns1.hosting.example.
@       NS      ns2.hosting.example.
www     A       192.0.2.82
""",
    "dname.test.": f"""\
$ORIGIN dname.test.
$TTL 3600
@       {SOA}
@       NS      ns1.other.test.
old     DNAME   leaf.test.
""",
    "lame.test.": f"""\
$ORIGIN lame.test.
$TTL 3600
@       {SOA}
@       NS      ns1
@       NS      ns2
ns1     A       {LEAF_ADDRESS}
ns2     A       {KNOT_ADDRESS}
www     A       192.0.2.83
""",
    "silent.test.": f"""\
$ORIGIN silent.test.
$TTL 3600
@       {SOA}
@       NS      ns1
@       NS      ns2
ns1     A       {SILENT_ADDRESS}
ns2     A       {KNOT_ADDRESS}
www     A       192.0.2.84
""",
    "upward.test.": f"""\
$ORIGIN upward.test.
$TTL 3600
@       {SOA}
@       NS      ns1.poison.test.
@       NS      ns2
ns2     A       {KNOT_ADDRESS}
www     A       192.0.2.88
""",
    "fleeting.test.": f"""\
$ORIGIN fleeting.test.
$TTL 3600
@       {SOA}
@       NS      ns1.fleeting.example.
deep.a.b.c.d.e  A   192.0.2.95
""",
    "zero.test.": f"""\
$ORIGIN zero.test.
$TTL 3600
@       {SOA}
@       NS      ns1
ns1     A       {KNOT_ADDRESS}
www     A       192.0.2.92
""",
    "sub.poison.test.": f"""\
$ORIGIN sub.poison.test.
$TTL 3600
@       {SOA}
@       NS      ns.victim.example.
www     A       192.0.2.85
""",
}


class _Listener:
    """
    A UDP socket on port 53 of C{address} served by a thread: C{respond}
    makes the reply to each query (or C{None} for none), and every query is
    kept in C{queries}.
    """

    def __init__(
        self,
        address: str,
        respond: Callable[[dns.message.Message], dns.message.Message | None] | None,
    ) -> None:
        self.address = address
        self.respond = respond
        self.queries: list[dns.message.Message] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((address, 53))
        except OSError as e:
            self.sock.close()
            raise RuntimeError(
                f"cannot bind {address}:53 for the DNS tree ({e}); it needs root "
                "or CAP_NET_BIND_SERVICE"
            ) from None
        self.sock.settimeout(0.2)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            self.queries.append(query)
            if self.respond is not None:
                reply = self.respond(query)
                if reply is not None:
                    self.sock.sendto(reply.to_wire(), peer)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(2)
        self.sock.close()


def poisoned_referral(query: dns.message.Message) -> dns.message.Message:
    """
    What the poison.test. server says: for names at or below
    sub.poison.test. a referral to ns.victim.example. whose additional
    section gives that name (outside poison.test.) the trap address and
    www.leaf.test. a false address; for L{NO_EDNS}, FORMERR to a query
    with EDNS and the address 192.0.2.87 to one without; for names in
    L{UPWARD} a referral up to test. (lame); NXDOMAIN for
    L{EMPTY_NON_TERMINAL} and addresses below it; YXDOMAIN and the DNAME
    for names below L{LONG_DNAME}; an RRSIG for L{SIGNED}; an
    address for L{CAPITALS}, in capitals; for L{EXTRA} its address and
    the trap's address for ns1.poison.test.; SERVFAIL for L{BROKEN} and an
    address for names below it (a server that mishandles minimised names);
    NXDOMAIN for anything else.
    """
    question = query.question[0]
    sub = dns.name.from_text("sub.poison.test.")
    zone = dns.name.from_text("poison.test.")
    if question.name == NO_EDNS and query.edns >= 0:
        # a server from before EDNS: FORMERR, and no OPT
        refused = dns.message.make_response(query)
        refused.use_edns(False)
        refused.set_rcode(dns.rcode.FORMERR)
        return refused
    reply = dns.message.make_response(query)
    reply.flags &= ~dns.flags.RA
    if question.name.is_subdomain(UPWARD):
        # lame for upward.test.: a referral up to test.
        reply.authority.append(dns.rrset.from_text("test.", 3600, "IN", "NS", "ns1.nic.test."))
        return reply
    if question.name == BROKEN:
        # this server cannot answer a minimised name here
        reply.set_rcode(dns.rcode.SERVFAIL)
        return reply
    if question.name.is_subdomain(BROKEN):
        reply.flags |= dns.flags.AA
        reply.answer.append(dns.rrset.from_text(question.name, 3600, "IN", "A", "192.0.2.89"))
        return reply
    if question.name == SIGNED and question.rdtype == dns.rdatatype.RRSIG:
        reply.flags |= dns.flags.AA
        reply.answer.append(dns.rrset.from_text(
            SIGNED, 3600, "IN", "RRSIG",
            "A 13 3 3600 20300101000000 20200101000000 12345 poison.test. "
            "dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ==",
        ))
        return reply
    if question.name == CAPITALS:
        reply.flags |= dns.flags.AA
        upper = dns.name.from_text(CAPITALS.to_text().upper())
        reply.question[0] = dns.rrset.RRset(upper, question.rdclass, question.rdtype)
        reply.answer.append(dns.rrset.from_text(upper, 3600, "IN", "A", "192.0.2.93"))
        return reply
    if question.name == EXTRA:
        # an answer with a record for another name of the zone slipped in
        reply.flags |= dns.flags.AA
        reply.answer.append(dns.rrset.from_text(EXTRA, 3600, "IN", "A", "192.0.2.91"))
        reply.answer.append(
            dns.rrset.from_text("ns1.poison.test.", 3600, "IN", "A", TRAP_ADDRESS)
        )
        return reply
    if question.name == EMPTY_NON_TERMINAL:
        # a server that denies an empty non-terminal
        reply.flags |= dns.flags.AA
        reply.set_rcode(dns.rcode.NXDOMAIN)
        reply.authority.append(dns.rrset.from_text(zone, 300, "IN", *SOA.split(None, 1)))
        return reply
    if question.name.is_subdomain(EMPTY_NON_TERMINAL):
        reply.flags |= dns.flags.AA
        reply.answer.append(dns.rrset.from_text(question.name, 3600, "IN", "A", "192.0.2.94"))
        return reply
    if question.name.is_subdomain(LONG_DNAME):
        reply.flags |= dns.flags.AA
        if question.name == LONG_DNAME:
            reply.authority.append(dns.rrset.from_text(zone, 300, "IN", *SOA.split(None, 1)))
            return reply
        reply.set_rcode(dns.rcode.YXDOMAIN)
        reply.answer.append(
            dns.rrset.from_text(LONG_DNAME, 3600, "IN", "DNAME", LONG_TARGET.to_text())
        )
        return reply
    if question.name == NO_EDNS:
        reply.flags |= dns.flags.AA
        reply.answer.append(dns.rrset.from_text(NO_EDNS, 3600, "IN", "A", "192.0.2.87"))
        return reply
    if question.name.is_subdomain(sub):
        reply.authority.append(
            dns.rrset.from_text(sub, 3600, "IN", "NS", "ns.victim.example.")
        )
        reply.additional.append(
            dns.rrset.from_text("ns.victim.example.", 3600, "IN", "A", TRAP_ADDRESS)
        )
        reply.additional.append(
            dns.rrset.from_text("www.leaf.test.", 3600, "IN", "A", POISONED_LEAF)
        )
        return reply
    reply.flags |= dns.flags.AA
    if question.name == zone and question.rdtype == dns.rdatatype.NS:
        reply.answer.append(dns.rrset.from_text(zone, 3600, "IN", "NS", "ns1.poison.test."))
        return reply
    exists = BROKEN.is_subdomain(question.name)
    reply.set_rcode(dns.rcode.NOERROR if exists else dns.rcode.NXDOMAIN)
    reply.authority.append(dns.rrset.from_text(zone, 300, "IN", *SOA.split(None, 1)))
    return reply


def unprimed_root(query: dns.message.Message) -> dns.message.Message:
    """
    What the crafted root at L{UNPRIMED_ROOT_ADDRESS} says: SERVFAIL to
    the priming query (C{. NS}), a referral to test. (with its glue) for
    names in test., REFUSED for anything else.
    """
    question = query.question[0]
    reply = dns.message.make_response(query)
    reply.flags &= ~dns.flags.RA
    test = dns.name.from_text("test.")
    if question.name.is_subdomain(test):
        reply.authority.append(dns.rrset.from_text(test, 86400, "IN", "NS", "ns1.nic.test."))
        reply.additional.append(
            dns.rrset.from_text("ns1.nic.test.", 86400, "IN", "A", TEST_ADDRESS)
        )
        return reply
    reply.set_rcode(dns.rcode.SERVFAIL if question.name == dns.name.root else dns.rcode.REFUSED)
    return reply


@dataclass
class Tree:
    """
    The running tree.

    @ivar hints: the root hints file that points at its root.
    @ivar unprimed_hints: root hints naming the silent address and the
        crafted root that fails priming.
    @ivar servers: our servers by zone (C{"."}, C{"test."}, C{"example."},
        C{"leaf.test."}, C{"tc.test."}; the second root server is
        L{PRIMED_ROOT}), with their query logs.
    @ivar knot: the Knot DNS serving L{KNOT_ZONES}.
    @ivar silent: the socket that never answers.
    @ivar trap: the socket at the poisoned glue's address.
    @ivar poison: the crafted poison.test. server.
    @ivar unprimed: the crafted root that fails priming.
    """

    hints: Path
    unprimed_hints: Path
    servers: dict[str, TestServer] = field(default_factory=dict)
    knot: KnotProcess | None = None
    silent: _Listener | None = None
    trap: _Listener | None = None
    poison: _Listener | None = None
    unprimed: _Listener | None = None

    def clear_queries(self) -> None:
        """
        Forget what every server has received so far.
        """
        for server in self.servers.values():
            server.clear_queries()
        for listener in (self.silent, self.trap, self.poison, self.unprimed):
            if listener is not None:
                listener.queries.clear()

    def queries(self, zone: str) -> list[tuple[str, str, str]]:
        """
        What our server for C{zone} received, oldest first: (name
        lower-cased, type, transport).
        """
        return [
            (q["name"].lower(), q["type"], q["transport"]) for q in self.servers[zone].queries()
        ]

    def stop(self) -> None:
        """
        Stop every server, even when stopping one of them fails.
        """
        stops: list[Callable[[], None]] = [server.stop for server in self.servers.values()]
        if self.knot is not None:
            stops.append(self.knot.stop)
        for listener in (self.silent, self.trap, self.poison, self.unprimed):
            if listener is not None:
                stops.append(listener.stop)
        errors = []
        for stop in stops:
            try:
                stop()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]


def write_hints(directory: Path) -> Path:
    """
    A root hints file for the tree's root, in C{directory}: it names
    a.root-servers.test. only, not b.root-servers.test.
    """
    path = directory / "root.hints"
    path.write_text(
        ".                       3600000 NS  a.root-servers.test.\n"
        f"a.root-servers.test.    3600000 A   {ROOT_ADDRESS}\n"
    )
    return path


def write_unprimed_hints(directory: Path) -> Path:
    """
    Root hints, in C{directory}, naming a silent root server
    (a.hints.test.) and the crafted root that fails priming
    (b.hints.test.).
    """
    path = directory / "unprimed.hints"
    path.write_text(
        ".                       3600000 NS  a.hints.test.\n"
        ".                       3600000 NS  b.hints.test.\n"
        f"a.hints.test.           3600000 A   {SILENT_ADDRESS}\n"
        f"b.hints.test.           3600000 A   {UNPRIMED_ROOT_ADDRESS}\n"
    )
    return path


def _ours(directory: Path, name: str, text: str, address: str, **options: Any) -> TestServer:
    zones = directory / name
    zones.mkdir()
    origin = text.split()[1]
    (zones / f"{origin.rstrip('.') or 'root'}.zone").write_text(text)
    return start_server(zones, args=["--listen", f"{address}:53"], **options)


@contextmanager
def running_tree(directory: Path) -> Iterator[Tree]:
    """
    Start the tree (files under C{directory}), and stop it after.
    """
    if os.geteuid() != 0:
        raise RuntimeError("the DNS tree binds port 53 on 127.53.X.Y: run the tests as root")
    tree = Tree(write_hints(directory), write_unprimed_hints(directory))
    ours = {
        ".": (ROOT_ZONE, ROOT_ADDRESS, {}),
        PRIMED_ROOT: (ROOT_ZONE, PRIMED_ROOT_ADDRESS, {}),
        "test.": (TEST_ZONE, TEST_ADDRESS, {}),
        "example.": (EXAMPLE_ZONE, EXAMPLE_ADDRESS, {}),
        "leaf.test.": (LEAF_ZONE, LEAF_ADDRESS, {}),
        "tc.test.": (TC_ZONE, TC_ADDRESS, {"faults": {"truncate_udp": True}}),
    }
    knot_zones = directory / "knot"
    knot_zones.mkdir()
    for origin, text in KNOT_ZONES.items():
        (knot_zones / f"{origin}zone").write_text(text)
    try:
        tree.silent = _Listener(SILENT_ADDRESS, None)
        tree.trap = _Listener(TRAP_ADDRESS, None)
        tree.poison = _Listener(POISON_ADDRESS, poisoned_referral)
        tree.unprimed = _Listener(UNPRIMED_ROOT_ADDRESS, unprimed_root)
        with ThreadPoolExecutor(len(ours) + 1) as pool:
            started = {
                zone: pool.submit(
                    _ours, directory, f"zones-{i}", text, address, **options
                )
                for i, (zone, (text, address, options)) in enumerate(ours.items())
            }
            knot = pool.submit(
                KnotProcess, tuple(KNOT_ZONES), knot_zones, (KNOT_ADDRESS, 53)
            )
            failures = []
            for zone, future in started.items():
                try:
                    tree.servers[zone] = future.result()
                except Exception as e:
                    failures.append(e)
            try:
                tree.knot = knot.result()
            except Exception as e:
                failures.append(e)
            if failures:
                raise failures[0]
        yield tree
    finally:
        tree.stop()
