"""Rates and ETAs: pure arithmetic on counts and times, with the time as an argument.

Two sources feed it. ``mpifarmer status`` counts the runs that ended (finished or failed) in a
window before now, from the journal; a running farmer samples its own count of done tasks now
and then (:class:`RateTracker`). Either way a rate over a window W is the tasks done in the last
W seconds divided by the time observed in that window, which is shorter than W when the farm
started less than W ago: a farm that has run for two minutes has a five-minute rate of what it
did in those two minutes, not two fifths of it.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MIN_SPAN", "WINDOWS", "RateTracker", "Rates", "eta", "per_minute", "window_span"]

#: The windows of ``mpifarmer status``, in seconds: 1, 5 and 15 minutes (as ``uptime``'s load).
WINDOWS = (60.0, 300.0, 900.0)
#: A window observed for less than this many seconds has no rate yet.
MIN_SPAN = 1.0


def window_span(now: float, window: float, origin: float | None) -> float:
    """How much of the last ``window`` seconds before ``now`` was observed: all of it, unless the
    observation began (``origin``) later than ``now - window``."""
    start = now - window if origin is None else max(now - window, origin)
    return max(0.0, now - start)


def per_minute(count: int, span: float) -> float | None:
    """``count`` tasks in ``span`` seconds, per minute; None when the span is too short to tell."""
    if span < MIN_SPAN:
        return None
    return count * 60.0 / span


def eta(left: int, rate_per_min: float | None, progressing: bool = True) -> float | None:
    """Seconds until ``left`` tasks are done at ``rate_per_min``: 0 when none is left; None when
    it cannot be told (no rate yet, a rate of 0, or nothing is ``progressing``: no farmer runs)."""
    if left <= 0:
        return 0.0
    if not progressing or rate_per_min is None or rate_per_min <= 0:
        return None
    return left * 60.0 / rate_per_min


@dataclass(frozen=True)
class Rates:
    """Tasks per minute over each of :data:`WINDOWS` (None: not known)."""

    by_window: tuple[tuple[float, float | None], ...]

    @classmethod
    def of_end_times(cls, ends: Sequence[float], now: float, origin: float | None,
                     windows: Sequence[float] = WINDOWS, earlier: dict[float, int] | None = None) -> Rates:
        """From the sorted times ``ends`` at which runs ended, plus, per window, ``earlier``
        ends counted elsewhere (in older journal generations) that fall in it."""
        result = []
        for window in windows:
            # (now - window, now], and any end after now: a node whose clock is ahead recorded it
            count = len(ends) - bisect.bisect_right(ends, now - window) + (earlier or {}).get(window, 0)
            result.append((window, per_minute(count, window_span(now, window, origin))))
        return cls(tuple(result))

    def over(self, window: float) -> float | None:
        for length, rate in self.by_window:
            if length == window:
                return rate
        raise KeyError(window)


class RateTracker:
    """A running farmer's recent rate, from samples of its count of done tasks.

    :meth:`add` keeps a sample at most every ``every`` seconds, none older than ``keep``, and
    always the latest observation; :meth:`rate` divides what was done between the oldest sample
    inside the window and the latest observation by the time between them."""

    def __init__(self, every: float = 1.0, keep: float = max(WINDOWS)) -> None:
        self.every, self.keep = every, keep
        self.samples: deque[tuple[float, int]] = deque()
        self.latest: tuple[float, int] | None = None

    @property
    def next_sample_at(self) -> float:
        """When :meth:`add` would keep its next sample (until then only the latest count changes)."""
        return self.samples[-1][0] + self.every if self.samples else float("-inf")

    def add(self, now: float, done: int) -> None:
        self.latest = (now, done)
        if not self.samples or now - self.samples[-1][0] >= self.every:
            self.samples.append((now, done))
        while self.samples[0][0] < now - self.keep:
            self.samples.popleft()

    def rate(self, now: float, window: float) -> float | None:
        """Tasks per minute over the last ``window`` seconds (None: less than MIN_SPAN observed)."""
        if self.latest is None:
            return None
        first = next(((t, done) for t, done in self.samples if t >= now - window), None)
        if first is None:
            return None
        return per_minute(self.latest[1] - first[1], self.latest[0] - first[0])
