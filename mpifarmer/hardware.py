"""Which CPUs and GPUs a farmer may use on its node, and where it learned them.

Every function here takes what it reads as arguments (the environment, the roots of ``/sys``
and ``/proc``, the affinity mask), so that tests can fake a node; :func:`mpifarmer.environment.hardware`
passes the real ones. Discovery reads only: nothing here changes the process or the node.

CPUs: the farmer's affinity mask (``sched_getaffinity``, else ``Cpus_allowed_list`` in
``/proc/self/status``). Where Slurm gave the task fewer CPUs than the mask holds
(``SLURM_CPUS_PER_TASK`` under a Slurm that binds nothing), the first that many.

GPUs, from the first source that names any:

1. the ``--gpus`` option (IDs as CUDA or ROCm number them, or UUIDs);
2. what Slurm gave the step or the job: ``SLURM_STEP_GPUS``, ``SLURM_JOB_GPUS``. Slurm numbers
   the node's GPUs there; where it confines the job to its devices it renumbers them from 0
   in ``CUDA_VISIBLE_DEVICES`` and ``ROCR_VISIBLE_DEVICES``, so when one of those lists as many
   GPUs, the runs are given its IDs (the ones the runtime understands in this process), and
   Slurm's numbers only say where each GPU is;
3. ``CUDA_VISIBLE_DEVICES``, ``ROCR_VISIBLE_DEVICES`` (set by a launcher or the user; set
   and empty, or Slurm's ``NoDevFiles``, means no GPU);
4. the GPUs the node shows: PCI display devices of NVIDIA (vendor 0x10de) and AMD (0x1002) in
   ``/sys/bus/pci/devices``, numbered in PCI bus order;
5. else none.

A GPU's nearest CPUs are its PCI device's ``local_cpulist``, where the node shows the device
(a GPU numbered N by Slurm or ``--gpus`` is taken to be the node's N-th in PCI bus order).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mpifarmer.scheduling.binding import cpulist, parse_cpulist

__all__ = ["GPU_SOURCES", "Gpu", "Inventory", "discover", "node_gpus", "usable_cpus"]

#: Environment variables that name a farmer's GPUs, in the order they are believed.
GPU_SOURCES = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")

#: PCI vendor IDs of GPU makers whose devices are counted.
VENDORS = {"0x10de": "nvidia", "0x1002": "amd"}

#: Values Slurm and CUDA take for "no device".
_NONE = ("", "NoDevFiles", "-1")


@dataclass(frozen=True)
class Gpu:
    """One GPU: ``id`` as the visible-devices variables name it, and the CPUs nearest to it
    (None: the node does not say)."""

    id: str
    near: frozenset[int] | None = None


@dataclass(frozen=True)
class Inventory:
    """What one farmer may use on its node."""

    cpus: tuple[int, ...]
    cpu_source: str
    gpus: tuple[Gpu, ...] = ()
    gpu_source: str = "none found"
    vendor: str | None = None  # "nvidia" or "amd", when the node or the source says
    pci_order: bool = False  # GPUs numbered by this farmer in PCI bus order (from /sys)

    def describe(self) -> str:
        """For the start line: ``2 CPUs 0-1 (affinity mask), 4 GPUs 0,1,2,3 (--gpus)``."""
        cpus = f"{len(self.cpus)} CPU{'s' * (len(self.cpus) != 1)} {cpulist(list(self.cpus))} ({self.cpu_source})"
        if not self.gpus:
            return f"{cpus}, no GPU ({self.gpu_source})"
        kind = {"nvidia": "NVIDIA ", "amd": "AMD "}.get(self.vendor or "", "")
        ids = ",".join(gpu.id for gpu in self.gpus)
        return f"{cpus}, {len(self.gpus)} {kind}GPU{'s' * (len(self.gpus) != 1)} {ids} ({self.gpu_source})"


def discover(gpus_option: str | None, environ: Mapping[str, str], sys_root: str | Path = "/sys",
             proc_root: str | Path = "/proc", affinity: Callable[[], set[int]] | None = None) -> Inventory:
    """The CPUs and GPUs this farmer may use (see the module docstring). ``gpus_option`` is the
    ``--gpus`` value (ValueError, saying why, for an empty or repeating list)."""
    cpus, cpu_source = usable_cpus(environ, proc_root, affinity)
    node = node_gpus(sys_root)
    vendors = {vendor for vendor, _ in node.values()}
    vendor = vendors.pop() if len(vendors) == 1 else None
    in_order = [near for _, near in node.values()]
    if gpus_option is not None:
        ids = _ids(gpus_option)
        if not ids:
            raise ValueError("names no GPU; give IDs such as 0,1,2,3")
        return Inventory(cpus, cpu_source, _placed(ids, ids, in_order), "--gpus", vendor)
    for name in GPU_SOURCES:
        value = environ.get(name)
        if value is None:
            continue
        if value.strip() in _NONE:
            return Inventory(cpus, cpu_source, (), f"{name} is {value.strip() or 'empty'}", vendor)
        ids = _ids(value)
        if name.startswith("SLURM_"):
            for runtime in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
                seen = _ids(environ.get(runtime, ""))
                if len(seen) == len(ids):
                    return Inventory(cpus, cpu_source, _placed(seen, ids, in_order), f"{name}, as {runtime}",
                                     vendor or _vendor_of(runtime, environ))
        return Inventory(cpus, cpu_source, _placed(ids, ids, in_order), name, vendor or _vendor_of(name, environ))
    ids = [str(index) for index in range(len(node))]
    where = Path(sys_root) / "bus" / "pci" / "devices"
    return Inventory(cpus, cpu_source, _placed(ids, ids, in_order), f"{where}" if node else f"none found in {where}",
                     vendor, pci_order=bool(node))


def usable_cpus(environ: Mapping[str, str], proc_root: str | Path = "/proc",
                affinity: Callable[[], set[int]] | None = None) -> tuple[tuple[int, ...], str]:
    """The CPUs of the affinity mask, sorted, and where they were learned."""
    mask: list[int] = []
    source = "affinity mask"
    if affinity is not None:
        try:
            mask = sorted(affinity())
        except OSError:
            mask = []
    if not mask:
        status = Path(proc_root) / "self" / "status"
        try:
            for line in status.read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    mask = parse_cpulist(line.split(":", 1)[1])
                    source = f"{status}"
        except (OSError, ValueError):
            mask = []
    if not mask:
        mask, source = list(range(os.cpu_count() or 1)), "cpu count"
    given = environ.get("SLURM_CPUS_PER_TASK", "")
    if given.isdigit() and 0 < int(given) < len(mask):
        return tuple(mask[: int(given)]), f"{source}, the first {given} as SLURM_CPUS_PER_TASK says"
    return tuple(mask), source


def node_gpus(sys_root: str | Path = "/sys") -> dict[str, tuple[str, frozenset[int] | None]]:
    """The node's NVIDIA and AMD GPUs, by PCI address in bus order: (vendor, nearest CPUs)."""
    devices = Path(sys_root) / "bus" / "pci" / "devices"
    found: dict[str, tuple[str, frozenset[int] | None]] = {}
    try:
        addresses = sorted(os.listdir(devices))
    except OSError:
        return found
    for address in addresses:
        device = devices / address
        try:
            pci_class = (device / "class").read_text().strip()
            vendor = VENDORS.get((device / "vendor").read_text().strip().lower())
        except OSError:
            continue
        if vendor is None or not pci_class.startswith("0x03"):  # 0x03: display controllers
            continue
        try:
            near: frozenset[int] | None = frozenset(parse_cpulist((device / "local_cpulist").read_text()))
        except (OSError, ValueError):
            near = None
        found[address] = (vendor, near or None)
    return found


def _ids(text: str) -> list[str]:
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if len(set(ids)) != len(ids):
        raise ValueError(f"names a GPU twice ({text.strip()}); give each once")
    return ids


def _placed(ids: list[str], numbers: list[str], in_order: list[frozenset[int] | None]) -> tuple[Gpu, ...]:
    """GPUs named ``ids``, each near the CPUs of the node's GPU its entry of ``numbers`` counts."""
    gpus = []
    for gpu, number in zip(ids, numbers, strict=True):
        index = int(number) if number.isdigit() else -1
        gpus.append(Gpu(gpu, in_order[index] if 0 <= index < len(in_order) else None))
    return tuple(gpus)


def _vendor_of(name: str, environ: Mapping[str, str]) -> str | None:
    """The vendor a variable implies when the node does not say: ROCR_VISIBLE_DEVICES alone is
    AMD's, CUDA_VISIBLE_DEVICES alone NVIDIA's. Both set says nothing: Slurm sets both (and
    more) on every GPU node unless told otherwise."""
    cuda, rocr = "CUDA_VISIBLE_DEVICES" in environ, "ROCR_VISIBLE_DEVICES" in environ
    if rocr and not cuda and name in ("ROCR_VISIBLE_DEVICES", *GPU_SOURCES[:2]):
        return "amd"
    if cuda and not rocr and name in ("CUDA_VISIBLE_DEVICES", *GPU_SOURCES[:2]):
        return "nvidia"
    return None
