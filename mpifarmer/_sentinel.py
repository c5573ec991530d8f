"""The sentinel: kills a pool's tasks when both its farmer and its spawner are gone.

Either of the two alone sees the other die and kills the tasks itself: the spawner when its
stdin closes, the farmer when its spawner's replies end. When both die at once (``kill -9`` of
their process group, an OOM kill of both), nobody would: each task runs in its own process
group and is reparented to init. So every pool starts this small process, in a session of its
own (a signal to the farmer's group does not reach it), reading a pipe whose write end only the
farmer and its spawners hold. End of file with no goodbye byte means both died: it SIGKILLs the
process group of every process whose environment carries the pool's token, until none is left.

Run as ``python -I -S _sentinel.py TOKEN``; it imports nothing from mpifarmer (environment.py
imports :func:`processes_with` from here, so the scan is written once).
"""

import os
import signal
import sys
import time

#: What a farmer writes before closing its end when every task was reaped: nothing to do.
GOODBYE = b"q"


def processes_with(variable: str) -> list[int]:
    """PIDs of this user's processes whose environment holds ``variable`` (NAME=VALUE)."""
    wanted = b"\0" + variable.encode() + b"\0"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as stream:
                if wanted in b"\0" + stream.read() + b"\0":
                    found.append(int(name))
        except OSError:
            continue
    return found


def kill_tagged(variable: str, patience: float = 5.0) -> int:
    """SIGKILL every process carrying ``variable``, and its process group, until none is left
    (a task may fork while it is being killed); return how many processes were found."""
    own = os.getpid()
    seen: set[int] = set()
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        pids = [pid for pid in processes_with(variable) if pid != own]
        if not pids:
            break
        for pid in pids:
            seen.add(pid)
            try:
                group = os.getpgid(pid)
                if group != os.getpgrp():
                    os.killpg(group, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    return len(seen)


def main() -> int:
    token = sys.argv[1]
    ignored = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)  # signals.HELPER_IGNORES
    for signum in ignored:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, ignored)  # the pool started us with them blocked
    said = b""
    while chunk := os.read(0, 64):
        said += chunk
    if GOODBYE not in said:
        kill_tagged(f"MPIFARMER_POOL={token}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
