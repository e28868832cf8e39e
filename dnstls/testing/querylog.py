# -*- test-case-name: tests.testing.test_testing -*-
"""
A record of the queries a server received, so that a test can assert what
its client sent: the transport, the question, the EDNS options (padding,
keepalive), the TO bit, and for TLS the SNI name, the ALPN protocol and
whether the session was resumed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rdataclass
import dns.rdatatype

from dnstls.transport.tlsinfo import TLSInfo, negotiated
from dnstls.transport.upgrade import TO

__all__ = ["LoggedQuery", "QueryLog", "TLSInfo", "negotiated"]


@dataclass(frozen=True)
class LoggedQuery:
    """
    One query as received.
    """

    transport: str
    peer: str
    id: int
    name: str
    type: str
    rclass: str
    rd: bool
    edns: int
    payload: int | None
    do: bool
    to: bool
    options: tuple[int, ...]
    padding: int | None
    keepalive: bool
    upgraded: bool
    tls: TLSInfo | None

    def as_dict(self) -> dict[str, Any]:
        """
        The entry as plain data (JSON-ready).
        """
        return asdict(self)


class QueryLog:
    """
    The last C{size} queries, oldest first.
    """

    def __init__(self, size: int = 10000) -> None:
        self.entries: deque[LoggedQuery] = deque(maxlen=size)

    def record(
        self,
        query: dns.message.Message,
        transport: str,
        peer: tuple[str, int],
        upgraded: bool = False,
        tls: TLSInfo | None = None,
    ) -> None:
        """
        Add a parsed query.
        """
        options = tuple(int(o.otype) for o in query.options)
        padding = None
        for option in query.options:
            if option.otype == dns.edns.OptionType.PADDING:
                padding = len(option.to_wire() or b"")
        question = query.question[0] if query.question else None
        self.entries.append(
            LoggedQuery(
                transport=transport,
                peer=f"{peer[0]}:{peer[1]}",
                id=query.id,
                name=question.name.to_text() if question is not None else "",
                type=dns.rdatatype.to_text(question.rdtype) if question is not None else "",
                rclass=dns.rdataclass.to_text(question.rdclass) if question is not None else "",
                rd=bool(query.flags & dns.flags.RD),
                edns=query.edns,
                payload=query.payload if query.edns >= 0 else None,
                do=bool(query.ednsflags & dns.flags.DO),
                to=query.edns >= 0 and bool(query.ednsflags & TO),
                options=options,
                padding=padding,
                keepalive=int(dns.edns.OptionType.KEEPALIVE) in options,
                upgraded=upgraded,
                tls=tls,
            )
        )

    def clear(self) -> None:
        """
        Forget everything recorded.
        """
        self.entries.clear()
