"""Per-task time limits: when a run that lasts too long is stopped, and when it is killed.

A run with a limit is stopped (SIGTERM to its process group) once it has run for that long, and
killed (SIGKILL) if it is still there ``grace`` seconds later, the same grace as a drain gives.
Its end then counts as a failure with the reason ``timed-out``
(:data:`mpifarmer.task.EndReason.TIMED_OUT`).

A small state machine: the worker tells it when each run started and ended, and asks it, with
the current wall time, what to signal now. No clock, process or signal inside.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

__all__ = ["Signals", "TimeLimits", "limit_of"]


def limit_of(attrs: dict, default: float | None) -> float | None:
    """A task's time limit in seconds: its own ``timeout`` attribute, else ``default`` (None: none)."""
    own = attrs.get("timeout")
    if isinstance(own, (int, float)) and not isinstance(own, bool) and own > 0:
        return float(own)
    return default


class Signals(NamedTuple):
    """What to do now: the tasks to stop (SIGTERM) and those to kill (SIGKILL)."""

    stop: list[int]
    kill: list[int]


class TimeLimits:
    """The runs that have a time limit, by task ID (see the module docstring)."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._deadline: dict[int, float] = {}  # running, not stopped yet: when to stop it
        self._kill_at: dict[int, float] = {}  # stopped, not ended yet: when to kill it
        self._heap: list[tuple[float, int]] = []  # (time, task) over both
        #: Tasks whose current run was stopped for its limit (until the worker has taken its end).
        self.timed_out: set[int] = set()

    def started(self, task: int, t0: float, limit: float | None) -> None:
        if limit is None:
            return
        self._deadline[task] = t0 + limit
        heapq.heappush(self._heap, (t0 + limit, task))

    def ended(self, task: int) -> bool:
        """Forget the run of ``task``; return whether it was stopped for its limit."""
        self._deadline.pop(task, None)
        self._kill_at.pop(task, None)
        if task in self.timed_out:
            self.timed_out.discard(task)
            return True
        return False

    def due(self, now: float) -> Signals:
        """The runs to stop and to kill at ``now``."""
        stop: list[int] = []
        kill: list[int] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, task = heapq.heappop(heap)
            if self._deadline.get(task) == at:
                del self._deadline[task]
                self.timed_out.add(task)
                self._kill_at[task] = now + self.grace
                heapq.heappush(heap, (now + self.grace, task))
                stop.append(task)
            elif self._kill_at.get(task) == at:
                del self._kill_at[task]
                kill.append(task)
        return Signals(stop, kill)

    def next_at(self) -> float | None:
        """When :meth:`due` next has something to say (None: no run has a limit)."""
        heap = self._heap
        while heap and heap[0][0] not in (self._deadline.get(heap[0][1]), self._kill_at.get(heap[0][1])):
            heapq.heappop(heap)  # the run ended
        return heap[0][0] if heap else None
