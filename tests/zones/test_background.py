"""
Tests for L{dnstls.zones.background}: the collector and the switch interval
while zones are read beside the reactor.
"""

from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

from dnstls.zones import background
from dnstls.zones.zonefile import load_zone
from tests.zones.test_zoneset import break_, write


def test_reading_puts_off_full_collections_and_restores() -> None:
    """Inside reading() no full collection is due and the switch interval is short; after, both
    are as they were."""
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    with background.reading():
        assert gc.get_threshold()[:2] == threshold[:2]
        assert gc.get_threshold()[2] > 10**9
        assert sys.getswitchinterval() == min(interval, background.SWITCH_INTERVAL)
    assert gc.get_threshold() == threshold
    assert sys.getswitchinterval() == interval


class _Cycle:
    """An object in a reference cycle with itself, as a connection's protocol and transport are."""

    def __init__(self) -> None:
        self.me = self


def test_reading_freezes_nothing() -> None:
    """A cycle alive while zones are read is still collected once it dies: a reload leaks no
    connection that was open during it."""
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    with background.reading():
        pass
    assert gc.get_freeze_count() == 0
    del cycle
    gc.collect()
    assert gone() is None


def test_zone_read_leaves_no_cyclic_garbage(tmp_path: Path) -> None:
    """Reading a zone file, good or broken, leaves nothing for the cyclic collector: every
    object the reader made is freed by its reference count."""
    good = write(tmp_path / "good.test.zone", "good.test.")
    bad = break_(tmp_path / "bad.test.zone", "bad.test.")
    gc.collect()
    gc.disable()
    try:
        load_zone(good)
        assert gc.collect() == 0
        try:
            load_zone(bad)
        except Exception:
            pass
        assert gc.collect() == 0
    finally:
        gc.enable()
