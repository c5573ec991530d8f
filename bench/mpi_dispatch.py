"""MPI mode benchmarks: rank 0's dispatch rate, and MPI mode against local mode.

1. Dispatch rate: N zero-length tasks (the NoopRunner: no process is started) under
   ``mpiexec -n R`` for R in --ranks, one worker per rank. The rate is tasks divided by the
   time from the first task's start to the last task's end, as the journal records them, so
   start-up (reading the list, MPI_Init) and shutdown are left out; wall time is reported too.
2. 2,000 ``true`` tasks under ``mpiexec -n 2 ... -n 1`` against local mode ``-n 2``: the same
   two workers, so the ratio is the cost of MPI dispatch.

    python3 bench/mpi_dispatch.py [--tasks 100000] [--ranks 2,4,8] [--repeat 3] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PYTHON = "/tmp/venv-dev/bin/python" if os.path.exists("/tmp/venv-dev/bin/python") else sys.executable


def journal_span(workdir: Path) -> tuple[int, float]:
    """Finished runs and the time from the first start to the last end."""
    t0, t1, count = float("inf"), 0.0, 0
    with (workdir / "journal.jsonl").open() as stream:
        for line in stream:
            if '"e":"end"' not in line:
                continue
            record = json.loads(line)
            if record["st"] == "finished":
                count += 1
                t0, t1 = min(t0, record["t0"]), max(t1, record["t1"])
    return count, t1 - t0


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}; see {log}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=DEFAULT_PYTHON)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--ranks", default="2,4,8")
    parser.add_argument("--true-tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="add the report to bench/RESULTS.md")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    mpiexec = shutil.which("mpiexec", path=str(Path(args.python).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("no mpiexec next to the Python or on PATH: pip install mpich")
    # Run directories are removed only at the end: on ext4 without a journal, creating files
    # slows down for minutes after many files were deleted (see RESULTS.md).
    tmp = Path(tempfile.mkdtemp(prefix="mpifarmer-mpibench-"))
    home = tmp / "home"
    (home / ".mpifarmer" / "runners.d").mkdir(parents=True)
    (home / ".mpifarmer" / "runners.d" / "noop.ini").write_text("[noop]\nRunner = mpifarmer.runners.NoopRunner\n")
    env = dict(os.environ, HOME=str(home), PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    farmer = [args.python, "-m", "mpifarmer"]
    load_before = os.getloadavg()

    noop_list = tmp / "noop.txt"
    noop_list.write_text("true\n" * args.tasks)
    rates: dict[int, list[tuple[float, float]]] = {}
    for repeat in range(args.repeat):
        for ranks in [int(r) for r in args.ranks.split(",") if r]:
            workdir = tmp / f"noop-{ranks}-{repeat}"
            wall = timed([mpiexec, "-n", str(ranks), *farmer, str(noop_list), "-r", "noop", "-n", "1",
                          "-w", str(workdir)], env, tmp / f"noop-{ranks}-{repeat}.log")
            count, span = journal_span(workdir)
            assert count == args.tasks, f"{workdir}: {count} of {args.tasks} finished"
            rates.setdefault(ranks, []).append((count / span, wall))

    true_list = tmp / "true.txt"
    true_list.write_text("true\n" * args.true_tasks)
    walls: dict[str, list[float]] = {"local -n 2": [], "mpiexec -n 2, -n 1": []}
    for repeat in range(args.repeat):
        for name in (walls if repeat % 2 == 0 else reversed(list(walls))):
            workdir = tmp / f"true-{repeat}-{name[:5]}"
            if name.startswith("local"):
                cmd = [*farmer, str(true_list), "-n", "2", "-w", str(workdir)]
            else:
                cmd = [mpiexec, "-n", "2", *farmer, str(true_list), "-n", "1", "-w", str(workdir)]
            walls[name].append(timed(cmd, env, tmp / f"true-{repeat}.log"))
            count, _ = journal_span(workdir)
            assert count == args.true_tasks, f"{workdir}: {count} of {args.true_tasks} finished"

    lines = [f"### MPI mode, {datetime.date.today()}", "",
             f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}; "
             f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after. {args.note}".rstrip(), "",
             f"Dispatch rate, {args.tasks} zero-length tasks (NoopRunner), one worker per rank, "
             f"median of {args.repeat} (rate from the first start to the last end in the journal):", "",
             "| ranks | tasks/s (median) | tasks/s (best) | wall s (median) |", "| --- | --- | --- | --- |"]
    for ranks, values in rates.items():
        per_second = [rate for rate, _ in values]
        lines.append(f"| {ranks} | {statistics.median(per_second):,.0f} | {max(per_second):,.0f} | "
                     f"{statistics.median(wall for _, wall in values):.2f} |")
    local, mpi = (statistics.median(walls[name]) for name in walls)
    lines += ["", f"{args.true_tasks} `true` tasks, two workers either way, median of {args.repeat}:", "",
              "| run | wall s (median) | ratio to local |", "| --- | --- | --- |",
              f"| local `-n 2` | {local:.2f} | 1.00 |",
              f"| `mpiexec -n 2` with `-n 1` | {mpi:.2f} | {mpi / local:.2f} |", ""]
    report = "\n".join(lines)
    print(report)
    if args.write:
        with (REPO / "bench" / "RESULTS.md").open("a") as stream:
            stream.write("\n" + report)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
