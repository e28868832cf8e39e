# -*- test-case-name: tests.testing.test_testing -*-
"""
The pytest plugin of dnstls (entry point C{pytest11}): fixtures that start
real DNS servers for the tests of DNS clients.

  - C{dnstls_factory}: a function that starts a server
    (L{dnstls.testing.start_server}'s arguments) and stops it after the test.
  - C{dnstls_test_server}: one server with the default zone
    (C{example.test.}: C{www}, C{mail}), a throwaway CA and the name
    C{dns.example.test}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dnstls.testing import TestServer, Zones, start_server


@pytest.fixture
def dnstls_factory() -> Iterator[Callable[..., TestServer]]:
    """
    Start dnstls servers for this test; each is stopped, and its files
    removed, when the test ends.
    """
    servers: list[TestServer] = []

    def start(zones: Zones = None, **options: Any) -> TestServer:
        server = start_server(zones, **options)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        errors: list[BaseException] = []
        for server in reversed(servers):
            try:
                server.stop()
            except BaseException as e:  # stop the others all the same
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def dnstls_test_server(dnstls_factory: Callable[..., TestServer]) -> TestServer:
    """
    A dnstls server with the default zone, on free loopback ports.
    """
    return dnstls_factory()
