"""
How figures print in the notes and the report.
"""

from __future__ import annotations


def fmt_rcodes(rcodes: dict[str, int]) -> str:
    """
    Response codes and their counts, e.g. C{NOERROR 700 NXDOMAIN 300}.
    """
    return " ".join(f"{k} {v}" for k, v in sorted(rcodes.items())) or "-"


def fmt(value: float | None, digits: int = 2) -> str:
    """
    C{value} with thousands separators and C{digits} decimals, or C{-}.
    """
    return "-" if value is None else f"{value:,.{digits}f}"
