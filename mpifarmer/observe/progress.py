"""The progress a running farmer shows: a line in a batch log, or a bar on a terminal.

The decisions are pure: :class:`ProgressSchedule` says when the next showing is due, given the
time; :class:`ProgressReporter` turns the counts the farmer's loop feeds it into
:class:`ProgressFigures` (with the rate of :class:`~mpifarmer.observe.rates.RateTracker`) and
hands them, when due, to whatever shows them: :func:`progress_line` text for the log, or the
terminal bar of :mod:`mpifarmer.observe.bar`. The loop reads the clock and prints; it decides
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mpifarmer.observe.rates import RateTracker, eta
from mpifarmer.observe.words import duration, rate_text

__all__ = ["BAR_EVERY", "RATE_WINDOW", "ProgressFigures", "ProgressReporter", "ProgressSchedule", "progress_line",
           "rate_phrase"]

#: How often the terminal bar is redrawn, in seconds.
BAR_EVERY = 1.0
#: The window of the rate (and so of the ETA) that progress shows, in seconds.
RATE_WINDOW = 300.0


@dataclass(frozen=True)
class ProgressFigures:
    """What progress shows: the work directory's counts as this farmer knows them."""

    done: int  # finished or failed
    total: int
    failed: int
    running: int  # claimed by some farmer
    rate_per_min: float | None  # over the last RATE_WINDOW (or since the farmer started)
    eta_s: float | None

    @property
    def left(self) -> int:
        return max(0, self.total - self.done)


def progress_line(figures: ProgressFigures) -> str:
    """``progress: 1,234 of 200,000 done (0.6%), 3 failed, 128 running, 512/min (last 5 min), ETA 6 h 16 min``."""
    share = f" ({100.0 * figures.done / figures.total:.1f}%)" if figures.total else ""
    return (f"progress: {figures.done:,} of {figures.total:,} done{share}, {figures.failed:,} failed, "
            f"{figures.running:,} running, {rate_phrase(figures.rate_per_min)}, ETA {duration(figures.eta_s)}")


def rate_phrase(per_min: float | None) -> str:
    """``512/min (last 5 min)``, or ``rate not known yet``."""
    if per_min is None:
        return "rate not known yet"
    return f"{rate_text(per_min)} (last {duration(RATE_WINDOW)})"


class ProgressSchedule:
    """Due every ``interval`` seconds from ``start`` (the first showing one interval after it).
    A loop that wakes late shows once, not once per interval missed."""

    def __init__(self, interval: float, start: float) -> None:
        if interval <= 0:
            raise ValueError("a progress interval is more than 0 seconds")
        self.interval = interval
        self.next_at = start + interval

    def due(self, now: float) -> bool:
        """Whether a showing is due at ``now``; if so, the next one is scheduled."""
        if now < self.next_at:
            return False
        following = self.next_at + self.interval
        self.next_at = following if following > now else now + self.interval
        return True


class ProgressReporter:
    """Fed counts by the farmer's loop; calls ``show`` with the figures when a showing is due."""

    def __init__(self, interval: float, show: Callable[[ProgressFigures], None], start: float) -> None:
        self.schedule = ProgressSchedule(interval, start)
        self.show = show
        self.tracker = RateTracker()
        self.started = start

    @property
    def next_at(self) -> float:
        """When the next showing is due."""
        return self.schedule.next_at

    @property
    def due_at(self) -> float:
        """When the loop next has something to feed: a sample for the rate, or a showing. (Feeding
        it on every turn of a busy loop would cost a few percent of a fast farm's dispatch.)"""
        return min(self.schedule.next_at, self.tracker.next_sample_at)

    def figures(self, now: float, done: int, total: int, failed: int, running: int) -> ProgressFigures:
        rate = self.tracker.rate(now, RATE_WINDOW)
        return ProgressFigures(done, total, failed, running, rate, eta(max(0, total - done), rate))

    def observe(self, now: float, done: int, total: int, failed: int, running: int) -> ProgressFigures | None:
        """Take the counts at ``now`` (monotonic seconds); return the figures if they were shown."""
        self.tracker.add(now, done)
        if not self.schedule.due(now):
            return None
        figures = self.figures(now, done, total, failed, running)
        self.show(figures)
        return figures
