"""How work and results travel between the coordinator (rank 0) and the worker ranks.

One interface, two implementations: :class:`~mpifarmer.transport.inprocess.InProcessHub` for
tests, and :class:`~mpifarmer.transport.mpi.MpiTransport`, the only module that imports mpi4py
(imported lazily, so local mode works on a machine without MPI). The messages themselves are
defined once, in :mod:`mpifarmer.transport.protocol`.
"""

from __future__ import annotations

from typing import Protocol

from mpifarmer.transport.protocol import Message

__all__ = ["Transport"]


class Transport(Protocol):
    """A rank's connection to the others."""

    rank: int
    size: int

    def send(self, dest: int, message: Message) -> None:
        """Send without waiting for the receiver."""

    def poll(self) -> list[tuple[int, Message]]:
        """Every message that has arrived, as (source rank, message), without blocking."""

    def flush(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for sent messages to leave; True if they all did."""

    def abort(self, code: int) -> None:
        """End every rank of the job now (used when a rank is lost)."""
