# -*- test-case-name: tests.test_oneatatime -*-
"""
Work that must not overlap itself, such as a reload: one run at a time,
and the calls that come while one runs folded into a single run after it.

A second SIGHUP during a reload asks for files that may have changed since
the running reload read them, so one more reload follows; a third or a
fourth during that same run asks for nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

_T = TypeVar("_T")


class OneAtATime(Generic[_T]):
    """
    Call a function returning a L{Deferred}, never twice at once.

    @ivar running: whether a run has not finished yet.
    """

    def __init__(self, run: Callable[[], Deferred[_T] | _T]) -> None:
        """
        @param run: the work; it reports its own errors, and a failure
            reaches every caller waiting for that run.
        """
        self._run = run
        self.running = False
        self._queued: list[Deferred[_T]] | None = None

    @property
    def queued(self) -> bool:
        """
        Whether another run follows the one running.
        """
        return self._queued is not None

    def __call__(self) -> Deferred[_T]:
        """
        Run now, or once the run going on has finished, when no other run
        is waiting for it already.

        @return: fires with the result of the run that serves this call.
        """
        waiter: Deferred[_T] = Deferred()
        if not self.running:
            self._start([waiter])
        elif self._queued is None:
            self._queued = [waiter]
        else:
            self._queued.append(waiter)
        return waiter

    def _start(self, waiters: list[Deferred[_T]]) -> None:
        self.running = True
        done = maybeDeferred(self._run)

        def finished(result: object) -> None:
            self.running = False
            queued, self._queued = self._queued, None
            if queued is not None:
                self._start(queued)
            for waiter in waiters:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(cast(_T, result))

        done.addBoth(finished)
