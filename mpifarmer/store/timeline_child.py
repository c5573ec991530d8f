"""Rewriting ``timeline.json`` in a child process while the farm runs.

Building the timeline parses every end record of the live journal generation (and, once per
compacted generation, that generation's): at millions of tasks, seconds of pure Python. In a
thread of the farmer it would hold the interpreter lock for those seconds, and the farmer's
dispatch slowed by a fifth at a million tasks (measured, bench/RESULTS.md). A child process
reads only the journal files, which it needs no lock for (see :mod:`mpifarmer.store.history`),
and leaves the farmer's loop alone. At rest the farmer writes the timeline itself, exactly.

A child killed anywhere leaves at most a temporary file (written whole and renamed, like every
view), which the next farmer's start removes; two writers at once write the same whole files.
A child dies with its farmer (Linux's parent-death signal): a child outliving a killed farmer
could replace the exact timeline that a later farmer wrote at rest with an older one.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from mpifarmer.store.workdir import WorkDir

__all__ = ["TimelineChild"]

logger = logging.getLogger(__name__)


class TimelineChild:
    """At most one child process rewriting one work directory's timeline."""

    def __init__(self, workdir: WorkDir) -> None:
        self.workdir = workdir
        #: Wall seconds the last child took, start-up included (0 before the first).
        self.cost = 0.0
        self._child: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    @property
    def running(self) -> bool:
        """Whether a child is still at work (reaping it if it is done)."""
        if self._child is None:
            return False
        if self._child.poll() is None:
            return True
        self._reap()
        return False

    def start(self) -> None:
        if self.running:
            return
        self._started = time.perf_counter()
        self._child = subprocess.Popen(
            [sys.executable, "-m", "mpifarmer.store.timeline_child", str(self.workdir.root), str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)  # a Ctrl-C meant for the farm does not reach it: the farmer stops it

    def stop(self) -> None:
        """Kill a child still at work (the farmer is about to write the timeline itself)."""
        if self._child is not None and self._child.poll() is None:
            self._child.kill()
        if self._child is not None:
            self._child.wait()
            self._reap()

    def _reap(self) -> None:
        child, self._child = self._child, None
        assert child is not None
        error = child.stderr.read().decode(errors="replace").strip() if child.stderr else ""
        if child.stderr:
            child.stderr.close()
        if child.returncode == 0:
            self.cost = time.perf_counter() - self._started
        elif child.returncode > 0:  # killed by the farmer (negative): nothing to say
            logger.warning("could not rewrite %s while the farm runs (%s); it is written when the farmer leaves",
                           self.workdir.timeline, error.splitlines()[-1] if error else f"exit code {child.returncode}")


def _die_with(parent: int) -> None:
    """Be killed when ``parent`` dies; exit now if it already has."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a late child writes an older, valid timeline
        pass
    if os.getppid() != parent:
        sys.exit(0)


def main(argv: list[str]) -> int:
    """The child: ``python -m mpifarmer.store.timeline_child WORKDIR PARENT_PID``."""
    _die_with(int(argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from mpifarmer.store.views import write_timeline

    try:
        write_timeline(WorkDir(argv[0]))
    except OSError as error:
        print(f"{error.filename or argv[0]}: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
