"""
Tests for L{dnstls.resolver.question}'s parts that need no servers: the
steps of QNAME minimisation.  One question's lookups through a DNS tree are
tested in L{tests.resolver.test_iterate}.
"""

from __future__ import annotations

import dns.name

from dnstls.resolver.question import MAX_MINIMISE_COUNT, MINIMISE_ONE_LAB, minimised


def test_minimisation_steps_are_bounded() -> None:
    """A long name is reached in at most MAX_MINIMISE_COUNT minimised steps, the first ones one label each."""
    name = dns.name.from_text(".".join(f"l{i}" for i in range(30)) + ".example.")
    known, asked = dns.name.from_text("example."), []
    while known != name:
        known = minimised(name, known, len(asked))
        asked.append(known)
    assert len(asked) <= MAX_MINIMISE_COUNT + 1
    assert [len(n) for n in asked[:MINIMISE_ONE_LAB]] == [3, 4, 5, 6]
    assert asked[-1] == name
