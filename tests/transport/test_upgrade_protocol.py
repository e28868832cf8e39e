"""
Tests for the TO-bit upgrade of L{DNSStreamProtocol}
(L{dnstls.transport.starttls}), in memory but with real TLS: the server's
end of the connection takes a TLS layer under its protocol as Twisted's
TCP transport does, the client is the standard library's C{ssl.SSLObject}
over memory BIOs, and time is a L{Clock}.
"""

from __future__ import annotations

import ssl
import struct
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from dnstls.certs import generate_self_signed
from dnstls.context import RESPONSE_PADDING, QueryContext, Transport
from dnstls.handler import Handler
from dnstls.testing.faults import FaultInjector, Faults
from dnstls.testing.querylog import QueryLog
from dnstls.transport.framing import frame
from dnstls.transport.hooks import ServerHooks
from dnstls.transport.starttls import State
from dnstls.transport.stream import DNSStreamFactory
from dnstls.transport.tls import DoTServerProtocol, TLSPolicy
from dnstls.transport.upgrade import TO, Upgrade, UpgradePolicy
from tests import getdns051
from tests.support import ZONES, load_store
from tests.tlsmemory import pem_certificate

NAME = "dns.example.test"
PEER = IPv4Address("TCP", "192.0.2.7", 40000)
TCP_IDLE = 10.0
TLS_IDLE = 25.0
HANDSHAKE = 5.0

POLICIES = [UpgradePolicy.OFF, UpgradePolicy.PROBE, UpgradePolicy.ANY]


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler(load_store(ZONES, []))


@pytest.fixture(scope="module")
def tls_policy() -> TLSPolicy:
    return TLSPolicy([generate_self_signed((NAME,))])


class ServerEnd:
    """
    The server's end of an in-memory TCP connection, as Twisted's TCP
    transport is to its protocol: reads go to its C{protocol} and so does
    the end of the connection, and a TLS layer is put under the DNS
    protocol by making the layer the C{protocol} (as on port 853, the DNS
    protocol then writes to the layer, which writes here).

    @ivar wire: bytes written toward the client, not yet delivered.
    @ivar writes: every write toward the client, one entry each.
    @ivar tls: the TLS layer put under the DNS protocol, once there.
    @ivar tls_started_at: each time a TLS layer was put under the DNS
        protocol, how many bytes the server had written before.
    """

    disconnecting = False

    def __init__(self, io_clock: Clock) -> None:
        self.io_clock = io_clock
        self.wire = bytearray()
        self.writes: list[bytes] = []
        self.written = 0
        self._protocol: Any = None
        self.tls: TLSMemoryBIOProtocol | None = None
        self.tls_started_at: list[int] = []
        self.closing = False
        self.aborted = False
        self.lost = False
        self.no_delay: bool | None = None

    @property
    def protocol(self) -> Any:
        return self._protocol

    @protocol.setter
    def protocol(self, protocol: Any) -> None:
        if self._protocol is not None:
            assert self.tls is None, "TLS put under the connection twice"
            assert isinstance(protocol, TLSMemoryBIOProtocol)
            self.tls = protocol
            self.tls_started_at.append(self.written)
        self._protocol = protocol

    def put(self, data: bytes) -> None:
        if not self.lost and not self.aborted:
            self.wire += data
            self.writes.append(data)
            self.written += len(data)

    def write(self, data: bytes) -> None:
        # what TLS writes after its close_notify still goes out; clear
        # text written after a close does not
        if self.tls is not None or not self.closing:
            self.put(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled

    def getPeer(self) -> IPv4Address:
        return PEER

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "192.0.2.53", 53)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def loseConnection(self) -> None:
        self.disconnecting = True
        self.closing = True

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnecting = True
        self._lose(Failure(ConnectionAborted()))

    def receive(self, data: bytes) -> None:
        """
        Bytes from the client, as one read.
        """
        if not self.lost:
            self.protocol.dataReceived(data)

    def finish(self) -> None:
        """
        Complete a graceful close once everything written was delivered.
        """
        if self.closing and not self.wire:
            self._lose(Failure(ConnectionDone()))

    def _lose(self, reason: Failure) -> None:
        if self.lost:
            return
        self.lost = True
        self.disconnecting = True
        self.protocol.connectionLost(reason)


class Client:
    """
    A DNS client over an in-memory TCP connection to a L{DNSStreamProtocol},
    which can start TLS with the standard library after the upgrade.

    @ivar clear: clear-text bytes received and not yet read.
    @ivar tls: the client's TLS object, once started.
    """

    def __init__(
        self, handler: Any, tls_policy: TLSPolicy, policy: UpgradePolicy | None, clock: Clock,
        hooks: ServerHooks | None = None, legacy_probe: bool = False,
    ) -> None:
        upgrade = (
            Upgrade(policy, tls_policy, TLS_IDLE, legacy_probe=legacy_probe)
            if policy is not None
            else None
        )
        self.factory = DNSStreamFactory(
            handler, clock, Transport.TCP, idle_timeout=TCP_IDLE,
            handshake_timeout=HANDSHAKE, upgrade=upgrade, hooks=hooks,
        )
        self.tls_policy = tls_policy
        self.clock = clock
        self.io_clock = Clock()
        self.end = ServerEnd(self.io_clock)
        protocol = self.factory.buildProtocol(PEER)
        assert protocol is not None
        self.protocol = protocol
        self.end.protocol = protocol
        protocol.makeConnection(self.end)  # type: ignore[arg-type]
        self.clear = bytearray()
        self.tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.handshake_error: ssl.SSLError | None = None
        self.handshake_done = False
        self.inside = bytearray()
        self.tls_eof = False

    def send(self, *messages: bytes) -> None:
        """
        Send C{messages}, framed, in one read on the server's side.
        """
        self.send_raw(b"".join(frame(m) for m in messages))

    def send_raw(self, data: bytes) -> None:
        self.end.receive(data)
        self.pump()

    def start_tls(self, hostname: str = NAME) -> None:
        """
        Begin the TLS handshake as the client, trusting the server's
        certificate by name.
        """
        context = ssl.create_default_context(
            cadata=pem_certificate(self.tls_policy.default).decode("ascii")
        )
        self.tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=hostname)
        self.pump()

    def send_tls(self, *messages: bytes) -> None:
        """
        Send C{messages}, framed, in one TLS write.
        """
        assert self.tls is not None and self.handshake_done
        self.tls.write(b"".join(frame(m) for m in messages))
        self.pump()

    def pump(self) -> None:
        """
        Move bytes both ways until nothing moves.
        """
        for _ in range(1000):
            moved = False
            self.io_clock.advance(0)
            if self.end.wire:
                data = bytes(self.end.wire)
                self.end.wire.clear()
                if self.tls is not None:
                    self._incoming.write(data)
                else:
                    self.clear += data
                moved = True
            if self.tls is not None:
                self._step()
                out = self._outgoing.read()
                if out:
                    self.end.receive(out)
                    moved = True
            if not moved:
                if self.end.closing and not self.end.lost:
                    self.end.finish()
                    continue
                return
        raise AssertionError("the connection never settles")

    def _step(self) -> None:
        assert self.tls is not None
        if not self.handshake_done and self.handshake_error is None:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                return
            except ssl.SSLError as e:
                self.handshake_error = e
                return
            self.handshake_done = True
        if self.handshake_done:
            while not self.tls_eof:
                try:
                    data = self.tls.read(65536)
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    data = b""
                if not data:
                    # the server's close_notify (read gives b""): answer
                    # with ours
                    self.tls_eof = True
                    try:
                        self.tls.unwrap()
                    except ssl.SSLError:
                        pass
                    break
                self.inside += data

    def replies(self, inside: bool = False) -> list[bytes]:
        """
        The whole replies received so far (in clear or inside TLS), taken.
        """
        buffer = self.inside if inside else self.clear
        messages = []
        while len(buffer) >= 2:
            (length,) = struct.unpack("!H", buffer[:2])
            if len(buffer) < 2 + length:
                break
            messages.append(bytes(buffer[2 : 2 + length]))
            del buffer[: 2 + length]
        return messages

    @property
    def open(self) -> bool:
        return not self.end.lost and not self.end.closing


def parse(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire)


def probe(to: bool = True, ident: int = 0x1234, **kwargs: object) -> bytes:
    """
    C{STARTTLS. CH TXT}, RD=0, EDNS 0, TO=1 unless told otherwise.
    """
    query = dns.message.make_query("STARTTLS.", "TXT", "CH", use_edns=0, **kwargs)  # type: ignore[arg-type]
    query.id = ident
    query.flags &= ~dns.flags.RD
    if to:
        query.ednsflags |= TO
    return query.to_wire()


def ordinary(
    to: bool = False, ident: int = 0x2000, name: str = "www.example.test.", do: bool = False,
    **kwargs: object,
) -> bytes:
    """
    An IN A query, with TO (CO, the same bit) when told.
    """
    kwargs.setdefault("use_edns", 0)
    query = dns.message.make_query(name, "A", want_dnssec=do, **kwargs)  # type: ignore[arg-type]
    query.id = ident
    if to:
        query.ednsflags |= TO
    return query.to_wire()


def txt(reply: dns.message.Message) -> list[bytes]:
    return [s for rrset in reply.answer for rdata in rrset for s in rdata.strings]


def addresses(reply: dns.message.Message) -> list[str]:
    return [rdata.to_text() for rrset in reply.answer for rdata in rrset]


def connect(
    handler: Any, tls_policy: TLSPolicy, policy: UpgradePolicy | None, clock: Clock | None = None,
    legacy_probe: bool = False, hooks: ServerHooks | None = None,
) -> Client:
    return Client(handler, tls_policy, policy, clock or Clock(), hooks, legacy_probe=legacy_probe)


def finish_upgrade(client: Client) -> None:
    """
    Do the client's side of the handshake and check that one query is
    answered inside TLS.
    """
    client.start_tls()
    assert client.handshake_error is None
    assert client.handshake_done
    assert client.tls is not None and client.tls.version() == "TLSv1.3"
    client.send_tls(ordinary(ident=0x7777, name="mail.example.test."))
    [wire] = client.replies(inside=True)
    reply = parse(wire)
    assert reply.id == 0x7777
    assert addresses(reply) == ["192.0.2.25"]
    assert reply.ednsflags & TO == 0


#: First exchanges: a list of first queries (sent one after another, each
#: awaiting its reply), and per policy what the last reply must be:
#: (TO set, the TXT, or an address, and whether TLS starts after it).
MATRIX: dict[str, tuple[list[bytes], dict[UpgradePolicy, tuple[bool, object, bool]]]] = {
    "probe with TO": (
        [probe()],
        {
            UpgradePolicy.OFF: (False, b"NO_TLS", False),
            UpgradePolicy.PROBE: (True, b"STARTTLS", True),
            UpgradePolicy.ANY: (True, b"STARTTLS", True),
        },
    ),
    "probe without TO": (
        [probe(to=False)],
        {policy: (False, b"NO_TLS", False) for policy in POLICIES},
    ),
    "ordinary query with TO": (
        [ordinary(to=True)],
        {
            UpgradePolicy.OFF: (False, "192.0.2.80", False),
            UpgradePolicy.PROBE: (False, "192.0.2.80", False),
            UpgradePolicy.ANY: (True, "192.0.2.80", True),
        },
    ),
    "TO only on the second query (probe)": (
        [probe(to=False, ident=1), probe(ident=2)],
        {policy: (False, b"NO_TLS", False) for policy in POLICIES},
    ),
    "TO only on the second query (ordinary)": (
        [ordinary(ident=1), ordinary(to=True, ident=2)],
        {policy: (False, "192.0.2.80", False) for policy in POLICIES},
    ),
    "CO-style query: DO and 0x4000": (
        [ordinary(to=True, do=True)],
        {
            UpgradePolicy.OFF: (False, "192.0.2.80", False),
            UpgradePolicy.PROBE: (False, "192.0.2.80", False),
            UpgradePolicy.ANY: (True, "192.0.2.80", True),
        },
    ),
}


@pytest.mark.parametrize("shape", list(MATRIX))
@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.value)
def test_matrix(handler: Handler, tls_policy: TLSPolicy, policy: UpgradePolicy, shape: str) -> None:
    """
    Each policy answers each first query shape with the documented TO and TXT, and starts TLS only
    when the reply said TO=1.
    """
    queries, expectations = MATRIX[shape]
    expect_to, expect_answer, expect_tls = expectations[policy]
    client = connect(handler, tls_policy, policy)
    for query in queries:
        client.send(query)
        [wire] = client.replies()
        reply = parse(wire)
        assert reply.id == parse(query).id
        assert reply.rcode() == dns.rcode.NOERROR
    assert bool(reply.ednsflags & TO) is expect_to
    if isinstance(expect_answer, bytes):
        assert txt(reply) == [expect_answer]
    else:
        assert addresses(reply) == [expect_answer]
    assert reply.ednsflags & ~(TO | dns.flags.DO) == 0
    assert bool(client.end.tls_started_at) is expect_tls
    assert client.open
    if expect_tls:
        assert client.protocol.kind is Transport.TLS
        finish_upgrade(client)
    else:
        # still a plain connection, and TO on any later query is ignored
        client.send(probe(ident=0x5555))
        [wire] = client.replies()
        later = parse(wire)
        assert txt(later) == [b"NO_TLS"]
        assert later.ednsflags & TO == 0
        client.send(ordinary(to=True, ident=0x5556))
        [wire] = client.replies()
        assert addresses(parse(wire)) == ["192.0.2.80"]
        assert parse(wire).ednsflags & TO == 0
        assert not client.end.tls_started_at


def test_no_upgrade_configured(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    A TCP listener without an upgrade (what --starttls off builds) answers the probe NO_TLS with
    TO=0 and stays plain.
    """
    client = connect(handler, tls_policy, None)
    client.send(probe())
    [wire] = client.replies()
    assert txt(parse(wire)) == [b"NO_TLS"]
    assert parse(wire).ednsflags & TO == 0
    assert not client.end.tls_started_at
    client.send(ordinary(to=True))
    assert addresses(parse(client.replies()[0])) == ["192.0.2.80"]


def test_response_as_first_message_does_not_upgrade(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    A DNS response (QR=1) with TO as the first message is ignored like any stray response; the
    connection stays plain.
    """
    message = parse(probe())
    message.flags |= dns.flags.QR
    client = connect(handler, tls_policy, UpgradePolicy.ANY)
    client.send(message.to_wire())
    assert client.replies() == []
    assert client.open
    assert not client.end.tls_started_at
    client.send(ordinary(to=True))
    [wire] = client.replies()
    assert addresses(parse(wire)) == ["192.0.2.80"]
    assert parse(wire).ednsflags & TO == 0


def test_malformed_first_message_does_not_upgrade(handler: Handler, tls_policy: TLSPolicy) -> None:
    """A first message that does not parse gets FORMERR with TO=0 in clear and the connection stays plain."""
    client = connect(handler, tls_policy, UpgradePolicy.ANY)
    client.send(probe() + b"\x00")
    [wire] = client.replies()
    assert parse(wire).rcode() == dns.rcode.FORMERR
    assert not parse(wire).ednsflags & TO
    assert not client.end.tls_started_at
    client.send(probe())
    assert txt(parse(client.replies()[0])) == [b"NO_TLS"]


@pytest.mark.parametrize("policy", [UpgradePolicy.PROBE, UpgradePolicy.ANY], ids=lambda p: p.value)
def test_reply_written_before_starttls(
    handler: Handler, tls_policy: TLSPolicy, policy: UpgradePolicy
) -> None:
    """
    The TO=1 reply is written, whole and framed, before TLS starts, so it reaches the client in
    clear text.
    """
    client = connect(handler, tls_policy, policy)
    query = probe()
    client.end.receive(frame(query))  # no pump: look at what was written
    assert client.end.tls_started_at == [len(client.end.wire)]
    context = QueryContext(Transport.TCP, (PEER.host, PEER.port), upgrade=True)
    expected = handler.handle(query, context)
    assert bytes(client.end.wire) == frame(expected)  # type: ignore[arg-type]


def test_upgrade_reply_unpadded(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    The clear-text TO=1 reply carries no padding even when the probe asked for it; replies inside
    TLS are padded.
    """
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    padding = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\x00" * 16)
    client.send(probe(options=[padding]))
    [wire] = client.replies()
    reply = parse(wire)
    assert txt(reply) == [b"STARTTLS"]
    assert all(option.otype != dns.edns.OptionType.PADDING for option in reply.options)
    assert len(wire) % RESPONSE_PADDING != 0
    client.start_tls()
    client.send_tls(ordinary(ident=9, options=[padding]))
    [wire] = client.replies(inside=True)
    assert len(wire) % RESPONSE_PADDING == 0
    assert any(option.otype == dns.edns.OptionType.PADDING for option in parse(wire).options)


def keepalive(reply: dns.message.Message) -> int | None:
    for option in reply.options:
        if option.otype == dns.edns.OptionType.KEEPALIVE:
            return int(struct.unpack("!H", option.to_wire())[0])
    return None


KEEPALIVE = dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, b"")


def test_keepalive_after_upgrade(handler: Handler, tls_policy: TLSPolicy) -> None:
    """Inside the upgraded session, edns-tcp-keepalive reports the TLS idle timeout, not the TCP one."""
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    client.send(probe(options=[KEEPALIVE]))
    [wire] = client.replies()
    assert keepalive(parse(wire)) == int(TLS_IDLE * 10)
    client.start_tls()
    client.send_tls(ordinary(ident=9, options=[KEEPALIVE]))
    [wire] = client.replies(inside=True)
    assert keepalive(parse(wire)) == int(TLS_IDLE * 10)


def test_keepalive_without_upgrade(handler: Handler, tls_policy: TLSPolicy) -> None:
    """A connection that stays plain reports the TCP idle timeout in edns-tcp-keepalive."""
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    client.send(probe(to=False, options=[KEEPALIVE]))
    [wire] = client.replies()
    assert keepalive(parse(wire)) == int(TCP_IDLE * 10)


def test_clear_text_with_probe_never_answered(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    Queries sent in clear in the same read as the probe are answered neither before nor after the
    handshake.
    """
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    client.send(probe(), ordinary(ident=0x6661), ordinary(ident=0x6662, name="mail.example.test."))
    [wire] = client.replies()
    assert txt(parse(wire)) == [b"STARTTLS"]
    assert client.clear == b""
    client.start_tls()
    assert client.handshake_done
    assert client.replies(inside=True) == []
    client.send_tls(ordinary(ident=0x7001, name="ns1.example.test."))
    [wire] = client.replies(inside=True)
    assert parse(wire).id == 0x7001
    client.clock.advance(1)
    client.pump()
    assert client.replies(inside=True) == []
    assert client.replies() == []


def test_partial_query_with_probe_discarded(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    Half a query sent with the probe is dropped, so the TLS session that follows is framed from its
    first byte.
    """
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    half = frame(ordinary(ident=0x6661))[:9]
    client.send_raw(frame(probe()) + half)
    [wire] = client.replies()
    assert txt(parse(wire)) == [b"STARTTLS"]
    finish_upgrade(client)


def test_clear_text_instead_of_handshake_closes(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    A client that sends a clear-text query after TO=1 instead of a ClientHello is disconnected and
    never answered in clear.
    """
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    client.send(probe())
    assert txt(parse(client.replies()[0])) == [b"STARTTLS"]
    client.send(ordinary(ident=0x6661))
    assert client.end.lost
    # at most a TLS alert record (content type 21), never a DNS message
    assert client.clear == b"" or client.clear[:1] == b"\x15"


class SlowGrant:
    """
    The handler, but its reply to the upgrading query comes later, when the
    test fires the Deferred it keeps.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.pending: list[Deferred[bytes | None]] = []

    def handle(self, wire: bytes, context: QueryContext) -> Any:
        if context.upgrade:
            d: Deferred[bytes | None] = Deferred()
            d.addCallback(lambda _: self.handler.handle(wire, context))
            self.pending.append(d)
            return d
        return self.handler.handle(wire, context)


def test_bytes_while_upgrade_pending_dropped(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    Bytes that arrive while the reply to the upgrading query is still being computed are dropped,
    not answered.
    """
    slow = SlowGrant(handler)
    pending = slow.pending
    client = connect(slow, tls_policy, UpgradePolicy.PROBE)
    client.send(probe())
    assert len(pending) == 1 and client.clear == b""
    client.send(ordinary(ident=0x6661))
    client.send_raw(frame(ordinary(ident=0x6662))[:5])
    assert client.clear == b""
    assert not client.end.tls_started_at
    pending[0].callback(None)
    client.pump()
    [wire] = client.replies()
    assert txt(parse(wire)) == [b"STARTTLS"]
    assert client.end.tls_started_at
    finish_upgrade(client)
    assert client.replies(inside=True) == []


def test_handshake_timeout_drops_client(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    A client that gets TO=1 and never starts the handshake is dropped when the handshake clock runs
    out, without a byte more.
    """
    clock = Clock()
    client = connect(handler, tls_policy, UpgradePolicy.PROBE, clock)
    client.send(probe())
    assert txt(parse(client.replies()[0])) == [b"STARTTLS"]
    clock.advance(HANDSHAKE - 0.1)
    client.pump()
    assert client.open
    clock.advance(0.2)
    client.pump()
    assert client.end.aborted and client.end.lost
    assert client.clear == b""
    assert client.protocol.closed
    assert clock.getDelayedCalls() == []


def test_handshake_clock_stops_after_handshake(handler: Handler, tls_policy: TLSPolicy) -> None:
    """Once the handshake is done the handshake clock no longer applies; the TLS idle timeout does."""
    clock = Clock()
    client = connect(handler, tls_policy, UpgradePolicy.PROBE, clock)
    client.send(probe())
    client.replies()
    finish_upgrade(client)
    clock.advance(HANDSHAKE + 1)
    client.pump()
    assert client.open
    clock.advance(TLS_IDLE - HANDSHAKE - 2)  # past the TCP idle timeout, within the TLS one
    client.pump()
    assert client.open
    clock.advance(2)
    client.pump()
    assert not client.open
    assert client.tls_eof  # a TLS close_notify, not a bare close


def test_failed_handshake_closes(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    A handshake the client aborts (it checks a name the certificate does not carry) closes the
    connection.
    """
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    client.send(probe())
    client.replies()
    client.start_tls(hostname="wrong.example.test")
    assert isinstance(client.handshake_error, ssl.SSLCertVerificationError)
    client.pump()
    assert client.end.lost
    assert client.replies() == []


def test_upgraded_session_pipelines(handler: Handler, tls_policy: TLSPolicy) -> None:
    """After the upgrade, several queries in one TLS write are each answered, with TO=0."""
    client = connect(handler, tls_policy, UpgradePolicy.ANY, hooks=ServerHooks())
    client.send(ordinary(to=True, ident=1))
    [wire] = client.replies()
    assert parse(wire).ednsflags & TO
    client.start_tls()
    names = {10: "www.example.test.", 11: "mail.example.test.", 12: "ns1.example.test."}
    client.send_tls(*(ordinary(ident=i, name=n, to=True) for i, n in names.items()))
    replies = {parse(w).id: parse(w) for w in client.replies(inside=True)}
    assert sorted(replies) == [10, 11, 12]
    assert addresses(replies[11]) == ["192.0.2.25"]
    assert all(reply.ednsflags & TO == 0 for reply in replies.values())
    assert client.protocol._tls is not None


def test_fault_idle_timeout_survives_upgrade(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    A test kit's idle-timeout fault still applies once the connection is upgraded, and its keepalive
    says so.
    """
    clock = Clock()
    hooks = FaultInjector(Faults(idle_timeout=3.0), QueryLog(), clock)
    client = Client(handler, tls_policy, UpgradePolicy.PROBE, clock, hooks)
    client.send(probe(options=[KEEPALIVE]))
    [wire] = client.replies()
    assert keepalive(parse(wire)) == 30
    client.start_tls()
    client.send_tls(ordinary(ident=9, options=[KEEPALIVE]))
    [wire] = client.replies(inside=True)
    assert keepalive(parse(wire)) == 30
    clock.advance(3.1)
    client.pump()
    assert not client.open


def test_forced_rcode_on_the_probe_still_says_to(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    A test fault that answers the probe SERVFAIL still sets TO in the reply that grants the
    upgrade, so the client knows to start TLS, and the session then answers inside TLS.
    """
    clock = Clock()
    hooks = FaultInjector(Faults(rcodes={"starttls.": "SERVFAIL"}), QueryLog(), clock)
    client = Client(handler, tls_policy, UpgradePolicy.PROBE, clock, hooks)
    client.send(probe())
    [wire] = client.replies()
    reply = parse(wire)
    assert reply.rcode() == dns.rcode.SERVFAIL and reply.ednsflags & TO
    finish_upgrade(client)


def test_failure_to_start_tls_closes(handler: Handler, tls_policy: TLSPolicy, monkeypatch: Any) -> None:
    """
    A failure putting the TLS layer under a granted connection is logged and closes it; nothing
    raises into the reactor, and nothing but the grant is sent in clear.
    """
    from dnstls.transport import starttls as module

    def broken(self: Any, connection: Any) -> None:
        raise RuntimeError("no TLS today")

    monkeypatch.setattr(module.StartTLS, "_put_tls_under", broken)
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    with capturedLogs() as events:
        client.send(probe())
        client.send(ordinary(ident=0x6663))
        client.pump()
    assert [txt(parse(wire)) for wire in client.replies()] == [[b"STARTTLS"]]
    assert client.protocol.starttls is not None
    assert client.protocol.starttls.state is State.CLOSING
    assert client.end.lost or client.protocol.closed or client.protocol._closing
    assert any("no TLS today" in str(event.get("log_failure")) for event in events)


# The upgrade's states on a connection (dnstls.transport.starttls), and the
# TLS layer it puts under it: the TLS port's.


def test_walk_granted(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    A granted upgrade goes FIRST_QUERY, GRANTING (clear bytes discarded), HANDSHAKING (clear bytes
    discarded), TLS, CLOSING, and answers nothing in clear but the grant.
    """
    slow = SlowGrant(handler)
    client = connect(slow, tls_policy, UpgradePolicy.PROBE)
    starttls = client.protocol.starttls
    assert starttls is not None and starttls.state is State.FIRST_QUERY
    client.send(probe())
    assert starttls.state is State.GRANTING
    client.send(ordinary(ident=0x6661))
    assert starttls.state is State.GRANTING
    slow.pending[0].callback(None)
    client.pump()
    assert starttls.state is State.HANDSHAKING
    # clear text handed to the DNS protocol itself, past the TLS layer
    client.protocol.dataReceived(frame(ordinary(ident=0x6662)))
    assert starttls.state is State.HANDSHAKING
    assert [txt(parse(wire)) for wire in client.replies()] == [[b"STARTTLS"]]
    finish_upgrade(client)
    assert starttls.state is State.TLS
    client.clock.advance(TLS_IDLE + 1)
    client.pump()
    assert starttls.state is State.CLOSING
    assert client.end.lost
    assert client.replies() == [] and client.replies(inside=True) == []


def test_walk_declined(handler: Handler, tls_policy: TLSPolicy) -> None:
    """A declined upgrade goes FIRST_QUERY, CLEAR (TO ignored from then on), CLOSING."""
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    starttls = client.protocol.starttls
    assert starttls is not None
    client.send(ordinary(to=True))
    assert starttls.state is State.CLEAR
    client.send(probe(ident=2))
    assert txt(parse(client.replies()[-1])) == [b"NO_TLS"]
    assert starttls.state is State.CLEAR
    client.clock.advance(TCP_IDLE + 1)
    client.pump()
    assert starttls.state is State.CLOSING
    assert not client.end.tls_started_at


@pytest.mark.parametrize("failure", ["wrong name", "timeout", "clear text"])
def test_walk_failed_handshake(handler: Handler, tls_policy: TLSPolicy, failure: str) -> None:
    """A handshake that fails, times out, or meets clear text goes HANDSHAKING, CLOSING, and closes."""
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    starttls = client.protocol.starttls
    assert starttls is not None
    client.send(probe())
    client.replies()
    assert starttls.state is State.HANDSHAKING
    if failure == "wrong name":
        client.start_tls(hostname="wrong.example.test")
    elif failure == "timeout":
        client.clock.advance(HANDSHAKE + 1)
    else:
        client.send(ordinary(ident=0x6661))
    client.pump()
    assert starttls.state is State.CLOSING
    assert client.end.lost
    assert client.replies() == []


def test_upgraded_connection_on_dot_layer(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    Once the grant is written, the TLS port's layer, with the listener's TLS policy, sits between the
    connection and the DNS protocol, which is not connected a second time.
    """
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    client.send(probe())
    client.replies()
    layer = client.end.tls
    assert isinstance(layer, DoTServerProtocol)
    assert client.end.protocol is layer and layer.wrappedProtocol is client.protocol
    assert client.protocol.transport is layer and layer.transport is client.end
    assert client.protocol.starttls is not None and client.protocol.starttls.layer is layer
    assert layer.getHandle().get_context() is tls_policy.serverConnectionForTLS(layer).get_context()
    assert client.protocol.kind is Transport.TLS
    assert client.protocol._socket is None  # never a direct send from here on
    assert client.factory.connections == {client.protocol}
    finish_upgrade(client)
    assert client.protocol._tls is None  # no hooks: nothing read of the session


def test_upgraded_tickets_go_with_the_first_answer(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    An upgraded TLS 1.3 session's tickets wait after the handshake and leave in one write with the
    first answer, as on the TLS port.
    """
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    client.send(probe())
    client.replies()
    client.start_tls()
    assert client.handshake_done and client.tls is not None
    assert client.tls.version() == "TLSv1.3"
    session = client.tls.session
    assert session is None or not session.has_ticket
    writes = len(client.end.writes)
    client.send_tls(ordinary(ident=0x7777))
    assert len(client.end.writes) == writes + 1
    [wire] = client.replies(inside=True)
    assert parse(wire).id == 0x7777
    session = client.tls.session
    assert session is not None and session.has_ticket
    assert client.io_clock.getDelayedCalls() == []


# --starttls-legacy-probe: the probe without TO, as getdns 0.5.1 sends it.


def getdns_probe(ident: int = 0xA0C7, opt: bool = True) -> bytes:
    """
    getdns 0.5.1's probe: STARTTLS. CH TXT with RD=1 and, unless told otherwise, an OPT with
    payload 65535 and no flags.
    """
    return getdns051.starttls_request(ident, opt)[2:]


def edns_one_probe(ident: int) -> bytes:
    """
    STARTTLS. CH TXT with an OPT of EDNS version 1 and no TO: BADVERS.
    """
    query = dns.message.make_query("STARTTLS.", "TXT", "CH", use_edns=1)
    query.id = ident
    return query.to_wire()


#: First exchanges under --starttls-legacy-probe: the queries sent one
#: after another, and what the last reply must be: its TXT or address, TO
#: in it (C{None}: no OPT at all), and whether TLS starts after it.
LEGACY_MATRIX: dict[str, tuple[list[bytes], tuple[object, bool | None, bool]]] = {
    "getdns probe": ([getdns_probe()], ([b"STARTTLS"], True, True)),
    "getdns probe without OPT": ([getdns_probe(opt=False)], ([b"STARTTLS", b""], None, True)),
    "probe without TO, RD=0": ([probe(to=False)], ([b"STARTTLS"], True, True)),
    "probe with TO": ([probe()], ([b"STARTTLS"], True, True)),
    "getdns probe as the second query": (
        [ordinary(ident=1), getdns_probe()], ([b"NO_TLS"], False, False),
    ),
    "EDNS version 1 probe without TO, then getdns probe": (
        [edns_one_probe(1), getdns_probe()], ([b"NO_TLS"], False, False),
    ),
    "ordinary query without TO": ([ordinary()], ("192.0.2.80", False, False)),
}


@pytest.mark.parametrize("shape", list(LEGACY_MATRIX))
@pytest.mark.parametrize("policy", [UpgradePolicy.PROBE, UpgradePolicy.ANY], ids=lambda p: p.value)
def test_legacy_matrix(handler: Handler, tls_policy: TLSPolicy, policy: UpgradePolicy, shape: str) -> None:
    """
    With --starttls-legacy-probe, a first query that is the probe, TO or not, gets STARTTLS in clear
    and then TLS; the probe later on the connection, or another first query without TO, does not.
    """
    queries, (expect_answer, expect_to, expect_tls) = LEGACY_MATRIX[shape]
    client = connect(handler, tls_policy, policy, legacy_probe=True)
    for query in queries:
        client.send(query)
        [wire] = client.replies()
        reply = parse(wire)
        assert reply.id == parse(query).id
    if isinstance(expect_answer, list):
        assert txt(reply) == expect_answer
    else:
        assert addresses(reply) == [expect_answer]
    if expect_to is None:
        assert reply.edns < 0
    else:
        assert bool(reply.ednsflags & TO) is expect_to
    assert bool(client.end.tls_started_at) is expect_tls
    if expect_tls:
        finish_upgrade(client)
    else:
        client.send(getdns_probe(ident=0x5555))
        [wire] = client.replies()
        assert txt(parse(wire)) == [b"NO_TLS"]
        assert not client.end.tls_started_at


def test_legacy_probe_off_by_default(handler: Handler, tls_policy: TLSPolicy) -> None:
    """Without --starttls-legacy-probe, getdns's probe gets NO_TLS with TO=0; the connection stays clear."""
    client = connect(handler, tls_policy, UpgradePolicy.PROBE)
    client.send(getdns_probe())
    [wire] = client.replies()
    assert txt(parse(wire)) == [b"NO_TLS"]
    assert parse(wire).ednsflags & TO == 0
    assert not client.end.tls_started_at
    client.send(ordinary(ident=0x2001))
    assert addresses(parse(client.replies()[0])) == ["192.0.2.80"]


def test_legacy_probe_never_under_off(handler: Handler, tls_policy: TLSPolicy) -> None:
    """A listener with policy off does not upgrade the probe without TO even if told to (tap refuses that)."""
    client = connect(handler, tls_policy, UpgradePolicy.OFF, legacy_probe=True)
    client.send(getdns_probe())
    assert txt(parse(client.replies()[0])) == [b"NO_TLS"]
    assert not client.end.tls_started_at


@pytest.mark.parametrize("opt", [True, False], ids=["with OPT", "without OPT"])
def test_legacy_probe_reply_passes_getdns_check(handler: Handler, tls_policy: TLSPolicy, opt: bool) -> None:
    """The reply to getdns's probe, as sent on the wire, is a yes by getdns 0.5.1's is_starttls_response."""
    client = connect(handler, tls_policy, UpgradePolicy.PROBE, legacy_probe=True)
    client.send(getdns_probe(opt=opt))
    [wire] = client.replies()
    assert getdns051.is_starttls_response(wire)


def test_clear_text_after_legacy_probe_never_answered(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    Queries sent in clear in the same read as getdns's probe, and half a query after them, are
    answered neither before nor after the handshake.
    """
    client = connect(handler, tls_policy, UpgradePolicy.PROBE, legacy_probe=True)
    smuggled = frame(ordinary(ident=0x6661)) + frame(ordinary(ident=0x6662))[:9]
    client.send_raw(frame(getdns_probe()) + smuggled)
    [wire] = client.replies()
    assert txt(parse(wire)) == [b"STARTTLS"]
    assert client.clear == b""
    finish_upgrade(client)
    assert client.replies(inside=True) == []
    assert client.replies() == []


def test_clear_query_after_legacy_probe_closes(handler: Handler, tls_policy: TLSPolicy) -> None:
    """
    A client that takes the STARTTLS reply for a no (as getdns would for a reply it misreads) and
    asks in clear is disconnected, never answered in clear.
    """
    client = connect(handler, tls_policy, UpgradePolicy.PROBE, legacy_probe=True)
    client.send(getdns_probe())
    client.replies()
    client.send(ordinary(ident=0x6661))
    assert client.end.lost
    assert client.clear == b"" or client.clear[:1] == b"\x15"
