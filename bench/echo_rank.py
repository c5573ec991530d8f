"""A load generator for rank 0: an MPI rank that speaks mpifarmer's protocol and does nothing else.

    mpiexec -n 1 python -m mpifarmer LIST -r hold -n 1 -w DIR : -n R python bench/echo_rank.py SLOTS HOLD

It says hello with SLOTS slots, and each task it is sent holds a slot for HOLD seconds (no
process, no pool, no spawner, no bookkeeping), then it reports the end, batched as a real rank
does. Its cost per task is a few microseconds, so a core of them can keep rank 0 busier than a
core of real ranks can: with rank 0 on a core of its own, what the farm then sustains is what
rank 0 can hand out. This measures rank 0 only; bench/mpi_dispatch.py measures real ranks too.
It is not a worker: it never runs a command, and it leaves on ``Finish`` or on a ``Drain``
(returning what it had not started).
"""

from __future__ import annotations

import heapq
import os
import socket
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpifarmer.scheduling import policy  # noqa: E402
from mpifarmer.transport import protocol as msg  # noqa: E402
from mpifarmer.transport.mpi import MpiTransport  # noqa: E402


def main() -> int:
    slots, hold = int(sys.argv[1]), float(sys.argv[2])
    transport = MpiTransport()
    setup = transport.broadcast()
    if "error" in setup:
        return 2
    transport.send(0, msg.Hello(socket.gethostname(), slots, os.getpid()))
    free = list(range(slots))
    waiting: deque[msg.TaskWork] = deque()
    running: list[tuple[float, int, float, msg.TaskWork]] = []  # (due, slot, t0, work): a heap
    draining, sent = False, time.monotonic()
    ends: list[msg.TaskEnd] = []
    held_since: float | None = None
    due = getattr(policy, "ends_report_due", None)
    while True:
        for _source, message in transport.poll():
            if isinstance(message, msg.Work):
                # (protocol 4 sent TaskWork tuples; 5 sends plain ones: this compares revisions)
                works = list(message.works()) if hasattr(message, "works") else message.tasks
                if draining:
                    transport.send(0, msg.Released([work.id for work in works]))
                else:
                    waiting.extend(works)
            elif isinstance(message, msg.Drain):
                draining = True
                if waiting:
                    transport.send(0, msg.Released([work.id for work in waiting]))
                    waiting.clear()
            elif isinstance(message, msg.Finish):
                transport.send(0, msg.Bye())
                transport.flush(5.0)
                return 0
        now = time.time()
        while running and running[0][0] <= now:
            _due, slot, t0, work = heapq.heappop(running)
            ends.append(msg.TaskEnd(work.id, 0, t0, now, slot, "exited", work.attrs))
            free.append(slot)
            held_since = held_since or time.monotonic()
        while free and waiting:
            heapq.heappush(running, (now + hold, free.pop(), now, waiting.popleft()))
        # as a worker reports its ends (mpifarmer.worker, policy.ends_report_due)
        if due is not None and due(held_since=held_since, now=time.monotonic(), queued=len(waiting),
                                   stopping=draining, wait=policy.END_REPORT_WAIT):
            transport.send(0, msg.Ended(ends))
            ends, held_since, sent = [], None, time.monotonic()
        elif due is None and ends:  # an older mpifarmer: each step's ends
            transport.send(0, msg.Ended(ends))
            ends, sent = [], time.monotonic()
        elif time.monotonic() - sent >= 1.0:
            transport.send(0, msg.Beat())
            sent = time.monotonic()
        # Look for work every 5 ms at most; wake for the next end, but at least 1 ms apart, so
        # that ends go back in batches (as a real rank's do) and 64 of these share a core.
        time.sleep(min(0.005, max(0.001, running[0][0] - time.time())) if running else 0.005)


if __name__ == "__main__":
    sys.exit(main())
