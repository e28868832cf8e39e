"""
Tests for C{dnstls-query} (L{dnstls.client.query}) against a running server, for
each transport.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dnstls.client.query import EXIT_NO_REPLY, EXIT_USAGE, main
from tests.support import ZONES, DnstlsProcess, free_port

NAME = "dns.example.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DnstlsProcess, Path]]:
    state = tmp_path_factory.mktemp("state")
    process = DnstlsProcess(
        [
            "--zones", str(ZONES), "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
            "--state-dir", str(state), "--tls-name", NAME,
        ]
    )
    try:
        yield process, state / "dnstls-selfsigned.pem"
    finally:
        process.stop()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls", "starttls"])
def test_each_transport_prints_dig_format(
    server: tuple[DnstlsProcess, Path], capsys: pytest.CaptureFixture[str], transport: str
) -> None:
    """Every transport prints the answer in dig's layout and exits 0."""
    process, ca = server
    host, port = process.address("tls" if transport == "tls" else "tcp")
    status, out, _ = run(
        capsys, f"@{host}", "-p", str(port), f"+{transport}", "--ca", str(ca),
        "--hostname", NAME, "www.corner.test", "A",
    )
    assert status == 0
    assert "status: NOERROR" in out
    assert re.search(r"^www\.corner\.test\. 3600 IN A 192\.0\.2\.80$", out, re.M)
    assert f"({transport})" in out


def test_starttls_json_says_upgraded(
    server: tuple[DnstlsProcess, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """With --json over starttls the output says the connection was upgraded and shows keepalive."""
    process, ca = server
    host, port = process.address("tcp")
    status, out, _ = run(
        capsys, f"@{host}", "-p", str(port), "+starttls", "--ca", str(ca), "--hostname", NAME,
        "--keepalive", "--padding", "--json", "corner.test", "MX",
    )
    assert status == 0
    data = json.loads(out)
    assert data["upgraded"] is True
    assert data["rcode"] == "NOERROR"
    assert "corner.test. 3600 IN MX 10 mail.corner.test." in data["answer"]
    names = {option["name"]: option["text"] for option in data["edns"]["options"]}
    assert names["KEEPALIVE"] == "30.0 s"
    assert "PADDING" in names


def test_wrong_hostname_is_no_reply(
    server: tuple[DnstlsProcess, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate for another name over +tls ends with exit 9 and a reason."""
    process, ca = server
    host, port = process.address("tls")
    status, _, err = run(
        capsys, f"@{host}", "-p", str(port), "+tls", "--ca", str(ca), "--hostname", "other.example",
        "www.corner.test",
    )
    assert status == EXIT_NO_REPLY
    assert "not for other.example" in err


def test_nothing_listening_exits_9(capsys: pytest.CaptureFixture[str]) -> None:
    """A transport failure exits with status 9, as dig does when no reply came."""
    status, _, err = run(capsys, "@127.0.0.1", "-p", str(free_port()), "+tcp", "x.test")
    assert status == EXIT_NO_REPLY
    assert err.startswith("dnstls-query: no reply:")


def test_usage_error_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """Two names, or none, is a usage error with exit status 1."""
    assert run(capsys, "a.test", "b.test")[0] == EXIT_USAGE
    assert run(capsys, "--json")[0] == EXIT_USAGE


def test_installed_command(server: tuple[DnstlsProcess, Path]) -> None:
    """The dnstls-query command the package installs answers over UDP."""
    command = shutil.which("dnstls-query")
    if command is None:
        pytest.skip("dnstls-query is not installed (pip install .)")
    process, _ = server
    host, port = process.address("udp")
    result = subprocess.run(
        [command, f"@{host}", "-p", str(port), "www.corner.test", "AAAA"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "2001:db8::80" in result.stdout
