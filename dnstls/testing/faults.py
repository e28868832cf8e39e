# -*- test-case-name: tests.testing.test_testing -*-
"""
Deliberate misbehaviour, for client developers who test against dnstls.

A L{Faults} object is shared by the handler and the protocols of one
server; every knob is off by default and can be changed while the server
runs (the test kit changes them through the control socket, see
L{dnstls.testing.control}).  Nothing here is reachable from the command line of a
production server unless C{--control} is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from dnstls.context import (
    STREAM_LIMIT,
    UDP_PAYLOAD,
    Answerer,
    QueryContext,
    Transport,
)
from dnstls.render import render
from dnstls.response import use_edns
from dnstls.testing.querylog import QueryLog
from dnstls.transport.hooks import ServerHooks

#: What C{rcodes} may map a name to.
ACTIONS = ("SERVFAIL", "REFUSED", "drop")


@dataclass
class Faults:
    """
    The knobs.

    @ivar delay: seconds to hold answers, by query name (lower case, with
        the final dot), or C{"*"} for every name.
    @ivar rcodes: answer these names with SERVFAIL or REFUSED, or C{drop}
        their queries without an answer.
    @ivar reverse: answer the queries of one read of a stream in reverse
        order.
    @ivar decline_upgrade: answer the STARTTLS probe with TO=0 whatever the
        policy.
    @ivar abort_handshake: grant the upgrade (TO=1), then abort the
        connection instead of completing the TLS handshake.
    @ivar close_after: close a stream connection after answering this many
        queries on it.
    @ivar idle_timeout: replace the idle timeout of new stream connections
        (seconds).
    @ivar keepalive_zero: advertise edns-tcp-keepalive 0 whatever the load.
    @ivar truncate_udp: answer every UDP query with TC=1 and no records.
    @ivar no_padding: never pad, even over TLS when asked.
    """

    delay: dict[str, float] = field(default_factory=dict)
    rcodes: dict[str, str] = field(default_factory=dict)
    reverse: bool = False
    decline_upgrade: bool = False
    abort_handshake: bool = False
    close_after: int | None = None
    idle_timeout: float | None = None
    keepalive_zero: bool = False
    truncate_udp: bool = False
    no_padding: bool = False

    def update(self, changes: dict[str, Any]) -> None:
        """
        Set the knobs named in C{changes}; names are lower-cased with their
        final dot added.  Either every change is made or, when one is
        wrong, none is.

        @raise ValueError: for an unknown knob or a value of the wrong kind.
        """
        known = {f.name for f in fields(self)}
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"no fault named {key!r}")
            checked[key] = _checked(key, value)
        for key, value in checked.items():
            setattr(self, key, value)

    def reset(self) -> None:
        """
        Turn every knob off.
        """
        fresh = Faults()
        for f in fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def delay_for(self, qname: dns.name.Name) -> float:
        """
        How long to hold the answer for C{qname}.
        """
        if not self.delay:
            return 0.0
        return self.delay.get(_key(qname.to_text()), self.delay.get("*", 0.0))

    def action_for(self, qname: dns.name.Name) -> str | None:
        """
        SERVFAIL, REFUSED or drop for C{qname}, or C{None}.
        """
        if not self.rcodes:
            return None
        return self.rcodes.get(_key(qname.to_text()), self.rcodes.get("*"))

    def as_dict(self) -> dict[str, Any]:
        """
        The knobs as plain data.
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _checked(key: str, value: Any) -> Any:
    """
    C{value} as the knob C{key} holds it.

    @raise ValueError: if it is of the wrong kind or out of range.
    """
    try:
        if key == "delay":
            delays = {_key(str(n)): float(v) for n, v in dict(value).items()}
            if any(not 0 <= v < 3600 for v in delays.values()):
                raise ValueError("delays are seconds, from 0 to an hour")
            return delays
        if key == "rcodes":
            rcodes = {_key(str(n)): str(v) for n, v in dict(value).items()}
            bad = [v for v in rcodes.values() if v not in ACTIONS]
            if bad:
                raise ValueError(f"rcodes take {', '.join(ACTIONS)}, not {bad[0]!r}")
            return rcodes
        if key == "close_after":
            if value is None:
                return None
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError("close_after is a number of answers, 1 or more")
            return int(value)
        if key == "idle_timeout":
            if value is None:
                return None
            if isinstance(value, bool) or not 0 < float(value) <= 6553.5:
                raise ValueError("idle_timeout is seconds, above 0")
            return float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{key}: {e}") from None
    if not isinstance(value, bool):
        raise ValueError(f"{key} is true or false, not {value!r}")
    return value


def _key(name: str) -> str:
    if name == "*":
        return name
    name = name.lower()
    return name if name.endswith(".") else name + "."


class FaultInjector(ServerHooks):
    """
    The server's hooks for the test kit: records each query in a
    L{QueryLog}, in front of the reply cache, and applies the L{Faults}:
    the answer-level ones (delays, forced RCODEs, drops, UDP truncation)
    here, the connection-level ones through the protocols that ask.
    """

    def __init__(self, faults: Faults, log: QueryLog, clock: IReactorTime) -> None:
        self.faults = faults
        self.log = log
        self.clock = clock

    def query(
        self, wire: bytes, context: QueryContext, answerer: Answerer
    ) -> bytes | None | Deferred[bytes | None]:
        """
        Answer as C{answerer} does, misbehaving as the faults say.
        """
        query = _parse(wire)
        if query is None:
            return answerer.handle(wire, context)
        self.log.record(
            query, context.transport.value, context.peer,
            upgraded=context.upgraded, tls=context.tls,
        )
        if not query.question:
            return answerer.handle(wire, context)
        qname = query.question[0].name
        action = self.faults.action_for(qname)
        if action == "drop":
            return None
        if action is not None:
            return self._misbehave(self._rcode(query, context, dns.rcode.from_text(action)), qname, context)
        answer = answerer.handle(wire, context)
        if isinstance(answer, Deferred):
            # a forwarded answer: misbehave once it is known
            return answer.addCallback(self._misbehave, qname, context)
        return self._misbehave(answer, qname, context)

    def idle_timeout(self) -> float | None:
        """
        The C{idle_timeout} fault, when set.
        """
        return self.faults.idle_timeout or None

    def keepalive_zero(self) -> bool:
        """
        The C{keepalive_zero} fault.
        """
        return self.faults.keepalive_zero

    def padding(self) -> bool:
        """
        Padding is allowed unless the C{no_padding} fault is set.
        """
        return not self.faults.no_padding

    def reverse(self) -> bool:
        """
        The C{reverse} fault.
        """
        return self.faults.reverse

    def decline_upgrade(self) -> bool:
        """
        The C{decline_upgrade} fault.
        """
        return self.faults.decline_upgrade

    def abort_handshake(self) -> bool:
        """
        The C{abort_handshake} fault.
        """
        return self.faults.abort_handshake

    def close_after(self) -> int | None:
        """
        The C{close_after} fault.
        """
        return self.faults.close_after

    def _misbehave(
        self, reply: bytes | None, qname: dns.name.Name, context: QueryContext
    ) -> bytes | None | Deferred[bytes | None]:
        """
        C{reply} truncated and delayed as the faults say.
        """
        if reply is not None and self.faults.truncate_udp and context.transport is Transport.UDP:
            reply = _truncated(reply)
        delay = self.faults.delay_for(qname)
        if delay <= 0:
            return reply
        later: Deferred[bytes | None] = Deferred()
        self.clock.callLater(delay, later.callback, reply)
        return later

    def _rcode(
        self, query: dns.message.Message, context: QueryContext, rcode: dns.rcode.Rcode
    ) -> bytes | None:
        """
        The reply C{rcode} alone, with the OPT a normal reply would have
        (L{dnstls.response.use_edns}: DO, keepalive on a stream, padding
        over TLS, TO when it grants an upgrade).
        """
        response = dns.message.make_response(query)
        if query.edns >= 0:
            use_edns(response, query, context)
        response.set_rcode(rcode)
        return render(response, STREAM_LIMIT if context.transport.is_stream else UDP_PAYLOAD)


def _parse(wire: bytes) -> dns.message.Message | None:
    try:
        message = dns.message.from_wire(wire)
    except Exception:
        return None
    return None if message.flags & dns.flags.QR else message


def _truncated(reply: bytes) -> bytes:
    """
    C{reply} with TC set and only its header, question and OPT left.
    """
    response = dns.message.from_wire(reply)
    response.flags |= dns.flags.TC
    response.answer = []
    response.authority = []
    response.additional = []
    return render(response, UDP_PAYLOAD)
