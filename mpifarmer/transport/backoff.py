"""Polling pauses for loops that must not block in MPI."""

from __future__ import annotations

import time

__all__ = ["Backoff"]


class Backoff:
    """Sleeps that double from almost nothing up to ``tmax`` while idle, reset by activity
    (the scheme of mpi4py.futures): dispatch stays fast under load and idle costs little CPU."""

    def __init__(self, tmax: float = 0.01) -> None:
        self.tmax = tmax
        self.tmin = tmax / 1024
        self.tval = 0.0

    def reset(self) -> None:
        self.tval = 0.0

    def next(self) -> float:
        """The next pause, and double the one after."""
        value = self.tval
        self.tval = min(self.tmax, max(self.tmin, self.tval * 2))
        return value

    def sleep(self) -> None:
        time.sleep(self.next())
