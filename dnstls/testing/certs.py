# -*- test-case-name: tests.testing.test_testing,tests.test_certs -*-
"""
Certificates for tests, made fresh with C{cryptography}: a CA (or an
intermediate), server certificates it signs, and their PEM files (a key
readable by its owner only).

L{dnstls.testing} makes its throwaway CA with these, and so do the
project's own tests (C{tests/certs.py}).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def common_name(name: str) -> x509.Name:
    """
    The distinguished name C{CN=name}.
    """
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def ca_certificate(
    key: PrivateKey,
    name: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    *,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    path_length: int | None = None,
) -> x509.Certificate:
    """
    A CA certificate for C{key} named C{CN=name}: self-signed, or with
    C{issuer} (its certificate and key) an intermediate signed by it.
    """
    subject = common_name(name)
    signer_name, signer_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(signer_key, hashes.SHA256())
    )


def server_certificate(
    key: PrivateKey,
    names: Sequence[str],
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    *,
    issuer: tuple[x509.Certificate, PrivateKey],
) -> x509.Certificate:
    """
    A server certificate for C{key} and the DNS C{names} (the first is
    also its common name), signed by C{issuer} (a CA's certificate and key).
    """
    issuer_certificate, issuer_key = issuer
    return (
        x509.CertificateBuilder()
        .subject_name(common_name(names[0]))
        .issuer_name(issuer_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )


def key_pem(key: PrivateKey) -> bytes:
    """
    C{key} as unencrypted PKCS#8 PEM.
    """
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_certificates(path: Path, certificates: Iterable[x509.Certificate]) -> None:
    """
    Write C{certificates} to C{path} as PEM, one after the other.
    """
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))


def write_key(path: Path, key: PrivateKey) -> None:
    """
    Write C{key} to C{path} as PEM, the file readable by its owner only
    from the start.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        os.fchmod(key_file.fileno(), 0o600)
        key_file.write(key_pem(key))
