"""The report's figures, as pure functions of runs and sessions: no files, no clock, no plotting.

A *run* is one execution of a task: its start ``t0``, its end ``t1`` and the pool slots it took
(``units``). Runs are passed as parallel sequences (``array('d')`` and the like, so that a
million runs cost 20 bytes each, not a Python object each). A *session* is a pool that was
there to run tasks: one rank of one farmer, from its registration to its leaving, with its
slots. Times are seconds; figures computed over long spans subtract an origin first, so that
sums of a million products keep their precision.

Definitions (the README's report section says the same for users):

- the *span* of a farm is from the first start of a run to the last end of one;
- *busy slot-seconds* are the sum over runs of (t1 - t0) x units, whatever the run's outcome
  (a failed or interrupted run held its slots too);
- *capacity* is the sum over sessions of slots x the part of the session inside the span, and
  *utilization* is busy / capacity. With every farmer there for the whole span it is
  busy / (slots x span); a farmer that joined late or left early counts only while it was there;
- the *tail* is the last ``fraction`` (10%) of the span; the report gives how long in it fewer
  than half of the slots then present were busy;
- percentiles interpolate linearly between the two nearest ranks (numpy's default method).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate

__all__ = ["Durations", "Session", "busy_curve", "busy_seconds", "capacity", "durations", "percentile",
           "tail_below_half", "utilization"]


@dataclass(frozen=True)
class Session:
    """A pool that could run tasks from ``start`` to ``end`` (``math.inf``: not known to have left)."""

    start: float
    end: float
    slots: int


@dataclass(frozen=True)
class Durations:
    """How long runs took, in seconds."""

    count: int
    minimum: float
    median: float
    p90: float
    p99: float
    maximum: float


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0 to 1) percentile of ``ordered`` (sorted, not empty), interpolating
    linearly between the two nearest ranks."""
    if not ordered:
        raise ValueError("no values")
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def durations(values: Iterable[float]) -> Durations | None:
    """The duration figures of ``values`` (None when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return Durations(len(ordered), ordered[0], percentile(ordered, 0.5), percentile(ordered, 0.9),
                     percentile(ordered, 0.99), ordered[-1])


def busy_seconds(t0: Sequence[float], t1: Sequence[float], units: Sequence[int]) -> float:
    """Slot-seconds the runs held their slots."""
    return math.fsum((end - start) * unit for start, end, unit in zip(t0, t1, units, strict=True))


def _inside(start: float, end: float, span: tuple[float, float]) -> float:
    return max(0.0, min(end, span[1]) - max(start, span[0]))


def capacity(sessions: Iterable[Session], span: tuple[float, float]) -> float:
    """Slot-seconds the sessions offered inside ``span``."""
    return math.fsum(session.slots * _inside(session.start, session.end, span) for session in sessions)


def utilization(busy: float, offered: float) -> float | None:
    """busy / offered, None when nothing was offered."""
    return busy / offered if offered > 0 else None


def tail_below_half(t0: Sequence[float], t1: Sequence[float], units: Sequence[int], sessions: Iterable[Session],
                    span: tuple[float, float], fraction: float = 0.1) -> tuple[float, float]:
    """(the tail's length, how long in it fewer than half of the slots then present were busy).

    A sweep over the changes inside the tail: the busy slots (runs) and the slots present
    (sessions) are step functions, so the answer is exact."""
    first, last = span
    begin = last - fraction * (last - first)
    busy = present = 0
    changes: list[tuple[float, int, int]] = []
    for start, end, unit in zip(t0, t1, units, strict=True):
        if end > begin and start < last:
            if start <= begin:
                busy += unit
            else:
                changes.append((start, unit, 0))
            if end < last:
                changes.append((end, -unit, 0))
    for session in sessions:
        if session.end > begin and session.start < last:
            if session.start <= begin:
                present += session.slots
            else:
                changes.append((session.start, 0, session.slots))
            if session.end < last:
                changes.append((session.end, 0, -session.slots))
    changes.sort()
    below, at = 0.0, begin
    for when, busy_change, present_change in [*changes, (last, 0, 0)]:
        if 2 * busy < present:
            below += when - at
        busy += busy_change
        present += present_change
        at = when
    return last - begin, below


def busy_curve(t0: Sequence[float], t1: Sequence[float], units: Sequence[int], edges: Sequence[float]) -> list[float]:
    """The mean number of busy slots in each bin ``edges[i]`` .. ``edges[i + 1]`` (exact: the
    integral of the busy slots over the bin, divided by its width).

    The integral up to ``g`` is the sum over runs that started before ``g`` of
    units x (g - t0), less the same over runs that ended before ``g`` with t1: prefix sums over
    the sorted starts and ends give it in O((runs + bins) log runs)."""
    if len(edges) < 2:
        return []
    origin = edges[0]
    if units and min(units) == max(units):  # every run took as many slots: floats, not pairs (a third the memory)
        weight = units[0]
        starts = _Prefix(sorted(start - origin for start in t0), weight)
        ends = _Prefix(sorted(end - origin for end in t1), weight)
    else:
        starts = _Prefix(*_sorted_pairs(t0, units, origin))
        ends = _Prefix(*_sorted_pairs(t1, units, origin))
    integrals = [starts.integral(g - origin) - ends.integral(g - origin) for g in edges]
    return [(integrals[i + 1] - integrals[i]) / (edges[i + 1] - edges[i]) if edges[i + 1] > edges[i] else 0.0
            for i in range(len(edges) - 1)]


def _sorted_pairs(times: Sequence[float], units: Sequence[int], origin: float) -> tuple[list[float], list[int]]:
    pairs = sorted((time - origin, unit) for time, unit in zip(times, units, strict=True))
    return [time for time, _ in pairs], [unit for _, unit in pairs]


class _Prefix:
    """Sorted times with the prefix sums of their units and of units x time (``units`` one number
    when every time weighs the same)."""

    def __init__(self, times: list[float], units: list[int] | int) -> None:
        self.times = times
        if isinstance(units, int):
            self.units: list[int] | None = None
            self.weight = units
            self.weighted = [0.0, *accumulate(time * units for time in times)]
        else:
            self.units = [0, *accumulate(units)]
            self.weight = 0
            self.weighted = [0.0, *accumulate(time * unit for time, unit in zip(times, units, strict=True))]

    def integral(self, g: float) -> float:
        """The sum over the times before ``g`` of unit x (g - time)."""
        k = bisect_left(self.times, g)
        count = k * self.weight if self.units is None else self.units[k]
        return g * count - self.weighted[k]
