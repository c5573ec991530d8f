"""--logs packed against --logs files: wall time and the number of files a run leaves.

Runs the same list of N real tasks (``echo $i``, so every task has output to keep) with each
layout, in alternating order, each in a fresh work directory, and reports per layout the wall
time, the files and directories in the work directory, the bytes under ``logs/``, and the ratio
of the wall times (packed ÷ files). Then checks that ``mpifarmer log ID`` prints the right
output for a few tasks of the packed run, and times it.

    python3 bench/packed_logs.py [--tasks 100000] [--repeat 1] [--proc 2] [--write]

``--write`` appends the results, with the machine and its load, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
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


def count_files(root: Path) -> tuple[int, int, int]:
    """Files, directories (the root excluded) and bytes under logs/."""
    files = dirs = 0
    for _, dirnames, filenames in os.walk(root):
        files += len(filenames)
        dirs += len(dirnames)
    logs = sum(entry.stat().st_size for entry in os.scandir(root / "logs") if entry.is_file())
    return files, dirs, logs


def run_once(python: str, tasks: Path, workdir: Path, layout: str, proc: int) -> float:
    started = time.perf_counter()
    result = subprocess.run([python, "-m", "mpifarmer", str(tasks), "-w", str(workdir), "-n", str(proc),
                             "--logs", layout], capture_output=True, text=True, cwd=tasks.parent)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{layout} run failed ({result.returncode}): {result.stderr[-2000:]}")
    return wall


def loadavg() -> str:
    return ", ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--proc", type=int, default=2)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--write", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mpifarmer-packed-"))
    load_before = loadavg()
    began = time.time()
    try:
        tasks = root / "tasks.txt"
        tasks.write_text("".join(f"echo {i}\n" for i in range(args.tasks)))
        walls: dict[str, list[float]] = {"files": [], "packed": []}
        counts: dict[str, tuple[int, int, int]] = {}
        for repeat in range(args.repeat):
            order = ("files", "packed") if repeat % 2 == 0 else ("packed", "files")
            for layout in order:
                workdir = root / f"wd-{layout}-{repeat}"
                wall = run_once(args.python, tasks, workdir, layout, args.proc)
                walls[layout].append(wall)
                counts[layout] = count_files(workdir)
                print(f"{layout}: {wall:.2f} s, {counts[layout][0]} files, {counts[layout][1]} directories",
                      file=sys.stderr, flush=True)
                if layout == "files" and repeat < args.repeat - 1:
                    shutil.rmtree(workdir)
        packed_wd = root / f"wd-packed-{args.repeat - 1}"
        reads = []
        for task in (0, args.tasks // 2, args.tasks - 1):
            started = time.perf_counter()
            shown = subprocess.run([args.python, "-m", "mpifarmer", "log", str(task), "-w", str(packed_wd)],
                                   capture_output=True)
            reads.append(time.perf_counter() - started)
            if shown.stdout != f"{task}\n".encode():
                raise SystemExit(f"mpifarmer log {task} printed {shown.stdout[:200]!r}")
        index_bytes = sum(p.stat().st_size for p in (packed_wd / "logs").glob("pack.*.index"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = loadavg()
    median = {layout: statistics.median(values) for layout, values in walls.items()}
    ratio = median["packed"] / median["files"]
    rows = [f"| `--logs {layout}` | {args.tasks:,} | {', '.join(f'{w:.1f}' for w in walls[layout])} | "
            f"{median[layout]:.1f} | {counts[layout][0]:,} | {counts[layout][1]} | {counts[layout][2]:,} |"
            for layout in ("files", "packed")]
    stamp = datetime.datetime.fromtimestamp(began, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    report = "\n".join([
        f"\n<!-- bench-run: {stamp} -->",
        f"## {stamp}: packed logs (bench/packed_logs.py --tasks {args.tasks} --repeat {args.repeat} "
        f"--proc {args.proc})",
        "",
        f"- machine: {os.cpu_count()} cores, {memory:.0f} GiB memory, kernel {platform.release()}, Python "
        f"{platform.python_version()}; mpifarmer at {commit}; work directories under {tempfile.gettempdir()}",
        f"- load average (1, 5, 15 min) before: {load_before}; after: {load_after} (other work ran on the machine)",
        "",
        "| layout | tasks (`echo $i`) | wall per run (s) | wall median (s) | files in the work directory | "
        "directories | bytes in logs/ |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- wall time packed ÷ files: **{ratio:.3f}**",
        f"- packed index: {index_bytes:,} bytes ({index_bytes / args.tasks:.0f} bytes per run)",
        f"- `mpifarmer log ID` on the packed work directory (first, middle, last task): "
        f"{', '.join(f'{r:.2f}' for r in reads)} s",
        "",
    ])
    print(report)
    if args.write:
        with (REPO / "bench" / "RESULTS.md").open("a") as stream:
            stream.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
