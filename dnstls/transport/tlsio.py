# -*- test-case-name: tests.transport.test_tlsio -*-
"""
Bulk reads and writes on a pyOpenSSL memory-BIO connection, for the
DNS-over-TLS port's many small records.

pyOpenSSL's C{recv}, C{send} and C{bio_read} each allocate a fresh buffer,
check three handshake callbacks' errors and raise an exception to say
"nothing more": for a 50-octet DNS message that wrapping costs more than
the cryptography.  These functions make the same OpenSSL calls through the
same C binding with a buffer kept per thread, and hand every other outcome
to pyOpenSSL's own error mapping, so the exceptions are the ones
C{OpenSSL.SSL.Connection} raises.  Where the binding's internals are not as
expected (another pyOpenSSL), they fall back to the public methods;
L{RAW} says which is in use.
"""

from __future__ import annotations

import threading
from typing import Any

from OpenSSL import SSL

#: The most plaintext one read asks for: a whole TLS record.
RECORD_READ = 2**14
#: The most one read of the outgoing memory BIO takes at a time.
DRAIN_READ = 2**16

try:
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib

    _SSL_read = _lib.SSL_read
    _SSL_write = _lib.SSL_write
    _SSL_get_error = _lib.SSL_get_error
    _BIO_read = _lib.BIO_read
    _BIO_write = _lib.BIO_write
    _WANT_READ = _lib.SSL_ERROR_WANT_READ
    _probe = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    RAW = all(
        hasattr(_probe, name)
        for name in ("_ssl", "_into_ssl", "_from_ssl", "_raise_ssl_error", "_handle_bio_errors")
    )
    del _probe
except (ImportError, AttributeError):  # pragma: no cover - another pyOpenSSL
    RAW = False


class _Buffers(threading.local):
    """
    The C buffers of one thread: OpenSSL calls drop the GIL, so threads
    must not share them.
    """

    def __init__(self) -> None:
        self.read: Any = _ffi.new("char[]", RECORD_READ) if RAW else None
        self.drain: Any = _ffi.new("char[]", DRAIN_READ) if RAW else None


_buffers = _Buffers()


def feed(connection: SSL.Connection, data: bytes) -> None:
    """
    Put C{data}, as it came from the network, into C{connection}'s
    incoming BIO, as C{connection.bio_write(data)} does.
    """
    if not RAW:
        connection.bio_write(data)
        return
    bio = connection._into_ssl
    n = _BIO_write(bio, data, len(data))
    if n <= 0:
        connection._handle_bio_errors(bio, n)


def read_all(connection: SSL.Connection) -> tuple[bytes, SSL.Error | None]:
    """
    The plaintext of every whole record in C{connection}'s incoming BIO,
    and what ended the reading: C{None} when the BIO ran dry, or the
    exception pyOpenSSL's C{recv} would have raised (C{ZeroReturnError}
    for a close_notify).
    """
    chunks: list[bytes] = []
    if not RAW:
        try:
            while True:
                chunks.append(connection.recv(RECORD_READ))
        except SSL.WantReadError:
            return b"".join(chunks), None
        except SSL.Error as e:
            return b"".join(chunks), e
    ssl = connection._ssl
    buffer = _buffers.read
    while True:
        n = _SSL_read(ssl, buffer, RECORD_READ)
        if n <= 0:
            break
        chunks.append(_ffi.buffer(buffer, n)[:])
    received = b"".join(chunks)
    if _SSL_get_error(ssl, n) == _WANT_READ:
        return received, None
    try:
        connection._raise_ssl_error(ssl, n)
    except SSL.WantReadError:
        return received, None
    except SSL.Error as e:
        return received, e
    return received, None


def write(connection: SSL.Connection, data: bytes) -> int:
    """
    Encrypt C{data} (at most a record's worth is taken) into C{connection}'s
    outgoing BIO, as C{connection.send(data)} does, and say how many
    octets were taken; the same exceptions when it cannot.
    """
    if not RAW:
        return connection.send(data)
    ssl = connection._ssl
    n: int = _SSL_write(ssl, data, len(data))
    if n <= 0:
        connection._raise_ssl_error(ssl, n)
    return n


def drain(connection: SSL.Connection) -> bytes:
    """
    Everything waiting in C{connection}'s outgoing BIO (C{b""} for
    nothing), to be written to the network.
    """
    chunks: list[bytes] = []
    if not RAW:
        try:
            while True:
                chunks.append(connection.bio_read(DRAIN_READ))
        except SSL.WantReadError:
            return b"".join(chunks)
    bio = connection._from_ssl
    buffer = _buffers.drain
    while True:
        n = _BIO_read(bio, buffer, DRAIN_READ)
        if n <= 0:
            break
        chunks.append(_ffi.buffer(buffer, n)[:])
    if n < 0 and not _lib.BIO_should_retry(bio):
        connection._handle_bio_errors(bio, n)
    return b"".join(chunks)
