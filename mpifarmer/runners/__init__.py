"""Runners: how one task is executed (see :class:`Runner`).

``BasicRunner`` runs the command with bash on the node; ``ShifterRunner``,
``PodmanHPCRunner`` and ``ApptainerRunner`` run it inside a Shifter, podman-hpc or Apptainer
container; ``NoopRunner`` runs nothing and ``HoldRunner`` holds a slot for a while without
running anything (both for benchmarks and tests).
Runners only build the argv; the worker pool starts and stops processes.
"""

from mpifarmer.runners.apptainer import ApptainerRunner
from mpifarmer.runners.base import BasicRunner, HoldRunner, NoopRunner, Runner
from mpifarmer.runners.podman_hpc import PodmanHPCRunner
from mpifarmer.runners.shifter import ShifterRunner

__all__ = ["ApptainerRunner", "BasicRunner", "HoldRunner", "NoopRunner", "PodmanHPCRunner", "Runner", "ShifterRunner"]
