"""Slots held for a fixed time with no process: how the pool executes the HoldRunner's tasks.

For benchmarks and tests (see :class:`mpifarmer.runners.HoldRunner`). A held run takes its
units as a started process would, keeps them for ``seconds`` and then ends with exit code 0.
The queue works as the spawner's does (:func:`mpifarmer.scheduling.capacity.next_to_start`:
the oldest first, the younger ones only in what it leaves), and a freed slot takes the next waiting
task at the moment the hold expired, not when the pool's loop next looks, so that a loop that
sleeps through several ends (as it does through a spawner's) leaves no slot idle. No clock is
read here: the pool passes the time in.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from mpifarmer.scheduling import capacity

if TYPE_CHECKING:
    from mpifarmer.pool import Run

__all__ = ["HeldSlots"]


class HeldSlots:
    """The held runs of one pool: waiting for units, or holding them until their end time."""

    def __init__(self, resources: dict[str, int], seconds: float,
                 request: Callable[[dict], dict[str, int]] = capacity.request_of,
                 near: dict[int, list[int]] | None = None) -> None:
        self.seconds = seconds
        self._request = request  # what a task's attributes ask of the pool
        self._units = capacity.Units(resources, near)
        self._waiting: deque[Run] = deque()
        self._holding: list[tuple[float, int, Run]] = []  # (end time, task ID, run): a heap

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def add(self, run: Run, now: float) -> list[Run]:
        """Queue ``run``; return the runs that start now (it, if its units are free)."""
        self._waiting.append(run)
        return self._start_waiting(now)

    def advance(self, now: float) -> tuple[list[tuple[Run, float]], list[Run]]:
        """End the holds that expired by ``now``, each at its own end time, and start waiting
        runs in the units they free, at that same time; return (ended runs with their end time,
        started runs)."""
        ended: list[tuple[Run, float]] = []
        started: list[Run] = []
        holding = self._holding
        while holding and holding[0][0] <= now:
            t1, _, run = heapq.heappop(holding)
            self._units.give_back(run.units or {})
            ended.append((run, t1))
            started += self._start_waiting(t1)
        return ended, started

    def next_end(self) -> float | None:
        """When the earliest hold expires (None: nothing holds a slot)."""
        return self._holding[0][0] if self._holding else None

    def drop(self) -> list[Run]:
        """Forget the waiting runs and return them (they never started)."""
        dropped = list(self._waiting)
        self._waiting.clear()
        return dropped

    def end_all(self) -> list[Run]:
        """End every hold now (as a signal ends a process) and return those runs."""
        runs = [run for _, _, run in self._holding]
        for run in runs:
            self._units.give_back(run.units or {})
        self._holding.clear()
        return runs

    def _start_waiting(self, now: float) -> list[Run]:
        started = []
        waiting = self._waiting
        while (index := capacity.next_to_start((self._request(run.task.attrs) for run in waiting),
                                               self._units)) is not None:
            run = waiting[index]
            del waiting[index]
            run.units = self._units.take(self._request(run.task.attrs))
            run.slot = min(run.units.get("slots") or [-1])
            run.t0 = now
            heapq.heappush(self._holding, (now + self.seconds, run.task.id, run))
            started.append(run)
        return started
