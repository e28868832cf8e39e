# -*- test-case-name: tests.transport.test_protocol -*-
"""
The UDP and stream protocols under one name: L{dnstls.transport.udp},
L{dnstls.transport.stream} (with L{dnstls.transport.connection}), the
limits of L{dnstls.transport.limits} and the L{Upgrade} settings of
L{dnstls.transport.upgrade} (carried out by L{dnstls.transport.starttls}).
They frame bytes, enforce limits and hand each whole message to the
L{dnstls.handler.Handler}; they never decide an answer.
"""

from __future__ import annotations

from dnstls.transport.limits import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_PER_CLIENT,
    DEFAULT_TLS_IDLE_TIMEOUT,
    ConnectionLimits,
)
from dnstls.transport.stream import DNSStreamFactory, DNSStreamProtocol
from dnstls.transport.udp import DNSDatagramProtocol
from dnstls.transport.upgrade import Upgrade

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_PER_CLIENT",
    "DEFAULT_TLS_IDLE_TIMEOUT",
    "ConnectionLimits",
    "DNSDatagramProtocol",
    "DNSStreamFactory",
    "DNSStreamProtocol",
    "Upgrade",
]
