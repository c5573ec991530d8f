"""What a pool offers, what a task asks for, which queued task starts next, and on which units.

A pool's *capacity* names its resources, each with a number of units: ``slots`` (the ``-n``
tasks at once), ``cores`` (CPUs of the affinity mask, when the pool binds tasks to CPUs) and
``gpus``. A task's *request* maps resource names to counts; a task that asks for nothing takes
the pool's default request (one slot, and ``--cores-per-task`` and ``--gpus-per-task``). Units
are numbered from 0, and which unit stands for which CPU or GPU is the binding's business
(:mod:`mpifarmer.scheduling.binding`).

Which units a run gets (:meth:`Units.take`): slots lowest first; GPUs lowest first, from one
group of GPUs that share their nearest CPUs (``near``) when one group can hold the run's GPUs
and its cores; cores compact (the free ones that span the fewest unit numbers, which are CPU
numbers in order, lowest first among equals), taken among the CPUs nearest to the run's GPUs
when enough of them are free.

Which waiting task starts (:func:`next_to_start`): the oldest, as soon as it fits. While it does
not, it holds a reservation: a younger task may start only in what is left once the oldest
task's request is set aside, and takes nothing of a resource the oldest one lacks. What the
oldest task lacks therefore only grows back, as runs end, until it starts: no stream of small
tasks starves a large one, and the small ones still use what it cannot (the CPUs beside a
GPU task waiting for a GPU, say).

This is the one place that decides whether a task fits and what starts next, used by the pool
(which refuses a request that could never fit) and by the spawner (which starts queued tasks as
units free up, with no round trip to the farmer). The spawner loads this file by its path and
must stay small, so it imports only the standard library, and nothing from mpifarmer.
"""

from __future__ import annotations

from bisect import insort
from heapq import heappop, heappush
from itertools import islice

TYPE_CHECKING = False  # not typing's: the spawner loads this file and must start fast
if TYPE_CHECKING:
    from collections.abc import Iterable

#: What a task that names no resources asks for, in a pool with no default of its own.
DEFAULT_REQUEST = {"slots": 1}

#: Resources whose units are placed (compact, near each other), not merely counted.
PLACED = ("cores", "gpus")

#: How many waiting tasks behind the oldest one :func:`next_to_start` looks at.
WINDOW = 64


def request_of(attrs: dict, default: dict[str, int] = DEFAULT_REQUEST) -> dict[str, int]:
    """The resources a task asks for: ``default``, with what its ``resources`` attribute names
    instead. In a pool that binds no CPUs (``default`` names no cores), a task's cores are
    counted in slots, as they were before pools had cores."""
    asked = attrs.get("resources")
    if not isinstance(asked, dict) or not asked:
        return default
    request = dict(default)
    for name, count in asked.items():
        if name == "cores" and "cores" not in default:
            name = "slots"
        request[name] = count
    return request


def never_fits(request: dict[str, int], capacity: dict[str, int]) -> str | None:
    """Why ``request`` can never be met by ``capacity`` (None: it fits when the pool is idle)."""
    for name, count in request.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return f"asks for {count!r} {name}: a count must be a whole number, 0 or more"
        if count > capacity.get(name, 0):
            return f"asks for {count} {name}, and this pool has {capacity.get(name, 0)}"
    return None


def most_at_once(capacity: dict[str, int], request: dict[str, int]) -> int:
    """How many runs of ``request`` fit in ``capacity`` at once (resources it names only)."""
    fits = [capacity.get(name, 0) // count for name, count in request.items() if count > 0]
    return min(fits) if fits else 0


class Units:
    """The free units of each resource of one pool. ``near`` maps a GPU unit to the core units
    nearest to it (the CPUs its PCI device names local), where the node says so."""

    def __init__(self, capacity: dict[str, int], near: dict[int, list[int]] | None = None) -> None:
        self.capacity = dict(capacity)
        # Counted resources are heaps (the lowest free unit in O(log n), also from pools of
        # thousands of slots); placed ones sorted lists, searched whole (a node has few).
        self.free = {name: list(range(count)) for name, count in capacity.items()}
        self.near = {int(gpu): frozenset(cores) for gpu, cores in (near or {}).items()}

    def fits(self, request: dict[str, int]) -> bool:
        return all(len(self.free.get(name, ())) >= count for name, count in request.items())

    def take(self, request: dict[str, int]) -> dict[str, list[int]]:
        """Hand out units for ``request`` (call only when it :meth:`fits`)."""
        taken: dict[str, list[int]] = {}
        gpus, cores = request.get("gpus", 0), request.get("cores", 0)
        if gpus:
            taken["gpus"] = self._take_placed("gpus", self._gpus_for(gpus, cores))
        if cores:
            near = set()
            for gpu in taken.get("gpus", ()):
                near |= self.near.get(gpu, frozenset())
            free = self.free["cores"]
            close = [core for core in free if core in near]
            taken["cores"] = self._take_placed("cores", compact(close if len(close) >= cores else free, cores))
        for name, count in request.items():
            if name not in PLACED:
                pool = self.free[name]
                taken[name] = [heappop(pool) for _ in range(count)]
        return taken

    def give_back(self, taken: dict[str, list[int]]) -> None:
        for name, units in taken.items():
            pool = self.free[name]
            for unit in units:
                if name in PLACED:
                    insort(pool, unit)
                else:
                    heappush(pool, unit)

    def _take_placed(self, name: str, chosen: list[int]) -> list[int]:
        pool = self.free[name]
        for unit in chosen:
            pool.remove(unit)
        return chosen

    def _gpus_for(self, count: int, cores: int) -> list[int]:
        """``count`` free GPUs: the lowest of the first group (GPUs sharing their nearest CPUs,
        in the order of their lowest GPU) that holds them and enough free cores near them;
        else the lowest free GPUs."""
        free = self.free["gpus"]
        if self.near:
            groups: dict[frozenset[int], list[int]] = {}
            for gpu in free:
                groups.setdefault(self.near.get(gpu, frozenset()), []).append(gpu)
            free_cores = set(self.free.get("cores", ()))
            for near, members in groups.items():
                if len(members) >= count and (not cores or len(near & free_cores) >= cores):
                    return members[:count]
        return free[:count]


def compact(free: list[int], count: int) -> list[int]:
    """``count`` of the sorted units ``free`` that span the fewest unit numbers (the lowest such
    run among equals): neighbouring CPUs, not scattered ones."""
    best = 0
    for start in range(1, len(free) - count + 1):
        if free[start + count - 1] - free[start] < free[best + count - 1] - free[best]:
            best = start
    return free[best:best + count]


def next_to_start(waiting: Iterable[dict[str, int]], units: Units) -> int | None:
    """Which waiting task starts now, as an index into ``waiting`` (requests, oldest first), or None.

    The oldest starts when it fits. Otherwise a younger one (of the next :data:`WINDOW`) may
    start in what the oldest leaves (see the module docstring): never in a resource the oldest
    lacks, and elsewhere only in units beyond the oldest's request."""
    queue = iter(waiting)
    oldest = next(queue, None)
    if oldest is None:
        return None
    if units.fits(oldest):
        return 0
    spare = {}
    for name, free in units.free.items():
        need = oldest.get(name, 0)
        spare[name] = len(free) - need if len(free) >= need else 0
    if not spare.get("slots", 1):
        return None  # every task takes a slot
    refused: set[int] = set()  # requests (by identity: a queue repeats a few) already found too big
    for index, request in enumerate(islice(queue, WINDOW), 1):
        if id(request) in refused:
            continue
        for name, count in request.items():
            if count and count > spare.get(name, 0):
                refused.add(id(request))
                break
        else:
            return index
    return None
