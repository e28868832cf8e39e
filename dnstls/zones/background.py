# -*- test-case-name: tests.zones.test_background -*-
"""
Zones read in a thread beside the reactor: what keeps that thread from
starving the reactor of the GIL.

Reading, checking and compiling a zone is pure Python and holds the GIL;
the reactor thread gets it back at every switch interval.  Two things
stopped the reactor all the same while a zone of 100,000 records was read:

  - full collections of the cyclic garbage collector, which the growth of
    the zone set off, walk every tracked object holding the GIL: up to
    0.4 s each;
  - the switch interval (5 ms by default) is paid again each time the
    reactor thread gives up the GIL for a system call, several times a
    query (up to 0.13 s for one over TCP).

While a zone is read (at start-up, and in the reload's thread), L{reading}
puts off full collections (the young
generations are still collected) and shortens the switch interval to
L{SWITCH_INTERVAL}.  Zone data holds no reference cycles
(L{dnstls.zones.reader} breaks the reader's), so a zone served no more is
freed by its reference count.  Nothing is frozen (C{gc.freeze}): a frozen
object in a cycle is never collected, and every connection open at a
reload is one (its protocol and transport refer to each other), so each
reload would leak the connections then open once they closed.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: The switch interval while a zone is read, in seconds.
SWITCH_INTERVAL = 0.001

#: A third threshold no count of young collections reaches.
_NEVER = 2**31 - 1


@contextmanager
def reading() -> Iterator[None]:
    """
    No full collection and a short switch interval inside; at the end, the
    young generations collected, and the collector and the switch interval
    as they were.
    """
    young, middle, old = gc.get_threshold()
    interval = sys.getswitchinterval()
    gc.set_threshold(young, middle, _NEVER)
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.collect(1)
        gc.set_threshold(young, middle, old)
