"""What a run's units are on the hardware, and the environment that tells the run.

A pool hands out units numbered from 0 (see :mod:`mpifarmer.scheduling.capacity`); a
*binding* maps them to the node: core unit ``i`` is CPU ``cpus[i]`` of the farmer's affinity
mask, GPU unit ``j`` is the device ``gpus[j]`` (as the visible-devices variables name it).
:func:`run_environment` turns the units a run was given into the CPUs to bind it to and the
variables it gets. It is a pure function of its arguments.

The spawner loads this file by its path (as it loads ``capacity.py``), so it imports only the
standard library, and nothing from mpifarmer. A binding travels to the spawner as JSON:

    {"cpus": [4, 5, 6, 7], "gpus": ["0", "1"], "vendor": "nvidia", "hide": true, "order": false}

``cpus`` is absent when the pool binds no CPUs, ``gpus`` when it hands out none. ``hide``: a run
given no GPU sees none (the variables are set empty); ``order``: the GPUs were numbered in PCI
bus order by the farmer, so a run gets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (unless it is set), for
CUDA to number them the same way.
"""

from __future__ import annotations

__all__ = ["GPU_VARIABLES", "cpulist", "parse_cpulist", "run_environment", "run_resources"]

#: The variables through which a run is told its GPUs, for CUDA, HIP, ROCr and Level Zero.
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")


def cpulist(cpus: list[int]) -> str:
    """The kernel's list format (``Cpus_allowed_list``, ``taskset -c``): ``[0, 1, 2, 5]`` is ``0-2,5``."""
    parts: list[str] = []
    ordered = sorted(set(cpus))
    start = 0
    for index in range(1, len(ordered) + 1):
        if index == len(ordered) or ordered[index] != ordered[index - 1] + 1:
            first, last = ordered[start], ordered[index - 1]
            parts.append(str(first) if first == last else f"{first}-{last}")
            start = index
    return ",".join(parts)


def parse_cpulist(text: str) -> list[int]:
    """The CPUs of a list in the kernel's format (``0-3,8,10-11``; ``0-7:2`` strides too), sorted.
    ValueError for anything else."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        span, _, stride = part.partition(":")
        first, dash, last = span.partition("-")
        low, high = int(first), int(last) if dash else int(first)
        step = int(stride) if stride else 1
        if low < 0 or high < low or step < 1:
            raise ValueError(f"{part!r} is not a CPU range")
        cpus.update(range(low, high + 1, step))
    return sorted(cpus)


def run_resources(binding: dict, given: dict[str, list[int]]) -> tuple[list[int], list[str]]:
    """The CPUs (sorted) and GPUs (in the order given) that the units ``given`` stand for."""
    cpus = binding.get("cpus")
    gpus = binding.get("gpus")
    bound = sorted(cpus[unit] for unit in given.get("cores", ())) if cpus is not None else []
    devices = [gpus[unit] for unit in given.get("gpus", ())] if gpus is not None else []
    return bound, devices


def run_environment(binding: dict, given: dict[str, list[int]],
                    env: dict[str, str]) -> tuple[list[int], dict[str, str]]:
    """The CPUs to bind a run to (empty: do not bind) and the variables to add to its
    environment ``env`` (what it would get otherwise: the farmer's, the task's own, mpifarmer's).

    A bound run gets ``MPIFARMER_CPUS`` (its CPUs, in the kernel's list format) and
    ``OMP_NUM_THREADS`` (how many), unless ``env`` has one already. A run given GPUs gets their
    IDs in ``MPIFARMER_GPUS`` and in every variable of :data:`GPU_VARIABLES`, which replace
    the farmer's: on AMD GPUs ``ROCR_VISIBLE_DEVICES`` selects the devices and HIP numbers
    what it leaves from 0, so there ``HIP_VISIBLE_DEVICES`` and ``CUDA_VISIBLE_DEVICES`` (which
    HIP reads too) count 0, 1, ... instead of repeating the IDs, which would select nothing.
    """
    cpus, gpus = run_resources(binding, given)
    extra: dict[str, str] = {}
    if cpus:
        extra["MPIFARMER_CPUS"] = cpulist(cpus)
        if "OMP_NUM_THREADS" not in env:
            extra["OMP_NUM_THREADS"] = str(len(cpus))
    if gpus or (binding.get("hide") and binding.get("gpus") is not None):
        ids = ",".join(gpus)
        counted = ",".join(str(index) for index in range(len(gpus)))
        amd = binding.get("vendor") == "amd"
        extra["MPIFARMER_GPUS"] = ids
        extra["CUDA_VISIBLE_DEVICES"] = counted if amd else ids
        extra["HIP_VISIBLE_DEVICES"] = counted if amd else ids
        extra["ROCR_VISIBLE_DEVICES"] = ids
        extra["ZE_AFFINITY_MASK"] = ids
        if gpus and binding.get("order") and "CUDA_DEVICE_ORDER" not in env:
            extra["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return cpus, extra
