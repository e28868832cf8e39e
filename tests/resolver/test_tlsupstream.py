"""
Tests for L{dnstls.resolver.tlsupstream}: a DNS-over-TLS upstream as the
operator writes it.  Its authentication, by name or by pin, is tested
against real upstreams in L{tests.resolver.test_forward_tls}.
"""

from __future__ import annotations

import pytest

from dnstls.resolver.tlsupstream import TLSUpstream, parse_tls_upstream


def test_parse_tls_upstream() -> None:
    """HOST:PORT#NAME names the address and the certificate's name; the name is required."""
    assert parse_tls_upstream("127.0.0.1:853#dns.example.test") == TLSUpstream(
        "127.0.0.1", 853, "dns.example.test"
    )
    assert parse_tls_upstream("[::1]:853#a.test").host == "::1"
    for bad in ("127.0.0.1:853", "127.0.0.1:853#", "127.0.0.1:0#a.test", "nohost#a.test"):
        with pytest.raises(ValueError):
            parse_tls_upstream(bad)
