"""
OpenSSL connections joined over memory BIOs, for tests that drive TLS by
hand.
"""

from __future__ import annotations

from OpenSSL import SSL


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
