"""
OpenSSL connections joined over memory BIOs, for tests that drive TLS by
hand.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from dnstls.certs import Credential


def move(source: SSL.Connection, destination: SSL.Connection) -> int:
    """Hand what C{source} has to send to C{destination}; how many octets moved."""
    try:
        data = source.bio_read(65536)
    except SSL.WantReadError:
        return 0
    destination.bio_write(data)
    return len(data)


def handshake(client: SSL.Connection, server: SSL.Connection) -> None:
    """Run the handshake between C{client} and C{server} (made the accepting side) to its end."""
    server.set_accept_state()
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except SSL.WantReadError:
                pass
        if not move(client, server) + move(server, client):
            break


def pem_certificate(credential: Credential) -> bytes:
    """
    The PEM form of C{credential}'s chain, for clients that want a CA file.
    """
    return b"".join(c.public_bytes(Encoding.PEM) for c in credential.chain)
