"""
The test kit for client developers: a real dnstls server on free loopback
ports (L{start_server}, L{TestServer}), the pytest plugin's fixtures
(L{dnstls.testing.pytest_plugin}), fault injection and the query log the
server keeps for the test (L{dnstls.testing.faults},
L{dnstls.testing.querylog}, served on the control socket of
L{dnstls.testing.control}), throw-away certificates
(L{dnstls.testing.certs}) and child processes (L{dnstls.testing.process}).
"""

from dnstls.testing.fixture import CERTIFICATES, TestServer, TestServerError, Zones, start_server

__all__ = ["CERTIFICATES", "TestServer", "TestServerError", "Zones", "start_server"]
