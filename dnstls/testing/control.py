# -*- test-case-name: tests.testing.test_testing -*-
"""
The control socket of a server started for tests (C{--control PATH}): a
UNIX socket that speaks one JSON object per line, so that a test can change
the L{Faults} and read the L{QueryLog} while the server runs.

Requests and their replies::

    {"op": "faults", "set": {"delay": {"*": 0.5}}}  -> {"ok": true, "faults": {...}}
    {"op": "faults"}                                -> {"ok": true, "faults": {...}}
    {"op": "reset"}                                 -> {"ok": true, "faults": {...}}
    {"op": "log"}                                   -> {"ok": true, "queries": [...]}
    {"op": "clear"}                                 -> {"ok": true}

A request that cannot be carried out gets C{{"ok": false, "error": "..."}}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver

from dnstls.testing.faults import Faults
from dnstls.testing.querylog import QueryLog


class ControlProtocol(LineOnlyReceiver):
    """
    One connection to the control socket.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, faults: Faults, log: QueryLog) -> None:
        self.faults = faults
        self.log = log

    def lineReceived(self, line: bytes) -> None:
        """
        Carry out one request and write its reply.
        """
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            reply = self._do(request)
        except (ValueError, TypeError, KeyError) as e:
            reply = {"ok": False, "error": str(e)}
        self.sendLine(json.dumps(reply).encode("utf-8"))

    def _do(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "faults":
            if "set" in request:
                self.faults.update(dict(request["set"]))
            return {"ok": True, "faults": self.faults.as_dict()}
        if op == "reset":
            self.faults.reset()
            return {"ok": True, "faults": self.faults.as_dict()}
        if op == "log":
            return {"ok": True, "queries": [entry.as_dict() for entry in self.log.entries]}
        if op == "clear":
            self.log.clear()
            return {"ok": True}
        raise ValueError(f"unknown op {op!r}")


class ControlFactory(Factory):
    """
    Serves the control socket.
    """

    noisy = False

    def __init__(self, faults: Faults, log: QueryLog) -> None:
        self.faults = faults
        self.log = log

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        """
        A protocol sharing this server's faults and log.
        """
        return ControlProtocol(self.faults, self.log)
