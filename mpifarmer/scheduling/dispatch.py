"""Which rank runs what, and how much work a farmer holds: the dispatcher state machine.

A farmer owns one or more ranks (one in local mode, one per MPI process in MPI mode), each
with a number of worker slots. The dispatcher receives events (tasks claimed from the store,
a run started or ended, a rank lost, drain requested) and answers questions (how many tasks
to claim, which task goes to which rank now, whether the farmer is done). It does no I/O and
reads no clock: times are passed in.

How much a farmer holds: enough to fill every slot, plus a prefetch per rank so that a rank
never waits a round trip for its next task, plus, for short tasks only, a claim-ahead of one
task per slot. Long tasks are never held back behind others: no farmer holds more than it
can start soon, so the end of a run stays balanced across farmers.

How often a rank is sent work: a rank with a prefetch of P is refilled once it has room for
P / REFILL_SHARE tasks, not for each task that ends, so that at tens of thousands of tasks a
second over many ranks a message carries many tasks instead of a few (rank 0's CPU per task grew
by a third from 4 to 64 ranks when each end was refilled at once). The rank still holds at
least its slots' worth and most of its prefetch when the refill is sent: none of its slots waits.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

__all__ = ["REFILL_SHARE", "Dispatcher", "RankState"]

#: A rank is refilled when it has room for a REFILL_SHARE-th of its prefetch (see the docstring).
REFILL_SHARE = 4


@dataclass
class RankState:
    slots: int
    prefetch: int = 0
    in_flight: set[int] = field(default_factory=set)  # assigned, not ended

    @property
    def room(self) -> int:
        return self.slots + self.prefetch - len(self.in_flight)

    @property
    def refill(self) -> int:
        """The room below which the rank is not sent work yet (1: any room at all)."""
        return max(1, self.prefetch // REFILL_SHARE)


class Dispatcher:
    """The farmer's scheduling decisions (see the module docstring)."""

    def __init__(self, *, short_task: float = 1.0, recheck: float = 2.0) -> None:
        self.ranks: dict[int, RankState] = {}
        self.queue: deque[int] = deque()
        self.draining = False
        self.short_task = short_task
        self.recheck = recheck
        self._empty_since: float | None = None
        self._delay_end: float | None = None  # when a task that waits for its retry delay is due
        self._durations = 0.0
        self._ended = 0

    # -- events ----------------------------------------------------------------------------

    def add_rank(self, rank: int, slots: int, prefetch: int = 0) -> None:
        self.ranks[rank] = RankState(slots, prefetch)

    def set_prefetch(self, rank: int, prefetch: int) -> None:
        """How much ``rank`` may hold beyond its slots from now on (a rank not known is ignored)."""
        state = self.ranks.get(rank)
        if state is not None:
            state.prefetch = prefetch

    def lose_rank(self, rank: int) -> list[int]:
        """Forget ``rank``; return the tasks it held (the caller decides their fate)."""
        state = self.ranks.pop(rank, None)
        return sorted(state.in_flight) if state else []

    def claimed(self, ids: list[int], asked: int, now: float, delay_end: float | None = None) -> None:
        """The store gave ``ids`` for a request of ``asked``; fewer means it ran dry. ``delay_end``:
        when the first pending task that waits for its retry delay may be claimed (it is asked
        for then, not a recheck later)."""
        self.queue.extend(ids)
        self._delay_end = delay_end
        if asked > 0:
            self._empty_since = now if len(ids) < asked else None

    def ended(self, rank: int, task: int, duration: float) -> None:
        state = self.ranks.get(rank)
        if state is not None:
            state.in_flight.discard(task)
        self._durations += duration
        self._ended += 1

    def pending_again(self, delay_end: float | None = None) -> None:
        """A task that ended here is pending again (a retry), from ``delay_end`` (None: now): the
        store is asked then, not after the recheck of a store that ran dry."""
        if delay_end is None:
            self._empty_since = None
        elif self._delay_end is None or delay_end < self._delay_end:
            self._delay_end = delay_end

    def returned(self, rank: int, ids: list[int]) -> None:
        """``rank`` gives back tasks it was sent but never started."""
        state = self.ranks.get(rank)
        if state is not None:
            state.in_flight.difference_update(ids)

    def drain(self) -> list[int]:
        """Stop handing out work; return the queued tasks no rank has received."""
        self.draining = True
        released = list(self.queue)
        self.queue.clear()
        return released

    # -- decisions -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return sum(len(state.in_flight) for state in self.ranks.values())

    @property
    def slots(self) -> int:
        return sum(state.slots for state in self.ranks.values())

    @property
    def mean_duration(self) -> float | None:
        return self._durations / self._ended if self._ended else None

    def want(self, now: float) -> int:
        """How many tasks to claim from the store now."""
        if self.draining or not self.ranks:
            return 0
        if self._empty_since is not None and now - self._empty_since < self.recheck and not (
                self._delay_end is not None and now >= self._delay_end):
            return 0
        mean = self.mean_duration
        ahead = self.slots if mean is not None and mean < self.short_task else 0
        room = sum(max(0, state.room) for state in self.ranks.values())
        return max(0, room + ahead - len(self.queue))

    def next_check(self, now: float) -> float | None:
        """When the store should be asked again after it ran dry, or None."""
        if self._empty_since is None or self.draining:
            return None
        if self._delay_end is not None:
            return min(self._empty_since + self.recheck, self._delay_end)
        return self._empty_since + self.recheck

    def assign(self) -> list[tuple[int, int]]:
        """(rank, task) pairs to send now, and record them in flight.

        Each task goes to the rank with the most room at that moment (the lowest rank on a
        tie), so that a few tasks spread over ranks rather than queue on one; a rank with less
        room than its refill gets nothing yet (see the module docstring).
        """
        pairs: list[tuple[int, int]] = []
        if self.draining or not self.queue:
            return pairs
        rooms = [(-state.room, rank) for rank, state in self.ranks.items() if state.room >= state.refill]
        heapq.heapify(rooms)
        queue = self.queue
        while queue and rooms:
            negative_room, rank = heapq.heappop(rooms)
            task = queue.popleft()
            self.ranks[rank].in_flight.add(task)
            pairs.append((rank, task))
            if negative_room < -1:
                heapq.heappush(rooms, (negative_room + 1, rank))
        return pairs

    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return not self.queue and self.in_flight == 0

    def ran_dry(self) -> bool:
        """The last claim found the store without pending work."""
        return self._empty_since is not None
