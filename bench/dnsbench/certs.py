"""
The throw-away CA and server certificate the DoT servers of a run use.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_certs(certs: Path) -> Path:
    """
    A throw-away CA and an ECDSA P-256 server certificate for
    dns.example.test and 127.0.0.1, made with the openssl command.
    """
    certs.mkdir(parents=True)
    (certs / "server.cnf").write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = dns.example.test\n"
        "[v3_srv]\nbasicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
        "subjectAltName = DNS:dns.example.test, IP:127.0.0.1\n"
    )

    def openssl(*argv: str) -> None:
        subprocess.run(
            ["openssl", *argv],
            cwd=certs,
            check=True,
            timeout=30,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    openssl(
        "req",
        "-new",
        "-x509",
        "-key",
        "ca.key",
        "-subj",
        "/CN=dnstls bench CA (throw-away)",
        "-days",
        "2",
        "-sha256",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key")
    openssl("req", "-new", "-key", "server.key", "-config", "server.cnf", "-out", "server.csr")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        "server.cnf",
        "-extensions",
        "v3_srv",
        "-out",
        "server.pem",
    )
    return certs / "ca.pem"
