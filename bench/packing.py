#!/usr/bin/env python3
"""What one packing decision costs: which waiting task starts, and on which units.

``python bench/packing.py [--repeat R]`` times, in one invocation, the spawner's inner step
(``next_to_start`` then ``Units.take`` and ``give_back``) on explicit inventories, against the
decision it replaced (the oldest task or none, units lowest first) where that one applies:

* slots: a pool of 64 slots, every task one slot (the default farmer): new and old;
* blocked: the oldest task waits for 8 cores while 64 one-core tasks behind it are looked at
  (the reservation's worst case: the whole window scanned, nothing starts);
* gpu node: 64 cores in 4 domains, 4 GPUs, tasks of 16 cores and 1 GPU placed near their GPU.

Prints microseconds per decision (median of R runs of many decisions each).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mpifarmer.scheduling.capacity import Units, next_to_start  # noqa: E402


def old_next_to_start(waiting, units):
    """The decision before cores and GPUs: the oldest task when it fits, else none."""
    oldest = next(iter(waiting), None)
    return 0 if oldest is not None and units.fits(oldest) else None


def per_decision(decide, capacity, near, request, queue, count=20_000) -> float:
    units = Units(capacity, near)
    waiting = [request] * queue
    started = time.perf_counter()
    for _ in range(count):
        index = decide(waiting, units)
        if index is not None:
            units.give_back(units.take(waiting[index]))
    return (time.perf_counter() - started) / count * 1e6


def blocked(decide, count=5_000) -> float:
    units = Units({"slots": 64, "cores": 64})
    units.take({"slots": 1, "cores": 60})
    waiting = [{"slots": 1, "cores": 8}] + [{"slots": 1, "cores": 1}] * 64
    started = time.perf_counter()
    for _ in range(count):
        decide(waiting, units)
    return (time.perf_counter() - started) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    near = {gpu: list(range(16 * gpu, 16 * gpu + 16)) for gpu in range(4)}
    cases = {
        "slots, new": lambda: per_decision(next_to_start, {"slots": 64}, None, {"slots": 1}, 100),
        "slots, old": lambda: per_decision(old_next_to_start, {"slots": 64}, None, {"slots": 1}, 100),
        "blocked, new (window of 64 scanned)": lambda: blocked(next_to_start),
        "gpu node, new": lambda: per_decision(next_to_start, {"slots": 4, "cores": 64, "gpus": 4}, near,
                                              {"slots": 1, "cores": 16, "gpus": 1}, 100),
    }
    print(f"{'case':40} {'us/decision':>12} {'min':>8} {'max':>8}")
    for name, case in cases.items():
        times = [case() for _ in range(args.repeat)]
        print(f"{name:40} {statistics.median(times):12.2f} {min(times):8.2f} {max(times):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
