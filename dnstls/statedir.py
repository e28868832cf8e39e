# -*- test-case-name: tests.test_statedir -*-
"""
The state directory that keeps the generated TLS key, and the SPKI pin
clients hold for that key.

The pin is the key's: a new key is a new pin, and every client that pins
the old one (stubby's C{tls_pubkey_pinset}, kdig's C{+tls-pin}) fails its
handshakes from then on.  So:

  - at start-up, a state directory that its group or others can reach,
    and a key file they can read, are one warning line each, naming the
    path, its mode and the C{chmod} that mends it; the server starts all
    the same.  Making a new key is one warning line giving the new pin
    (and the old one, when the certificate is still there without its
    key);
  - at a reload, when the key served is no longer in the state directory
    (the files or the whole directory deleted), the key served goes on
    being served and is written back, with one warning line: a restart
    then keeps the pin too.  Knot DNS keeps serving the key it started
    with (its C{key-file} is read at start only); Unbound reads its
    C{tls-service-key} again and cannot serve TLS without it.  Keeping
    the key breaks no client, and to change it on purpose one replaces
    the files, or deletes them and restarts.  A key replaced in the
    directory is served, with one warning line saying the pin changed.
"""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from twisted.logger import Logger

from dnstls.certs import (
    GENERATED_CERT,
    GENERATED_KEY,
    Credential,
    default_credential,
    keep_generated,
    spki_pin,
)
from dnstls.errors import StartupError

log = Logger()


def access_warnings(directory: Path) -> list[str]:
    """
    One line for C{directory} if its group or others have any access to it,
    and one for the generated key in it if they have any to the key.
    """
    lines = []
    for path, mode, noun, verb in (
        (directory, 0o700, "state directory", "reach"),
        (directory / GENERATED_KEY, 0o600, "TLS key", "read"),
    ):
        try:
            found = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if found & 0o077:
            lines.append(
                f"{noun} {path} has mode {found:04o}: its group or others can {verb} it "
                f"(run chmod {mode:o} {path})"
            )
    return lines


def start(directory: Path, names: tuple[str, ...]) -> Credential:
    """
    The generated default at start-up: read, or made when its key is not
    there, with a warning line for each mode too open and for a new key.

    @raise StartupError: if the directory or the files cannot be used.
    """
    for line in access_warnings(directory):
        log.warn("{line}", line=line)
    key_path = directory / GENERATED_KEY
    cert_path = directory / GENERATED_CERT
    if key_path.exists() and cert_path.exists():
        return default_credential(directory, names)
    if key_path.exists():
        credential = default_credential(directory, names)
        log.warn(
            "TLS certificate {path} is missing: made a new one for the key {key}, whose SPKI "
            "pin {pin} stays",
            path=cert_path,
            key=key_path,
            pin=credential.pin,
        )
        return credential
    before = _left_pin(directory)
    credential = default_credential(directory, names)
    if before is not None and before != credential.pin:
        log.warn(
            "TLS key {path} is missing: made a new one, and the SPKI pin changed from {old} to "
            "{new}: clients pinning {old} will fail",
            path=key_path,
            old=before,
            new=credential.pin,
        )
    else:
        log.warn(
            "TLS key {path} made, SPKI pin {new}: a new pin (the first start, or the state "
            "directory was lost): clients pinning an earlier key of this server will fail",
            path=key_path,
            new=credential.pin,
        )
    return credential


def reload(directory: Path, names: tuple[str, ...], served: Credential | None) -> Credential:
    """
    The generated default at a reload, given the one C{served}: that one,
    written back, when its key file is gone; else what the files hold (a
    key without its certificate gets a new one), with a warning line when
    its pin is not the one served.

    @raise StartupError: if the files there cannot be read.
    """
    cert_path = directory / GENERATED_CERT
    key_path = directory / GENERATED_KEY
    if served is not None and not key_path.exists():
        missing = key_path
        try:
            kept = keep_generated(directory, served)
        except StartupError as e:
            log.warn(
                "reload: {path} is gone: still serving the key with SPKI pin {pin}, but "
                "it cannot be written back ({error}): a restart will make a new key, and clients "
                "pinning {pin} will fail",
                path=missing,
                pin=served.pin,
                error=str(e),
            )
            return served
        log.warn(
            "reload: {path} is gone: still serving the key with SPKI pin {pin}, written "
            "back to {directory} (a new key would change the pin, and pinned clients would fail)",
            path=missing,
            pin=served.pin,
            directory=directory,
        )
        return kept
    made = key_path.exists() and not cert_path.exists()
    credential = default_credential(directory, names)
    if made:
        log.warn(
            "reload: TLS certificate {path} is gone: made a new one for the key {key}, SPKI pin "
            "{pin}",
            path=cert_path,
            key=key_path,
            pin=credential.pin,
        )
    if served is not None and credential.pin != served.pin:
        log.warn(
            "reload: TLS key {path} replaced: the SPKI pin changed from {old} to {new}: clients "
            "pinning {old} will fail",
            path=key_path,
            old=served.pin,
            new=credential.pin,
        )
    return credential


def _left_pin(directory: Path) -> str | None:
    """
    The pin of the generated certificate still in C{directory}, if it can
    be read.
    """
    try:
        return spki_pin(x509.load_pem_x509_certificate((directory / GENERATED_CERT).read_bytes()))
    except (OSError, ValueError):
        return None
