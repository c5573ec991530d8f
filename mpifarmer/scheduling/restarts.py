"""Whether a dead helper process (a pool's spawner) is started again or the farmer gives up.

A spawner can die for reasons that pass (the OOM killer picked it, a user's stray ``kill``) or
that do not (a cgroup limit it hits at once, a broken interpreter). Restarting is right for the
first kind and a busy loop for the second, so restarts are allowed while fewer than ``limit``
deaths happened within the last ``window`` seconds; past that, the farmer drains and exits 3.
"""

from __future__ import annotations

from collections import deque

__all__ = ["RESTART_LIMIT", "RESTART_WINDOW", "RestartBudget"]

RESTART_LIMIT = 3
RESTART_WINDOW = 60.0


class RestartBudget:
    """Counts deaths; ``allow(now)`` records one and says whether to start a new process."""

    def __init__(self, limit: int = RESTART_LIMIT, window: float = RESTART_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._deaths: deque[float] = deque()

    def allow(self, now: float) -> bool:
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > self.window:
            self._deaths.popleft()
        return len(self._deaths) < self.limit
