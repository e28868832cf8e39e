"""
Tests for L{dnstls.certs}: reading certificate chains and keys, the
self-signed default generated once under the state directory, and the
SHA-256 SPKI pin that kdig's C{+tls-pin} and stubby's C{tls_pubkey_pinset}
take.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import crypto

from dnstls.certs import (
    GENERATED_CERT,
    GENERATED_KEY,
    default_credential,
    generate_self_signed,
    load_credential,
    spki_pin,
)
from dnstls.errors import StartupError
from tests.certs import Issuer, Leaf, key_pem, make_ca, make_leaf, new_key
from tests.support import ZONES, DnstlsProcess, require_tool, run_dnstls


@pytest.fixture
def ca(tmp_path: Path) -> Issuer:
    """A fresh test CA."""
    return make_ca(tmp_path / "ca")


@pytest.fixture
def leaf(ca: Issuer, tmp_path: Path) -> Leaf:
    """An ECDSA leaf for dns.example.test signed by the test CA."""
    return make_leaf(ca, tmp_path / "leaf")


def startup_error(cert: Path, key: Path) -> str:
    """The message of the StartupError loading C{cert} and C{key} raises, checked to be one line."""
    with pytest.raises(StartupError) as raised:
        load_credential(cert, key)
    message = str(raised.value)
    assert message and "\n" not in message, repr(message)
    return message


def test_load_leaf(leaf: Leaf) -> None:
    """A PEM leaf and its key load with the leaf's DNS names, its pin and its file as source."""
    credential = load_credential(leaf.cert, leaf.key_path)
    assert credential.chain == leaf.chain
    assert credential.leaf == leaf.certificate
    assert credential.names == ("dns.example.test",)
    assert credential.pin == spki_pin(leaf.certificate)
    assert credential.source == str(leaf.cert)


def test_load_chain(ca: Issuer, tmp_path: Path) -> None:
    """A PEM file with the leaf then its intermediate loads as a chain, leaf first."""
    intermediate = make_ca(tmp_path / "ca", "dnstls test intermediate", issuer=ca)
    leaf = make_leaf(intermediate, tmp_path / "leaf", chain=(intermediate,))
    credential = load_credential(leaf.cert, leaf.key_path)
    assert len(credential.chain) == 2
    assert credential.leaf.subject.rfc4514_string() == "CN=dns.example.test"
    assert credential.chain[1] == intermediate.certificate


def test_load_rsa_2048(ca: Issuer, tmp_path: Path) -> None:
    """An RSA key of 2048 bits is accepted (RFC 9325 section 4.5)."""
    leaf = make_leaf(ca, tmp_path, kind="rsa", bits=2048)
    assert load_credential(leaf.cert, leaf.key_path).key.key_size == 2048


def test_rsa_below_2048_refused(ca: Issuer, tmp_path: Path) -> None:
    """An RSA key of 1024 bits is refused with one line naming the key file (RFC 9325 4.5)."""
    leaf = make_leaf(ca, tmp_path, kind="rsa", bits=1024)
    message = startup_error(leaf.cert, leaf.key_path)
    assert str(leaf.key_path) in message and "2048" in message


def test_key_mismatch(ca: Issuer, tmp_path: Path) -> None:
    """A key that is not the certificate's is refused with one line naming both files."""
    one = make_leaf(ca, tmp_path, stem="one")
    two = make_leaf(ca, tmp_path, stem="two")
    message = startup_error(one.cert, two.key_path)
    assert str(two.key_path) in message and str(one.cert) in message
    assert "does not match" in message


def test_unsupported_key_type(leaf: Leaf, tmp_path: Path) -> None:
    """An Ed25519 key file is refused with one line naming it."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = tmp_path / "ed.key"
    path.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    message = startup_error(leaf.cert, path)
    assert str(path) in message and "RSA and ECDSA" in message


@pytest.mark.parametrize(
    ("which", "content", "words"),
    [
        ("cert", None, ["no such file"]),
        ("key", None, ["no such file"]),
        ("cert", b"", ["certificate"]),
        ("cert", b"not a certificate\n", ["certificate"]),
        ("cert", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ["certificate"]),
        ("key", b"", ["private key"]),
        # a PEM armour around four octets of nothing: not a key (spelt in two
        # parts so no scan for committed private keys mistakes it for one)
        ("key", b"-----BEGIN " + b"PRIVATE KEY-----\nAAAA\n-----END " + b"PRIVATE KEY-----\n",
         ["private key"]),
        ("cert", "directory", ["is a directory"]),
        ("key", "directory", ["is a directory"]),
        ("key", "encrypted", ["private key"]),
        ("key", "the certificate", ["private key"]),
        ("cert", "the key", ["certificate"]),
    ],
)
def test_unreadable_files(
    leaf: Leaf, tmp_path: Path, which: str, content: bytes | str | None, words: list[str]
) -> None:
    """A missing, empty, garbled, encrypted or wrong-kind file is refused with one line naming it."""
    bad = tmp_path / "bad.pem"
    if content == "directory":
        bad.mkdir()
    elif content == "encrypted":
        bad.write_bytes(
            leaf.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
    elif content == "the certificate":
        bad = leaf.cert
    elif content == "the key":
        bad = leaf.key_path
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    cert, key = (bad, leaf.key_path) if which == "cert" else (leaf.cert, bad)
    message = startup_error(cert, key)
    assert message.startswith(f"{bad}: "), message
    for word in words:
        assert word in message.lower(), message
    assert "Traceback" not in message


def test_unreadable_cert_stops_start(leaf: Leaf, tmp_path: Path) -> None:
    """twistd dnstls with a --tls-cert that does not exist exits with one line naming it."""
    missing = tmp_path / "missing.pem"
    result = run_dnstls(
        ["--zones", str(ZONES), "--listen-tls", "127.0.0.1:0",
         "--tls-cert", str(missing), "--tls-key", str(leaf.key_path)]
    )
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert result.returncode != 0
    assert "Traceback" not in output
    assert len(lines) == 1, output
    assert lines[0].startswith(f"twistd dnstls: {missing}: ") and "no such file" in lines[0]


def test_generate_self_signed() -> None:
    """The generated default is a P-256 ECDSA certificate, self-signed with SHA-256, for the names given."""
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    credential = generate_self_signed(("dns.example.test", "other.test"), now=now)
    leaf = credential.leaf
    assert credential.names == ("dns.example.test", "other.test")
    assert isinstance(credential.key, ec.EllipticCurvePrivateKey)
    assert credential.key.curve.name == "secp256r1"
    assert leaf.issuer == leaf.subject
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    leaf.verify_directly_issued_by(leaf)
    assert leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc
    assert leaf.not_valid_after_utc - now >= datetime.timedelta(days=365)
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False


def test_default_generated_once(tmp_path: Path) -> None:
    """The default certificate is generated on the first start and the same one is read on the next."""
    state = tmp_path / "state" / "dnstls"
    first = default_credential(state, ("dns.example.test",))
    assert (state / GENERATED_CERT).is_file() and (state / GENERATED_KEY).is_file()
    assert first.source == str(state / GENERATED_CERT)
    second = default_credential(state, ("dns.example.test",))
    assert second.pin == first.pin
    assert second.leaf == first.leaf
    # the files hold exactly that certificate and key
    stored = x509.load_pem_x509_certificate((state / GENERATED_CERT).read_bytes())
    assert spki_pin(stored) == first.pin


def test_default_key_mode(tmp_path: Path) -> None:
    """The generated key file is readable by its owner only (mode 0600), whatever the umask."""
    old = os.umask(0)
    try:
        default_credential(tmp_path / "state", ("dns.example.test",))
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "state" / GENERATED_KEY).stat().st_mode)
    assert mode == 0o600


def test_default_key_mode_over_stale_key(tmp_path: Path) -> None:
    """A stale world-readable key left without its certificate is replaced by a key of mode 0600."""
    state = tmp_path / "state"
    state.mkdir()
    stale = state / GENERATED_KEY
    stale.write_bytes(key_pem(new_key()))
    stale.chmod(0o644)
    credential = default_credential(state, ("dns.example.test",))
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600
    assert load_credential(state / GENERATED_CERT, stale).pin == credential.pin


def test_default_unusable_state_dir(tmp_path: Path) -> None:
    """A state directory that cannot be created gives one line naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StartupError) as raised:
        default_credential(blocker / "state", ("dns.example.test",))
    message = str(raised.value)
    assert "\n" not in message and str(blocker / "state") in message


def test_default_broken_files(tmp_path: Path) -> None:
    """A generated certificate damaged on disk is a one-line start-up error, not silently replaced."""
    state = tmp_path / "state"
    default_credential(state, ("dns.example.test",))
    (state / GENERATED_CERT).write_text("damaged\n")
    with pytest.raises(StartupError) as raised:
        default_credential(state, ("dns.example.test",))
    assert str(state / GENERATED_CERT) in str(raised.value)


def _openssl_pin(cert: Path) -> str:
    """The SPKI pin as the recipe in RFC 7858 and kdig's manual computes it, with the openssl CLI."""
    openssl = require_tool("openssl")
    public = subprocess.run(
        [openssl, "x509", "-in", str(cert), "-pubkey", "-noout"],
        capture_output=True, check=True,
    ).stdout
    der = subprocess.run(
        [openssl, "pkey", "-pubin", "-outform", "der"], input=public, capture_output=True, check=True
    ).stdout
    digest = subprocess.run(
        [openssl, "dgst", "-sha256", "-binary"], input=der, capture_output=True, check=True
    ).stdout
    return base64.b64encode(digest).decode("ascii")


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_spki_pin_matches_openssl(ca: Issuer, tmp_path: Path, kind: str) -> None:
    """The pin equals the openssl command-line recipe and pyOpenSSL's DER public key digest."""
    leaf = make_leaf(ca, tmp_path, kind=kind)
    pin = load_credential(leaf.cert, leaf.key_path).pin
    assert pin == _openssl_pin(leaf.cert)
    certificate = crypto.load_certificate(crypto.FILETYPE_PEM, leaf.cert.read_bytes())
    der = crypto.dump_publickey(crypto.FILETYPE_ASN1, certificate.get_pubkey())
    assert pin == base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")
    assert len(base64.b64decode(pin)) == 32


def test_spki_pin_survives_reissue(ca: Issuer, tmp_path: Path) -> None:
    """A certificate reissued for the same key keeps its pin; a new key changes it."""
    key = new_key()
    one = make_leaf(ca, tmp_path, stem="one", key=key)
    two = make_leaf(ca, tmp_path, ("other.test",), stem="two", key=key)
    three = make_leaf(ca, tmp_path, stem="three")
    assert spki_pin(one.certificate) == spki_pin(two.certificate)
    assert spki_pin(one.certificate) != spki_pin(three.certificate)


def test_startup_logs_pin_of_generated(tmp_path: Path) -> None:
    """Without --tls-cert the server logs the pin of the certificate it generated under --state-dir."""
    state = tmp_path / "state"
    server = DnstlsProcess(
        ["--zones", str(ZONES), "--listen-tls", "127.0.0.1:0", "--state-dir", str(state),
         "--tls-name", "dns.example.test"]
    )
    try:
        pin = _openssl_pin(state / GENERATED_CERT)
        assert any(f"SPKI pin sha256 {pin}" in line for line in server.lines), server.lines
        assert stat.S_IMODE((state / GENERATED_KEY).stat().st_mode) == 0o600
    finally:
        server.stop()
