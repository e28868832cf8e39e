"""
The C{twistd dnstls} plugin: a pointer to L{dnstls.tap}, imported only when
the subcommand is used.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, ServiceMaker


class _DNSTLSServiceMaker(ServiceMaker):
    """
    L{dnstls.tap}, with a start-up error turned into one line on standard
    error and exit status 1 instead of a traceback.
    """

    def makeService(self, options: Any) -> IService:
        from dnstls.errors import StartupError

        try:
            return super().makeService(options)  # type: ignore[no-any-return]
        except StartupError as e:
            raise SystemExit(f"twistd dnstls: {e}") from None


dnstls = _DNSTLSServiceMaker(
    "dnstls",
    "dnstls.tap",
    "An authoritative DNS server with DNS over TLS and the TO-bit STARTTLS upgrade.",
    "dnstls",
)
