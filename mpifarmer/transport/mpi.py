"""MPI transport: the only module that imports mpi4py.

Messages are pickled dataclasses sent with ``isend`` (never waiting for the receiver) and
received after ``Iprobe`` finds them, so no rank ever blocks inside MPI: a rank blocked in
``recv`` or ``probe`` spins a whole core (measured with MPICH and Open MPI), which would steal
CPU from the tasks it runs. Callers sleep between polls with :class:`~mpifarmer.transport.backoff.Backoff`.
"""

from __future__ import annotations

import time
from typing import Any

from mpifarmer.transport.backoff import Backoff
from mpifarmer.transport.protocol import Message

__all__ = ["MpiTransport", "world"]

TAG = 7051


def world() -> Any:
    """Initialise MPI (on first use) and return COMM_WORLD."""
    import mpi4py

    mpi4py.rc.thread_level = "funneled"  # only the main thread calls MPI
    from mpi4py import MPI

    return MPI.COMM_WORLD


class MpiTransport:
    """Point-to-point messages over a communicator (COMM_WORLD by default)."""

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm if comm is not None else world()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self._status = MPI.Status()
        self._sending: list[Any] = []

    def send(self, dest: int, message: Message) -> None:
        self._sending.append(self.comm.isend(message, dest=dest, tag=TAG))
        if len(self._sending) > 32:
            self._sending = [request for request in self._sending if not request.Test()]

    def poll(self) -> list[tuple[int, Message]]:
        received = []
        status = self._status
        while self.comm.Iprobe(source=self._mpi.ANY_SOURCE, tag=TAG, status=status):
            source = status.Get_source()
            received.append((source, self.comm.recv(source=source, tag=TAG)))
        return received

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        backoff = Backoff(0.01)
        while self._sending:
            self._sending = [request for request in self._sending if not request.Test()]
            if not self._sending:
                break
            if time.monotonic() > deadline:
                return False
            backoff.sleep()
        return True

    def broadcast(self, value: Any = None) -> Any:
        """Rank 0's ``value`` on every rank (a collective: every rank must call it)."""
        return self.comm.bcast(value, root=0)

    def abort(self, code: int) -> None:
        self.comm.Abort(code)
