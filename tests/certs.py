"""
Certificates for the TLS tests, made fresh with C{cryptography} for each
test run (no private key is ever committed): a CA, leaves signed by it for
given names (ECDSA or RSA, optionally behind an intermediate, optionally
expired), written as PEM files into a directory the test owns.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dnstls.testing.certs import (
    PrivateKey,
    ca_certificate,
    key_pem,
    server_certificate,
    write_certificates,
    write_key,
)

__all__ = ["Issuer", "Leaf", "PrivateKey", "key_pem", "make_ca", "make_leaf", "new_key"]

_NOW = datetime.datetime.now(datetime.UTC)
_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issuer:
    """
    A CA (or intermediate) that signs leaves.

    @ivar path: its certificate in PEM, the trust anchor file for clients.
    """

    certificate: x509.Certificate
    key: PrivateKey
    path: Path

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Leaf:
    """
    A server certificate and its key, written as PEM files.

    @ivar chain: the leaf first, then any intermediates (as in C{cert}).
    """

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey
    cert: Path
    key_path: Path

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


def new_key(kind: str = "ec", bits: int = 2048) -> PrivateKey:
    """
    A fresh private key: ECDSA P-256 (C{"ec"}) or RSA of C{bits}.
    """
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_ca(directory: Path, name: str = "dnstls test CA", issuer: Issuer | None = None) -> Issuer:
    """
    A self-signed CA, or with C{issuer} an intermediate CA signed by it,
    its certificate written to C{directory/<name>.pem}.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = new_key("ec")
    signer = (issuer.certificate, issuer.key) if issuer else None
    certificate = ca_certificate(key, name, _NOW - _DAY, _NOW + 30 * _DAY, issuer=signer)
    path = directory / (name.replace(" ", "-") + ".pem")
    write_certificates(path, [certificate])
    return Issuer(certificate, key, path)


def make_leaf(
    issuer: Issuer,
    directory: Path,
    names: tuple[str, ...] = ("dns.example.test",),
    *,
    stem: str | None = None,
    kind: str = "ec",
    bits: int = 2048,
    expired: bool = False,
    chain: tuple[Issuer, ...] = (),
    key: PrivateKey | None = None,
) -> Leaf:
    """
    A server certificate for C{names} signed by C{issuer}, written with its
    key to C{directory/<stem>.pem} and C{directory/<stem>.key}.

    @param kind: C{"ec"} (P-256) or C{"rsa"} (of C{bits}).
    @param expired: valid only in the past.
    @param chain: intermediates to append after the leaf in the PEM file.
    @param key: use this key rather than a new one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = key if key is not None else new_key(kind, bits)
    if expired:
        not_before, not_after = _NOW - 60 * _DAY, _NOW - 30 * _DAY
    else:
        not_before, not_after = _NOW - _DAY, _NOW + 30 * _DAY
    certificate = server_certificate(
        key, names, not_before, not_after, issuer=(issuer.certificate, issuer.key)
    )
    stem = stem or names[0].replace("*", "star")
    cert_path = directory / f"{stem}.pem"
    key_path = directory / f"{stem}.key"
    full_chain = (certificate, *(i.certificate for i in chain))
    write_certificates(cert_path, full_chain)
    write_key(key_path, key)
    return Leaf(full_chain, key, cert_path, key_path)
