"""How long ``mpifarmer status`` takes on a large work directory, while the farm runs and at rest.

For each size N, a farmer runs N tasks with the NoopRunner (``-n 2``, no process started, so the
journal grows as fast as mpifarmer can write it: the hardest case for a reader). While the
farmer runs (its tasks, then its close: views, timeline, the last compaction),
``mpifarmer status --json`` is timed every ``--every`` seconds, each time with the size of the
live journal generation it had to replay (the rest comes from the snapshot and, for the rates,
from the history's tail). Wall time and CPU time (user + system) are both reported: on a shared
machine the wall time is mostly waiting for a core that the farmer and others hold. At rest, in
the same invocation, against baselines on the same work directory:

  python -c pass        the interpreter's start-up, a floor no command beats
  mpifarmer --version   start-up with mpifarmer's command line imported
  restart (done)        the farmer run again on the finished work directory (it reads the same
                        snapshot and journal, under the lock, and writes its views' stamp)
  status, status --json the command measured

Every figure is the median of ``--repeat`` runs (wall time, spawn to exit).

    python bench/status_scale.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def mpifarmer(*args: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); "
            "from mpifarmer.__main__ import main; sys.exit(main())", *args]


def timed(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system, from wait4) of one run of ``argv``."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in ok:
        sys.exit(f"{argv[-4:]} exited {code}: {err.decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def journal_bytes(workdir: Path) -> int:
    try:
        return (workdir / "journal.jsonl").stat().st_size
    except FileNotFoundError:
        return 0


def during(size: int, tmp: Path, env: dict[str, str],
           every: float) -> tuple[list[tuple[float, float, int]], float]:
    """Run a fresh farm of ``size`` tasks, timing status every ``every`` s while its tasks run:
    [(wall s, CPU s, live journal bytes)]; and the farm's wall time."""
    tasks = tmp / f"tasks-{size}.txt"
    tasks.write_text("".join(f"true {i}\n" for i in range(size)))
    workdir = tmp / f"wd-{size}"
    start = time.perf_counter()
    farm = subprocess.Popen(mpifarmer(str(tasks), "-w", str(workdir), "-r", "noop", "-n", "2", "--progress", "0"),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = []
    while farm.poll() is None:
        time.sleep(every)
        if not (workdir / "journal.jsonl").exists() or farm.poll() is not None:
            continue
        live = journal_bytes(workdir)
        wall, cpu = timed(mpifarmer("status", "-w", str(workdir), "--json"), env, ok=(0, 1, 3))
        samples.append((wall, cpu, live))
    _, err = farm.communicate()
    if farm.returncode != 0:
        sys.exit(f"the farm exited {farm.returncode}: {err.decode()[-2000:]}")
    return samples, time.perf_counter() - start


def at_rest(size: int, tmp: Path, env: dict[str, str], repeat: int) -> dict[str, tuple[float, float]]:
    workdir = tmp / f"wd-{size}"
    tasks = tmp / f"tasks-{size}.txt"
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "mpifarmer --version": mpifarmer("--version"),
        "restart (done)": mpifarmer(str(tasks), "-w", str(workdir), "-r", "noop", "-n", "2"),
        "status": mpifarmer("status", "-w", str(workdir)),
        "status --json": mpifarmer("status", "-w", str(workdir), "--json"),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, argv in commands.items():  # interleaved, so that load changes hit all alike
            runs[name].append(timed(argv, env))
    return {name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
            for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--every", type=float, default=2.0, help="seconds between status runs during the farm")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mpifarmer-status-") as name:
        tmp = Path(name)
        home = tmp / "home"
        (home / ".mpifarmer" / "runners.d").mkdir(parents=True)
        (home / ".mpifarmer" / "runners.d" / "noop.ini").write_text("[noop]\nRunner = mpifarmer.runners.NoopRunner\n")
        env = dict(os.environ, HOME=str(home))
        commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {commit}, load {open('/proc/loadavg').read().split()[:3]}")
        for size in args.sizes:
            samples, farm_wall = during(size, tmp, env, args.every)
            rest = at_rest(size, tmp, env, args.repeat)
            print(f"\n## {size:,} tasks (farm: {farm_wall:.1f} s)")
            print("\nwhile the farm ran, each status --json: wall s / CPU s (live journal MiB)")
            print(", ".join(f"{wall:.2f}/{cpu:.2f} ({live / 2**20:.0f})" for wall, cpu, live in samples) or "none")
            if samples:
                walls, cpus = [s[0] for s in samples], [s[1] for s in samples]
                print(f"wall: median {statistics.median(walls):.2f} s, max {max(walls):.2f} s; CPU: median "
                      f"{statistics.median(cpus):.2f} s, max {max(cpus):.2f} s; over {len(walls)} runs")
            print(f"\n| at rest, median of {args.repeat} | wall s | CPU s |\n|---|---|---|")
            for name, (wall, cpu) in rest.items():
                print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
            print(json.dumps({"size": size, "during": samples, "rest": rest}))
        print(f"\n# load after {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
