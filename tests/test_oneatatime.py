"""
Tests for L{dnstls.oneatatime}: work that never runs twice at once, the
calls made while it runs folded into one run after it.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from dnstls.oneatatime import OneAtATime


class Runs:
    """
    Work whose runs end when the test says.
    """

    def __init__(self) -> None:
        self.started: list[Deferred[int]] = []

    def __call__(self) -> Deferred[int]:
        run: Deferred[int] = Deferred()
        self.started.append(run)
        return run


def results(deferred: Deferred[int]) -> list[object]:
    found: list[object] = []
    deferred.addBoth(found.append)
    return found


def test_calls_during_a_run_make_one_more_run() -> None:
    """Three calls while a run goes on start nothing until it ends, then one run serves all
    three; the first call gets the first run's result."""
    runs = Runs()
    once = OneAtATime(runs)
    first = results(once())
    assert once.running and not once.queued
    later = [results(once()) for _ in range(3)]
    assert len(runs.started) == 1 and once.queued
    runs.started[0].callback(1)
    assert first == [1]
    assert len(runs.started) == 2 and once.running and not once.queued
    assert later == [[], [], []]
    runs.started[1].callback(2)
    assert later == [[2], [2], [2]]
    assert not once.running


def test_call_after_a_run_runs_at_once() -> None:
    """A call once the last run has ended starts a run at once; work that returns a value
    serves its caller at once."""
    values = iter([5, 6])
    once = OneAtATime(lambda: next(values))
    assert results(once()) == [5]
    assert results(once()) == [6]
    assert not once.running


def test_failure_reaches_its_callers_and_the_next_run_goes_on() -> None:
    """A run that fails fails the calls it serves, and the run queued behind it still runs."""
    runs = Runs()
    once = OneAtATime(runs)
    first = results(once())
    second = results(once())
    runs.started[0].errback(ValueError("broken"))
    [failure] = first
    assert isinstance(failure, Failure) and failure.check(ValueError)
    runs.started[1].callback(3)
    assert second == [3]
