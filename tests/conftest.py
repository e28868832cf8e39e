"""
Fixtures shared by the tests: one dnstls server and one Knot DNS serving
C{tests/data/zones/} on loopback for the whole session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import ZONES, DnstlsProcess, KnotProcess


@pytest.fixture(scope="session")
def dnstls_server() -> Iterator[DnstlsProcess]:
    """
    C{twistd -n dnstls} serving C{tests/data/zones/} on UDP and TCP, on free
    ports of 127.0.0.1 and ::1.
    """
    server = DnstlsProcess(
        ["--zones", str(ZONES), "--listen", "127.0.0.1:0", "--listen", "[::1]:0"]
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def knot_server() -> Iterator[KnotProcess]:
    """
    Knot DNS serving the same zones, for comparison.
    """
    server = KnotProcess()
    yield server
    server.stop()
