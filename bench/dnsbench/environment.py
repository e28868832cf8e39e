"""
What a run ran on: the programs' versions, where dnstls is imported from,
and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
from pathlib import Path

from dnsbench.layout import REPO
from dnsbench.processes import capture
from dnsbench.servers import Server


def versions(servers: dict[str, Server], args: argparse.Namespace) -> dict[str, str]:
    """
    The version of every program in the run.
    """
    found: dict[str, str] = {}

    def first(pattern: str, text: str) -> str:
        m = re.search(pattern, text)
        return m[1].strip() if m else "unknown"

    script = (
        "import importlib.metadata as m, platform\n"
        "from OpenSSL import SSL\n"
        "def v(p):\n"
        "    try: return m.version(p)\n"
        "    except Exception: return '-'\n"
        "print('Python', platform.python_version(), '| dnstls', v('dnstls'), '| Twisted', v('Twisted'),"
        " '| pyOpenSSL', v('pyOpenSSL'), '| cryptography', v('cryptography'), '| dnspython', v('dnspython'),"
        " '| TLS library', SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode())"
    )
    exe = _python_of(args.twistd)
    found["dnstls"] = capture([exe, "-c", script]).strip() if exe else "unknown"
    git = capture(["git", "-C", str(REPO), "describe", "--always", "--dirty"]).strip()
    if git and "fatal" not in git:
        found["dnstls"] += f" (git {git})"
    found["dnsperf"] = first(r"Version (\S+)", capture(["dnsperf", "-h"]))
    found["openssl command (and the system library)"] = capture(["openssl", "version"]).strip()
    peers = set(servers) | set(args.peers)
    if "knot" in peers:
        found["knotd"] = first(r"version (\S+)", capture(["knotd", "-V"]))
    if "nsd" in peers:
        found["nsd"] = first(r"NSD version (\S+)", capture(["nsd", "-v"]))
    if "unbound" in peers:
        found["unbound"] = first(r"Version (\S+)", capture(["unbound", "-V"]))
    if "dnsdist" in peers:
        found["dnsdist"] = first(r"dnsdist (\S+)", capture(["dnsdist", "--version"]))
    if "twisted" in peers:
        exe = _python_of(args.names_twistd)
        found["Twisted Names"] = "Twisted " + (
            capture([exe, "-c", "import importlib.metadata as m; print(m.version('Twisted'))"]).strip()
            if exe
            else "unknown"
        )
    return found


def dnstls_source(args: argparse.Namespace) -> str:
    """
    Where the twistd that runs dnstls imports it from.
    """
    exe = _python_of(args.twistd)
    if not exe:
        return ""
    return capture(
        [exe, "-c", "import dnstls, os; print(os.path.dirname(os.path.realpath(dnstls.__file__)))"],
    ).strip()


def _python_of(twistd: str) -> str:
    """
    The interpreter that runs C{twistd} (its shebang), or C{""}.
    """
    path = shutil.which(twistd)
    if not path:
        return ""
    resolved = capture(["sh", "-c", f'head -c 300 "{path}"'])
    if resolved.startswith("#!"):
        interp = resolved[2:].splitlines()[0].split()
        if interp and interp[0].endswith("env") and len(interp) > 1:
            return shutil.which(interp[1]) or ""
        if interp and "python" in interp[0]:
            return interp[0]
    # pyenv shims and the like: ask twistd's own python
    return capture(["sh", "-c", f'"{path}" --version >/dev/null 2>&1 && command -v python3']).strip()


def machine() -> dict[str, str]:
    """
    CPU model, cores, memory, kernel, load.
    """
    lscpu = capture(["lscpu"])
    model = re.search(r"Model name:\s+(.*)", lscpu)
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return {
        "cpu": model[1].strip() if model else platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "memory": f"{int(mem[1]) // 1024} MiB" if mem else "unknown",
        "kernel": platform.release(),
        "os": _os_name(),
    }


def _os_name() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "unknown"
    m = re.search(r'PRETTY_NAME="?([^"\n]*)', text)
    return m[1] if m else "unknown"
