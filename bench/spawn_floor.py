#!/usr/bin/env python3
"""The floor for a farmer written in Python: the least a Python process can do per task.

``spawn_floor.py TASKLIST P`` runs every line of TASKLIST with ``bash -c`` (as mpifarmer's
default runner does), at most P at a time, with ``os.posix_spawn`` (as mpifarmer's pool does)
and output to /dev/null; no bookkeeping at all. It exits 1 if any task failed. The harness
(local_overhead.py) times it like the other tools: the gap between it and ``xargs bash`` is
what Python's process handling costs, the gap between it and mpifarmer is mpifarmer's own.
"""

import os
import shutil
import sys


def main() -> int:
    path, slots = sys.argv[1], int(sys.argv[2])
    bash = shutil.which("bash") or "/bin/bash"
    with open(path) as stream:
        lines = [line.rstrip("\n") for line in stream if line.strip() and not line.startswith("#")]
    env = dict(os.environ)
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    running = failed = 0
    todo = iter(lines)
    left = len(lines)
    while left:
        while running < slots:
            line = next(todo, None)
            if line is None:
                break
            os.posix_spawn(bash, [bash, "-c", line], env, file_actions=actions, setpgroup=0)
            running += 1
        _pid, status = os.wait()
        running -= 1
        left -= 1
        failed += os.waitstatus_to_exitcode(status) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
