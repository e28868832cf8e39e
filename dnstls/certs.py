# -*- test-case-name: tests.test_certs -*-
"""
Certificates and keys for DNS over TLS: reading PEM files, generating the
self-signed default once, and the SHA-256 SPKI pin clients can check.

The pin is the form RFC 7858 section 4.2 and stubby's C{tls_pubkey_pinset}
use, and kdig's C{+tls-pin}: base64 of the SHA-256 digest of the DER
SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dnstls.errors import StartupError
from dnstls.errors import reason as _reason

#: The file names of the generated default under the state directory.
GENERATED_CERT = "dnstls-selfsigned.pem"
GENERATED_KEY = "dnstls-selfsigned.key"
#: How long the generated certificate is valid.
GENERATED_LIFETIME = datetime.timedelta(days=3650)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Credential:
    """
    A certificate chain and its private key.

    @ivar chain: the leaf first, then any intermediates.
    @ivar key: the leaf's private key.
    @ivar source: where it came from, for logs and errors.
    """

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey
    source: str

    @property
    def leaf(self) -> x509.Certificate:
        """
        The certificate that names the server.
        """
        return self.chain[0]

    @property
    def names(self) -> tuple[str, ...]:
        """
        The DNS names in the leaf's subjectAltName, lower case.
        """
        try:
            san = self.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return ()
        return tuple(name.lower().rstrip(".") for name in san.value.get_values_for_type(x509.DNSName))

    @property
    def pin(self) -> str:
        """
        The SHA-256 SPKI pin of the leaf, in base64.
        """
        return spki_pin(self.leaf)


def spki_pin(certificate: x509.Certificate) -> str:
    """
    base64(SHA-256(SubjectPublicKeyInfo)) of C{certificate}.
    """
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def load_credential(cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> Credential:
    """
    Read a PEM certificate chain and its PEM private key.

    @raise StartupError: if a file cannot be read or parsed, or the key does
        not match the certificate, or an RSA key is below 2048 bits
        (RFC 9325 section 4.5).
    """
    try:
        cert_pem = Path(cert_path).read_bytes()
        if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
            raise ValueError("no PEM certificate in it")
        chain = tuple(x509.load_pem_x509_certificates(cert_pem))
    except (OSError, ValueError) as e:
        raise StartupError(f"{cert_path}: cannot read the certificate: {_reason(e)}") from None
    key = load_private_key(key_path)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != chain[0].public_key().public_bytes(der, public):
        raise StartupError(f"{key_path}: the key does not match the certificate {cert_path}")
    return Credential(chain, key, str(cert_path))


def load_private_key(key_path: str | os.PathLike[str]) -> PrivateKey:
    """
    Read a PEM private key.

    @raise StartupError: if the file cannot be read or parsed, the key is
        neither RSA nor ECDSA, or an RSA key is below 2048 bits (RFC 9325
        section 4.5).
    """
    try:
        key_pem = Path(key_path).read_bytes()
        if b"PRIVATE KEY-----" not in key_pem:
            raise ValueError("no PEM private key in it")
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (OSError, ValueError, TypeError) as e:
        raise StartupError(f"{key_path}: cannot read the private key: {_reason(e)}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise StartupError(f"{key_path}: only RSA and ECDSA keys are supported")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise StartupError(f"{key_path}: an RSA key must have at least 2048 bits")
    return key


def generate_self_signed(
    names: tuple[str, ...], now: datetime.datetime | None = None, key: PrivateKey | None = None
) -> Credential:
    """
    A self-signed certificate for C{names}, for C{key} or a new ECDSA P-256
    key.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + GENERATED_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Credential((certificate,), key, "generated")


def default_credential(state_dir: str | os.PathLike[str], names: tuple[str, ...]) -> Credential:
    """
    The self-signed credential kept under C{state_dir}: read if it is there,
    generated and written (the key readable by its owner only) if not.  A
    key whose certificate is gone gets a new certificate, so that its SPKI
    pin stays.

    @raise StartupError: if the directory or the files cannot be used.
    """
    directory = Path(state_dir)
    cert_path = directory / GENERATED_CERT
    key_path = directory / GENERATED_KEY
    if cert_path.exists() and key_path.exists():
        return load_credential(cert_path, key_path)
    key = load_private_key(key_path) if key_path.exists() else None
    return keep_generated(directory, generate_self_signed(names, key=key))


def keep_generated(state_dir: str | os.PathLike[str], credential: Credential) -> Credential:
    """
    Write C{credential} under C{state_dir} as the generated default (the
    key readable by its owner only), the directory made if need be.

    @return: C{credential}, its source the certificate's path.
    @raise StartupError: if the directory or the files cannot be written.
    """
    directory = Path(state_dir)
    cert_path = directory / GENERATED_CERT
    key_path = directory / GENERATED_KEY
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_pem = credential.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # The key goes through a new file of mode 0600 renamed into place:
        # opening a stale key file left by an earlier run would keep its
        # mode, perhaps world-readable.
        _write_private(key_path, key_pem, 0o600)
        _write_private(cert_path, credential.leaf.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as e:
        raise StartupError(f"{directory}: cannot keep the generated certificate: {_reason(e)}") from None
    return Credential(credential.chain, credential.key, str(cert_path))


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """
    Write C{data} to C{path} through a temporary file of C{mode} in the same
    directory, renamed over C{path} once complete.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise

