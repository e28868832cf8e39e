"""
Tests for the state table of L{dnstls.transport.starttls}: each state's
events and where they lead, and what an event a state does not expect does.
The walk of real connections through the table is in
L{tests.transport.test_upgrade_protocol}.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from twisted.internet.task import Clock

from dnstls.certs import generate_self_signed
from dnstls.transport import starttls as starttls_module
from dnstls.transport.starttls import TRANSITIONS, Event, StartTLS, State
from dnstls.transport.tls import TLSPolicy, TLSServerFactory
from dnstls.transport.upgrade import Upgrade, UpgradePolicy

S, E = State, Event


def drawn() -> dict[State, dict[Event, State]]:
    """The table the module's docstring draws, one C{STATE --EVENT--> STATE} a line."""
    table: dict[State, dict[Event, State]] = {state: {} for state in State}
    assert starttls_module.__doc__ is not None
    for before, event, after in re.findall(r"^ +(\w+) --(\w+)--> (\w+)", starttls_module.__doc__, re.M):
        for state in State if before == "any" else [State[before]]:
            for each in Event if event == "any" else [Event[event]]:
                table[state][each] = State[after]
    return table


class _Connection:
    """Just what the upgrade reads of its connection when an event is out of place."""

    peer = ("192.0.2.7", 40000)

    def __init__(self) -> None:
        self.closes = 0
        self.factory: Any = None

    def _close(self) -> None:
        self.closes += 1


@pytest.fixture(scope="module")
def policy() -> TLSPolicy:
    return TLSPolicy([generate_self_signed(("dns.example.test",))])


def machine(policy: TLSPolicy, state: State) -> tuple[StartTLS, _Connection]:
    """The upgrade of a stand-in connection, put in C{state}."""
    connection = _Connection()
    upgrade = Upgrade(UpgradePolicy.PROBE, policy)
    layers = TLSServerFactory(upgrade.tls, None, Clock())  # type: ignore[arg-type]
    starttls = StartTLS(connection, upgrade, layers)  # type: ignore[arg-type]
    starttls.state = state
    return starttls, connection


def test_table_as_documented() -> None:
    """The table holds exactly the transitions the module's docstring draws, and nothing else."""
    assert TRANSITIONS == drawn()


@pytest.mark.parametrize(
    "state, event", [(s, e) for s, events in TRANSITIONS.items() for e in events], ids=str
)
def test_expected_event(policy: TLSPolicy, state: State, event: Event) -> None:
    """An event a state expects moves to the state the table names, without closing the connection."""
    starttls, connection = machine(policy, state)
    assert starttls.fire(event) is TRANSITIONS[state][event]
    assert starttls.state is TRANSITIONS[state][event]
    assert starttls.gated is (starttls.state not in (S.CLEAR, S.TLS))
    assert connection.closes == 0


@pytest.mark.parametrize(
    "state, event",
    [(s, e) for s in State for e in Event if e not in TRANSITIONS[s]],
    ids=str,
)
def test_unexpected_event_closes(policy: TLSPolicy, state: State, event: Event) -> None:
    """An event a state does not expect (a bug) closes the connection instead of raising."""
    starttls, connection = machine(policy, state)
    assert starttls.fire(event) is S.CLOSING
    assert starttls.gated
    assert connection.closes == 1


@pytest.mark.parametrize("state", [S.GRANTING, S.HANDSHAKING, S.CLOSING])
def test_clear_bytes_discarded(policy: TLSPolicy, state: State) -> None:
    """After the first query, until TLS, and once closing, a read is discarded and the state kept."""
    starttls, connection = machine(policy, state)
    assert starttls.discards()
    assert starttls.state is state
    assert connection.closes == 0


def test_first_query_not_discarded(policy: TLSPolicy) -> None:
    """The first read is the upgrade's to decide on, not discarded."""
    starttls, _ = machine(policy, S.FIRST_QUERY)
    assert not starttls.discards()
    assert starttls.state is S.FIRST_QUERY


@pytest.mark.parametrize("state", list(State))
def test_lost(policy: TLSPolicy, state: State) -> None:
    """A connection lost in any state (while handshaking: a failed handshake) leaves its upgrade CLOSING."""
    starttls, connection = machine(policy, state)
    starttls.lost()
    assert starttls.state is S.CLOSING
    assert connection.closes == 0
