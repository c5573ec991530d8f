"""A pool's resources: what the command line asked for, made of what the node has.

:func:`plan` turns a node's :class:`~mpifarmer.hardware.Inventory` and the options
``-n``, ``--cores-per-task`` and ``--gpus-per-task`` into a :class:`PoolResources`: the pool's
capacity (see :mod:`mpifarmer.scheduling.capacity`), the request of a task that names none, and
the binding that says which CPU and GPU each unit is (see :mod:`mpifarmer.scheduling.binding`).

Two ways of counting CPUs:

* with ``--cores-per-task C``, the pool *binds*: its cores are the CPUs of the affinity mask, a
  task takes C of them (or its own ``cores``) and one slot, runs bound to them, and ``-n``
  defaults to as many tasks as fit;
* without it, as before: a task takes one slot (or as many as its ``cores``), nothing is bound,
  and ``-n`` defaults to the CPUs (see :func:`mpifarmer.environment.available_cpus`).

GPUs are counted in both: a task takes ``--gpus-per-task`` GPUs (or its own ``gpus``), and gets
exactly those. Once the farmer hands out GPUs by option (``--gpus`` or ``--gpus-per-task``), a
task given none sees none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mpifarmer.errors import UsageError
from mpifarmer.scheduling import capacity
from mpifarmer.scheduling.binding import cpulist, run_resources
from mpifarmer.tasklists import TaskList

if TYPE_CHECKING:
    from mpifarmer.hardware import Inventory  # discovery is imported where it runs, not for --help

__all__ = ["PoolResources", "line_check", "plan"]


@dataclass(frozen=True)
class PoolResources:
    """What one pool hands out, and what each unit is."""

    capacity: dict[str, int]
    default: dict[str, int] = field(default_factory=lambda: dict(capacity.DEFAULT_REQUEST))
    near: dict[int, list[int]] = field(default_factory=dict)  # GPU unit: the core units nearest to it
    binding: dict[str, Any] = field(default_factory=dict)  # for the spawner; empty: units stand for nothing
    inventory: Inventory | None = None

    @classmethod
    def slots_only(cls, slots: int) -> PoolResources:
        """A pool of ``slots`` that knows nothing of its node (tests, benchmarks)."""
        return cls({"slots": slots})

    @property
    def slots(self) -> int:
        return self.capacity["slots"]

    def request(self, attrs: dict[str, Any]) -> dict[str, int]:
        """What a task with these attributes asks of this pool."""
        return capacity.request_of(attrs, self.default)

    def too_big(self, request: dict[str, int]) -> str | None:
        """Why ``request`` asks for more than this node has (None: it does not). Slots are not
        the node's: a task that asks for more than ``-n`` fails when it is run (``unavailable``)."""
        inventory = self.inventory
        if inventory is None:
            return None
        cores, gpus = request.get("cores", 0), request.get("gpus", 0)
        if "cores" in self.capacity and _count(cores) and cores > self.capacity["cores"]:
            return (f"asks for {cores} cores, and this farmer may use {_cpus(inventory)}; ask for fewer, or run "
                    "where more CPUs are given (Slurm: -c)")
        if _count(gpus) and gpus > len(inventory.gpus):
            return (f"asks for {gpus} GPU{'s' * (gpus != 1)}, and this farmer has {_gpus(inventory)}; ask for "
                    "fewer, or run where more are given (--gpus LIST, Slurm: --gpus)")
        return None

    def placed(self, units: dict[str, list[int]] | None) -> tuple[str, str]:
        """A run's CPUs (in the kernel's list format) and GPUs (IDs, comma-separated), from its
        units: both empty in a pool that binds nothing."""
        if not units or not self.binding:
            return "", ""
        cpus, gpus = run_resources(self.binding, units)
        return cpulist(cpus), ",".join(gpus)

    def spawner_argument(self) -> dict[str, Any]:
        """The spawner's POOL argument (see :mod:`mpifarmer._spawnd`)."""
        if not self.binding:
            return dict(self.capacity)
        return {"capacity": self.capacity, "near": self.near, "binding": self.binding}


def plan(inventory: Inventory, *, proc: int | None, cpus_default: int, cores_per_task: int | None = None,
         gpus_per_task: int | None = None, gpus_given: bool = False) -> PoolResources:
    """The pool of a farmer with these options on a node with ``inventory``. ``proc`` is ``-n``
    (None: as many as fit), ``cpus_default`` the ``-n`` of a pool that binds nothing, and
    ``gpus_given`` whether ``--gpus`` named the GPUs. UsageError (exit 2) for options that ask
    for more than the node has."""
    cpus, gpus = list(inventory.cpus), [gpu.id for gpu in inventory.gpus]
    counts: dict[str, int] = {}
    default = dict(capacity.DEFAULT_REQUEST)
    if cores_per_task is not None:
        if cores_per_task > len(cpus):
            raise UsageError(f"--cores-per-task {cores_per_task}: this farmer may use {_cpus(inventory)}; give at "
                             "most that many, or ask Slurm for more (-c)")
        counts["cores"] = len(cpus)
        default["cores"] = cores_per_task
    if gpus:
        counts["gpus"] = len(gpus)
    if gpus_per_task:
        if gpus_per_task > len(gpus):
            raise UsageError(f"--gpus-per-task {gpus_per_task}: this farmer has {_gpus(inventory)}; name the GPUs "
                             "with --gpus LIST, or run where Slurm gives GPUs (--gpus)")
        default["gpus"] = gpus_per_task
    if proc is None:  # as many as fit in every resource; a pool that binds nothing counts cpus_default slots
        sized = {name: count for name, count in default.items() if name != "slots"}
        proc = capacity.most_at_once(counts, sized) if any(sized.values()) else cpus_default
        if "cores" not in counts:
            proc = min(proc, cpus_default)
    binding: dict[str, Any] = {}
    if "cores" in counts:
        binding["cpus"] = cpus
    if gpus:
        binding.update(gpus=gpus, vendor=inventory.vendor, hide=bool(gpus_per_task) or gpus_given,
                       order=inventory.pci_order)
    return PoolResources({"slots": proc, **counts}, default, _near(inventory) if "cores" in counts else {}, binding,
                         inventory)


def line_check(handler: TaskList, resources: PoolResources) -> Callable[[str], None] | None:
    """The check of each task line: the handler's own (see :meth:`TaskList.check`) and, for a
    handler that gives attributes, that the line asks for no more than the node has (ValueError
    saying so). None when there is nothing to check."""
    if not handler.may_give_attributes():
        return handler.check if handler.checks_lines() else None

    def check(line: str) -> None:
        problem = resources.too_big(resources.request(handler.checked(line).attrs))
        if problem is not None:
            raise ValueError(problem)

    return check


def _near(inventory: Inventory) -> dict[int, list[int]]:
    """For each GPU, the core units (indices into the CPUs) nearest to it, where the node says
    and it is not every CPU (then nearness tells nothing)."""
    near: dict[int, list[int]] = {}
    everything = set(inventory.cpus)
    for unit, gpu in enumerate(inventory.gpus):
        if gpu.near is not None and not everything <= gpu.near:
            near[unit] = [index for index, cpu in enumerate(inventory.cpus) if cpu in gpu.near]
    return near


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _cpus(inventory: Inventory) -> str:
    count = len(inventory.cpus)
    return f"{count} CPU{'s' * (count != 1)} ({cpulist(list(inventory.cpus))}, {inventory.cpu_source})"


def _gpus(inventory: Inventory) -> str:
    count = len(inventory.gpus)
    return f"{count or 'no'} GPU{'s' * (count != 1)} ({inventory.gpu_source})"
