"""MPI mode benchmarks: how fast rank 0 hands tasks to the other ranks, and MPI mode against local mode.

1. Remote hand-out. A list of tasks run by the HoldRunner (each holds a slot for --hold seconds
   and starts no process) under ``mpiexec -n R`` for R in --ranks, with the same total number
   of slots at every R (``-n`` = --slots / R per rank), so that the demand, slots / hold tasks
   per second, is the same for every R. A baseline runs in the same invocation: local mode with
   all the slots in one pool (the coordinator feeding its own worker, no MPI).

   From the journal's end records (each names the rank that ran the task) the harness takes the
   steady window: from the moment every rank has started a task to the moment the first rank
   ran out, so that the staggered start of many ranks and the tail of the list are left out.
   In that window it reports the tasks per second that ended on ranks other than 0 (handed out
   over MPI), the share of tasks rank 0's own worker ran, and rank 0's CPU time per task it
   dispatched (utime + stime of rank 0's process, read from /proc/PID/stat every 50 ms while it
   runs, the PID taken from the farmer's hello record, interpolated to the window's ends).

2. 2,000 ``true`` tasks under ``mpiexec -n 2 ... -n 1`` against local mode ``-n 2``: the same
   two workers, so the ratio is the cost of MPI dispatch with real processes (--true-tasks 0 skips it).

    python3 bench/mpi_dispatch.py [--tasks 300000] [--ranks 4,16,64] [--slots 6400] [--hold 0.1]
                                  [--repeat 2] [--profile R] [--write --note "..."]

--profile R also runs rank 0 of one R-rank job under cProfile, timed by CPU time
(bench/profile_rank.py as rank 0 in mpiexec's MPMD form, the other ranks unprofiled), and prints
its top entries.
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PYTHON = "/tmp/venv-dev/bin/python" if os.path.exists("/tmp/venv-dev/bin/python") else sys.executable
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Handout:
    """One hand-out run, measured over its steady window."""

    ranks: int
    wall: float
    window: float  # seconds
    remote: int  # tasks that ended on ranks != 0 in the window
    local: int  # on rank 0
    cpu: float  # rank 0's CPU seconds in the window
    finished: int
    cpu_all: float  # CPU seconds of every process of the run (all ranks, mpiexec), the whole run

    @property
    def remote_rate(self) -> float:
        return self.remote / self.window

    @property
    def rate(self) -> float:
        return (self.remote + self.local) / self.window

    @property
    def share0(self) -> float:
        return self.local / max(1, self.remote + self.local)

    @property
    def cpu_per_task(self) -> float:
        return self.cpu / max(1, self.remote + self.local)

    @property
    def busy0(self) -> float:
        """Rank 0's CPU seconds per second of the window: near 1, it is what limits the rate."""
        return self.cpu / self.window


def journal_lines(workdir: Path):
    """The lines of the journal's compacted generations (history/), then of the journal."""
    history = sorted((workdir / "history").glob("journal.*.jsonl"), key=lambda path: int(path.name.split(".")[1]))
    for path in [*history, workdir / "journal.jsonl"]:
        with path.open() as stream:
            yield from stream


def read_ends(workdir: Path) -> list[tuple[int, float, float]]:
    """(rank, t0, t1) of every finished run."""
    ends = []
    for line in journal_lines(workdir):
        if '"e":"end"' in line:
            record = json.loads(line)
            if record["st"] == "finished":
                ends.append((record["rank"], record["t0"], record["t1"]))
    return ends


def farmer_pid(workdir: Path) -> int | None:
    try:
        for line in journal_lines(workdir):
            if '"e":"hello"' in line:
                return json.loads(line)["pid"]
    except (OSError, ValueError):
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as stream:
            fields = stream.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of stat)


def run_sampled(cmd: list[str], env: dict[str, str], log: Path,
                workdir: Path) -> tuple[float, list[tuple[float, float]], float]:
    """Run ``cmd``; return its wall time, (wall clock, CPU seconds) samples of rank 0's process,
    and the CPU seconds of all its processes (those it waited for, and theirs)."""
    samples: list[tuple[float, float]] = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as out:
        job = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        pid = None
        while job.poll() is None:
            time.sleep(0.05)
            if pid is None:
                pid = farmer_pid(workdir)
            if pid is not None:
                cpu = cpu_seconds(pid)
                if cpu is not None:
                    samples.append((time.time(), cpu))
        code = job.wait()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {code}; see {log}")
    return wall, samples, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def cpu_at(samples: list[tuple[float, float]], when: float) -> float:
    """Rank 0's CPU seconds at wall time ``when``, interpolated between samples."""
    times = [t for t, _ in samples]
    i = bisect.bisect_left(times, when)
    if i == 0:
        return samples[0][1]
    if i == len(samples):
        return samples[-1][1]
    (ta, ca), (tb, cb) = samples[i - 1], samples[i]
    return ca + (cb - ca) * (when - ta) / max(tb - ta, 1e-9)


def measure(ranks: int, wall: float, samples: list[tuple[float, float]], workdir: Path, tasks: int,
            cpu_all: float) -> Handout:
    ends = read_ends(workdir)
    if len(ends) != tasks:
        raise SystemExit(f"{workdir}: {len(ends)} of {tasks} tasks finished")
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for rank, t0, t1 in ends:
        first[rank] = min(first.get(rank, t0), t0)
        last[rank] = max(last.get(rank, t1), t1)
    if len(first) < (ranks if ranks > 0 else 1 - ranks):
        raise SystemExit(f"{workdir}: only ranks {sorted(first)} of {ranks} ran tasks")
    begin, end = max(first.values()), min(last.values())
    if end - begin < 1.0 or len(samples) < 2:
        raise SystemExit(f"{workdir}: the steady window is {end - begin:.2f} s: give more --tasks")
    remote = sum(1 for rank, _, t1 in ends if rank != 0 and begin <= t1 <= end)
    local = sum(1 for rank, _, t1 in ends if rank == 0 and begin <= t1 <= end)
    return Handout(ranks, wall, end - begin, remote, local, cpu_at(samples, end) - cpu_at(samples, begin), len(ends),
                   cpu_all)


def label(ranks: int) -> str:
    """What a configuration key stands for (see main)."""
    if ranks == 1:
        return "local mode (baseline)"
    return f"`mpiexec -n {ranks}`" if ranks > 1 else f"rank 0 and {-ranks} echo ranks"


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}; see {log}")
    return elapsed


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "mpifarmer"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' (mpifarmer/ modified)' if dirty else ''}"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=DEFAULT_PYTHON)
    parser.add_argument("--tasks", type=int, default=300_000)
    parser.add_argument("--ranks", default="4,16,64")
    parser.add_argument("--echo-ranks", default="", metavar="R,...",
                        help="also rank 0 (-n 1) with R load-generating ranks (bench/echo_rank.py)")
    parser.add_argument("--slots", type=int, default=6400, help="slots in all, divided among the ranks")
    parser.add_argument("--hold", type=float, default=0.1, help="seconds each task holds its slot")
    parser.add_argument("--no-local", action="store_true", help="skip the local-mode baseline")
    parser.add_argument("--true-tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", type=int, default=0, metavar="R", help="profile rank 0 of an R-rank job")
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--pin", action="store_true",
                        help="rank 0 (and the local baseline) on CPU 0 alone, every other rank on the other CPUs")
    parser.add_argument("--write", action="store_true", help="add the report to bench/RESULTS.md")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    mpiexec = shutil.which("mpiexec", path=str(Path(args.python).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("no mpiexec next to the Python or on PATH: pip install mpich")
    # Run directories are removed only at the end: on ext4 without a journal, creating files
    # slows down for minutes after many files were deleted (see RESULTS.md).
    tmp = Path(tempfile.mkdtemp(prefix="mpifarmer-mpibench-", dir=args.tmpdir))
    home = tmp / "home"
    (home / ".mpifarmer" / "runners.d").mkdir(parents=True)
    (home / ".mpifarmer" / "runners.d" / "hold.ini").write_text(
        f"[hold]\nRunner = mpifarmer.runners.HoldRunner\nseconds = {args.hold}\n")
    env = dict(os.environ, HOME=str(home), PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    farmer = [args.python, "-m", "mpifarmer"]
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")
    pin0 = ["taskset", "-c", str(cpus[0])] if args.pin else []
    pin_rest = ["taskset", "-c", ",".join(map(str, cpus[1:]))] if args.pin else []
    commit, load_before, started = git_commit(), loadavg(), datetime.datetime.now(datetime.UTC)
    rank_counts = [int(r) for r in args.ranks.split(",") if r]

    hold_list = tmp / "hold.txt"
    hold_list.write_text("true\n" * args.tasks)
    echo_counts = [int(r) for r in args.echo_ranks.split(",") if r]
    # 1: the local-mode baseline; R > 1: R ranks of mpifarmer; -R: rank 0 and R echo ranks
    configs = ([] if args.no_local else [1]) + rank_counts + [-r for r in echo_counts]
    results: dict[int, list[Handout]] = {}
    for repeat in range(args.repeat):
        for ranks in configs if repeat % 2 == 0 else list(reversed(configs)):
            workdir = tmp / f"hold-{ranks}-{repeat}"
            per_rank = args.slots // abs(ranks)
            common = [str(hold_list), "-r", "hold", "-n", str(per_rank), "-w", str(workdir)]
            cmd = [*pin0, *farmer, *common]
            if ranks > 1:  # MPMD form: rank 0 is the first program
                cmd = [mpiexec, "-n", "1", *cmd, ":", "-n", str(ranks - 1), *pin_rest, *farmer, *common]
            elif ranks < 0:
                common[common.index("-n") + 1] = "1"
                cmd = [mpiexec, "-n", "1", *pin0, *farmer, *common, ":", "-n", str(-ranks), *pin_rest, args.python,
                       str(REPO / "bench" / "echo_rank.py"), str(per_rank), str(args.hold)]
            wall, samples, cpu_all = run_sampled(cmd, env, tmp / f"hold-{ranks}-{repeat}.log", workdir)
            result = measure(ranks, wall, samples, workdir, args.tasks, cpu_all)
            results.setdefault(ranks, []).append(result)
            print(f"{label(ranks)} x {per_rank} slots: {result.remote_rate:,.0f} "
                  f"remote/s, {result.rate:,.0f}/s in all, rank 0 ran {result.share0:.1%}, rank 0 CPU "
                  f"{result.cpu_per_task * 1e6:.1f} us/task, busy {result.busy0:.0%}, all processes "
                  f"{cpu_all / args.tasks * 1e6:.0f} us/task, "
                  f"window {result.window:.1f} s, wall {wall:.1f} s",
                  file=sys.stderr)

    profile_text = ""
    if args.profile:
        ranks = args.profile
        workdir, prof = tmp / "profile", tmp / "rank0.prof"
        per_rank = args.slots // ranks
        # The profiler slows rank 0 down several times: its close (the views) can outlast the
        # ranks' 30 s patience with a silent rank 0.
        common = [str(hold_list), "-r", "hold", "-n", str(per_rank), "-w", str(workdir), "--rank-timeout", "600"]
        cmd = [mpiexec, "-n", "1", *pin0, args.python, str(REPO / "bench" / "profile_rank.py"), str(prof), *common]
        if ranks > 1:
            cmd += [":", "-n", str(ranks - 1), *pin_rest, *farmer, *common]
        wall, samples, cpu_all = run_sampled(cmd, env, tmp / "profile.log", workdir)
        result = measure(ranks, wall, samples, workdir, args.tasks, cpu_all)
        stream = tmp / "profile.txt"
        with stream.open("w") as out:
            stats = pstats.Stats(str(prof), stream=out)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(25)
        profile_text = stream.read_text()
        print(profile_text, file=sys.stderr)
        profile_text = (f"cProfile of rank 0, {ranks} ranks x {per_rank} slots, under the profiler: "
                        f"{result.remote_rate:,.0f} remote/s, rank 0 CPU {result.cpu_per_task * 1e6:.1f} us/task\n\n"
                        "```\n" + profile_text.strip() + "\n```\n")

    walls: dict[str, list[float]] = {"local -n 2": [], "mpiexec -n 2, -n 1": []}
    if args.true_tasks:
        true_list = tmp / "true.txt"
        true_list.write_text("true\n" * args.true_tasks)
        for repeat in range(args.repeat):
            for name in (walls if repeat % 2 == 0 else reversed(list(walls))):
                workdir = tmp / f"true-{repeat}-{name[:5]}"
                if name.startswith("local"):
                    cmd = [*farmer, str(true_list), "-n", "2", "-w", str(workdir)]
                else:
                    cmd = [mpiexec, "-n", "2", *farmer, str(true_list), "-n", "1", "-w", str(workdir)]
                walls[name].append(timed(cmd, env, tmp / f"true-{repeat}.log"))
                count = len(read_ends(workdir))
                assert count == args.true_tasks, f"{workdir}: {count} of {args.true_tasks} finished"

    report = render(args, results, walls, commit=commit, started=started, load_before=load_before,
                    load_after=loadavg(), profile=profile_text)
    print(report)
    if args.write:
        with (REPO / "bench" / "RESULTS.md").open("a") as stream:
            stream.write("\n" + report)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def render(args: argparse.Namespace, results: dict[int, list[Handout]], walls: dict[str, list[float]], *,
           commit: str, started: datetime.datetime, load_before: str, load_after: str, profile: str) -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [f"## MPI hand-out, {started:%Y-%m-%d %H:%M} UTC (`bench/mpi_dispatch.py`)", "",
             f"- machine: {os.cpu_count()} cores, {memory:.0f} GiB, no GPU, {platform.platform()}, "
             f"Python {platform.python_version()}; mpiexec of the mpich wheel, every rank on this host "
             f"(oversubscribed beyond 2 ranks)",
             f"- commit measured: {commit}",
             f"- load average (1, 5, 15 min) before: {load_before}; after: {load_after}",
             f"- {args.tasks:,} tasks run by the HoldRunner (each holds a slot for {args.hold:g} s, no process), "
             f"{args.slots:,} slots in all (demand {args.slots / args.hold:,.0f} tasks/s), "
             f"{args.repeat} runs each, alternating; figures over each run's steady window"]
    if args.pin:
        lines.append("- `--pin`: rank 0 (and the local baseline) alone on CPU 0, every other rank on the other CPUs "
                     "(taskset), so that rank 0 has a core of its own as on a cluster")
    if args.note:
        lines.append(f"- {args.note}")
    lines += ["", "| run | slots per rank | remote tasks/s (median) | remote tasks/s (best) | all tasks/s (median) | "
              "share run on rank 0 | rank 0 CPU per task, µs (median) | CPU per task ÷ baseline | "
              "rank 0 busy (CPU ÷ window) | "
              "all processes' CPU per task, µs (whole run) | window s | wall s |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    baseline_key = 1 if 1 in results else min(results)
    base_cpu = median([r.cpu_per_task for r in results[baseline_key]])
    for ranks, runs in results.items():
        name = label(ranks)
        cpu = median([r.cpu_per_task for r in runs])
        lines.append(
            f"| {name} | {args.slots // abs(ranks)} | {median([r.remote_rate for r in runs]):,.0f} | "
            f"{max(r.remote_rate for r in runs):,.0f} | {median([r.rate for r in runs]):,.0f} | "
            f"{median([r.share0 for r in runs]):.1%} | {cpu * 1e6:.1f} | {cpu / base_cpu:.2f} | "
            f"{median([r.busy0 for r in runs]):.0%} | "
            f"{median([r.cpu_all / r.finished for r in runs]) * 1e6:.0f} | "
            f"{median([r.window for r in runs]):.1f} | {median([r.wall for r in runs]):.1f} |")
    lines.append("")
    for kind, keys in (("mpifarmer ranks", [k for k in results if k > 1]),
                       ("echo ranks", sorted((k for k in results if k < 0), reverse=True))):
        if not keys:
            continue
        best = max(median([r.remote_rate for r in results[key]]) for key in keys)
        lines.append(f"- Goal: rank 0 sustains at least 50,000 remote hand-outs per second, with {kind}: "
                     f"**{'met' if best >= 50_000 else 'missed'}** (best median {best:,.0f}/s).")
        first = keys[0]
        first_cpu = median([r.cpu_per_task for r in results[first]])
        for key in keys[1:]:
            ratio = median([r.cpu_per_task for r in results[key]]) / first_cpu
            lines.append(f"- Rank 0 CPU per task, {label(key)} ÷ {label(first)}: {ratio:.2f}.")
    if profile:
        lines += ["", profile]
    if walls["local -n 2"]:
        local, remote = (median(walls[name]) for name in walls)
        lines += ["", f"{args.true_tasks} `true` tasks, two workers either way, median of {args.repeat}:", "",
                  "| run | wall s (median) | ratio to local |", "| --- | --- | --- |",
                  f"| local `-n 2` | {local:.2f} | 1.00 |",
                  f"| `mpiexec -n 2` with `-n 1` | {remote:.2f} | {remote / local:.2f} |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
