#!/usr/bin/env python3
"""The floor for a farmer written in Python: the least a Python process can do per task.

``spawn_floor.py TASKLIST P [--logs DIR]`` runs every line of TASKLIST with ``bash -c`` (as
mpifarmer's default runner does), at most P at a time, with ``os.posix_spawn`` (as mpifarmer's
pool does) and output to /dev/null, or with ``--logs`` to a new file DIR/log_ID per task (as
mpifarmer writes logs/log_ID); no bookkeeping at all. It exits 1 if any task failed. The harness
(local_overhead.py) times it like the other tools: the gap between it and ``xargs bash`` is
what Python's process handling costs, the gap between it and mpifarmer is mpifarmer's own.
"""

import os
import shutil
import sys


def main() -> int:
    path, slots = sys.argv[1], int(sys.argv[2])
    logs = sys.argv[4] if sys.argv[3:4] == ["--logs"] else None
    bash = shutil.which("bash") or "/bin/bash"
    with open(path) as stream:
        lines = [line.rstrip("\n") for line in stream if line.strip() and not line.startswith("#")]
    env = dict(os.environ)
    if logs:
        os.makedirs(logs, exist_ok=True)
    output = (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)
    running = failed = 0
    todo = enumerate(lines)
    left = len(lines)
    while left:
        while running < slots:
            task, line = next(todo, (0, None))
            if line is None:
                break
            if logs:
                output = (os.POSIX_SPAWN_OPEN, 1, f"{logs}/log_{task}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), output, (os.POSIX_SPAWN_DUP2, 1, 2)]
            os.posix_spawn(bash, [bash, "-c", line], env, file_actions=actions, setpgroup=0)
            running += 1
        _pid, status = os.wait()
        running -= 1
        left -= 1
        failed += os.waitstatus_to_exitcode(status) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
