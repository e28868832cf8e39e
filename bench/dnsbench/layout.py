"""
Where the harness's files are, and the name its servers' certificate carries.
"""

from __future__ import annotations

from pathlib import Path

#: The bench/ directory: templates, zone, query file, helper scripts.
HERE = Path(__file__).resolve().parent.parent
#: The repository's root.
REPO = HERE.parent
ZONE = HERE / "example.test.zone"
QUERIES = HERE / "queries.txt"
TLS_NAME = "dns.example.test"
