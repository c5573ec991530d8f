"""What a pool offers, what a task asks for, and which queued task starts next.

A pool's *capacity* names its resources, each with a number of units: ``{"slots": 4}`` today,
cores and GPUs later. A task's *request* maps resource names to counts; a task that asks for
nothing takes :data:`DEFAULT_REQUEST`, one slot. Units are numbered from 0 and handed out
lowest first, so that a run knows which slot (later: which cores, which GPU) it has.

This is the one place that decides whether a task fits and what starts next, used by the pool
(which refuses a request that could never fit) and by the spawner (which starts queued tasks as
units free up, with no round trip to the farmer). The spawner loads this file by its path and
must stay small, so it imports only the standard library, and nothing from mpifarmer.
"""

from __future__ import annotations

from heapq import heappop, heappush

TYPE_CHECKING = False  # not typing's: the spawner loads this file and must start fast
if TYPE_CHECKING:
    from collections.abc import Iterable

#: What a task that names no resources asks for.
DEFAULT_REQUEST = {"slots": 1}


def request_of(attrs: dict) -> dict[str, int]:
    """The resources a task asks for: one slot, unless its ``resources`` attribute says otherwise."""
    asked = attrs.get("resources")
    return {**DEFAULT_REQUEST, **asked} if isinstance(asked, dict) else DEFAULT_REQUEST


def never_fits(request: dict[str, int], capacity: dict[str, int]) -> str | None:
    """Why ``request`` can never be met by ``capacity`` (None: it fits when the pool is idle)."""
    for name, count in request.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return f"asks for {count!r} {name}: a count must be a whole number, 0 or more"
        if count > capacity.get(name, 0):
            return f"asks for {count} {name}, and this pool has {capacity.get(name, 0)}"
    return None


class Units:
    """The free units of each resource of one pool."""

    def __init__(self, capacity: dict[str, int]) -> None:
        self.capacity = dict(capacity)
        # Each a heap: the lowest free unit is taken in O(log n), also from pools of thousands.
        self.free = {name: list(range(count)) for name, count in capacity.items()}

    def fits(self, request: dict[str, int]) -> bool:
        return all(len(self.free.get(name, ())) >= count for name, count in request.items())

    def take(self, request: dict[str, int]) -> dict[str, list[int]]:
        """Hand out the lowest free units for ``request`` (call only when it :meth:`fits`)."""
        taken = {}
        for name, count in request.items():
            pool = self.free[name]
            taken[name] = [heappop(pool) for _ in range(count)]
        return taken

    def give_back(self, taken: dict[str, list[int]]) -> None:
        for name, units in taken.items():
            pool = self.free[name]
            for unit in units:
                heappush(pool, unit)


def next_to_start(waiting: Iterable[dict[str, int]], units: Units) -> int | None:
    """Which waiting task starts now, as an index into ``waiting`` (requests, oldest first), or None.

    In order: the oldest starts when it fits, and nothing overtakes it. A large request that
    waits for units to free up therefore holds back the smaller ones behind it, so it is never
    starved by them."""
    oldest = next(iter(waiting), None)
    if oldest is not None and units.fits(oldest):
        return 0
    return None
