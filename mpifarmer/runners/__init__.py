"""Runners: how one task is executed (see :class:`Runner`).

``BasicRunner`` runs the command with bash on the node; ``ShifterRunner`` runs it inside a
Shifter container; ``NoopRunner`` runs nothing (for benchmarks).
Runners only build the argv; the worker pool starts and stops processes.
"""

from mpifarmer.runners.base import BasicRunner, NoopRunner, Runner
from mpifarmer.runners.shifter import ShifterRunner

__all__ = ["BasicRunner", "NoopRunner", "Runner", "ShifterRunner"]
