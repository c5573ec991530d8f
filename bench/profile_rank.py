"""Run ``python -m mpifarmer ARGS`` under cProfile timed by CPU time (not wall time, which on an
oversubscribed machine charges a function for the time its process waited for a core).

    python bench/profile_rank.py OUT.prof ARGS...     (as one rank of mpiexec's MPMD form)
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    out, sys.argv = sys.argv[1], ["mpifarmer", *sys.argv[2:]]
    profiler = cProfile.Profile(time.process_time)
    try:
        profiler.runcall(runpy.run_module, "mpifarmer", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        profiler.dump_stats(out)
        raise SystemExit(done.code) from None
    profiler.dump_stats(out)


if __name__ == "__main__":
    main()
