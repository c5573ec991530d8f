#!/usr/bin/env python3
"""Local-mode overhead of mpifarmer against baselines run in the same invocation.

Benchmark 1 (``--tasks``, default 2,000): that many ``true`` tasks, ``--proc`` (default 2) at a
time, run by mpifarmer, ``xargs -P 2 -I{} sh -c '{}'``, ``xargs -P 2 -I{} bash -c '{}'``,
GNU parallel and PyTaskFarmer 0.1.0; wall and CPU time of each, and ratios to ``xargs sh``.

Benchmark 2 (``--scale``, default 1,000 and 100,000): mpifarmer (and ``xargs sh`` as a noise
reference) on lists of each size; per-task wall time (wall / N) at each size and the ratio of
the largest to the smallest; and mpifarmer restarted on its own finished work directory (start
and shut down with nothing to do).

Every run gets a fresh directory, every measurement is repeated ``--repeat`` times with the
tools interleaved (the order rotates each repetition), and every run is checked: mpifarmer
and PyTaskFarmer must have N lines in their ``finished`` file, and every tool must exit 0.

Only the standard library is used; see bench/README.md for how to run it and read the output.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import pstats
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"
DEFAULT_PYTHON = "/tmp/venv-dev/bin/python"
DEFAULT_PTF_VENV = "/tmp/venv-ptf"
CLK_TCK = os.sysconf("SC_CLK_TCK")

XARGS_SH, XARGS_BASH, PARALLEL, PTF, MPIFARMER = "xargs-sh", "xargs-bash", "parallel", "pytaskfarmer", "mpifarmer"
FLOOR, FLOOR_LOGS, MPIFARMER_SH = "python-floor", "python-floor-logs", "mpifarmer-sh"
RESTART, STARTUP = "mpifarmer-restart", "mpifarmer-startup"
ALL_TOOLS = (XARGS_SH, XARGS_BASH, PARALLEL, PTF, FLOOR, FLOOR_LOGS, MPIFARMER, MPIFARMER_SH)
LABELS = {
    XARGS_SH: "`xargs -P {p} -I{{}} sh -c '{{}}'`",
    XARGS_BASH: "`xargs -P {p} -I{{}} bash -c '{{}}'`",
    PARALLEL: "`parallel --will-cite -j {p}`",
    PTF: "PyTaskFarmer 0.1.0 `--proc {p}`",
    FLOOR: "Python floor: `spawn_floor.py` (posix_spawn `bash -c`, no bookkeeping)",
    FLOOR_LOGS: "Python floor with a log file per task: `spawn_floor.py --logs DIR`",
    MPIFARMER: "mpifarmer `-n {p}`",
    MPIFARMER_SH: "mpifarmer `-n {p} -r sh` (runner with `shell = sh`: the reference's shell)",
    RESTART: "mpifarmer restart, nothing to do",
    STARTUP: "`python -m mpifarmer --version` (interpreter + imports)",
}


# -- measuring one run ---------------------------------------------------------------------------


@dataclass
class Sample:
    tool: str
    n: int
    wall: float  # seconds
    cpu: float  # user + sys of the tool and everything it waited for, seconds
    others: float  # share of the machine's CPU capacity busy with other work during the run, percent
    error: str | None = None


def _busy_jiffies() -> int | None:
    """CPU time the whole machine spent not idle, in clock ticks (user nice system irq softirq steal)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return user + nice + system + irq + softirq + steal


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(tool: str, n: int, argv: list[str], *, cwd: Path, env: dict[str, str] | None = None,
            stdin: Path | None = None, timeout: float, ncpu: int) -> tuple[Sample, int]:
    """Run ``argv`` once; return the sample (error unset) and the exit code.

    Output goes to files in ``cwd`` (``out.txt``), as it would in a batch job."""
    out_path = cwd / "out.txt"
    with open(out_path, "wb") as out, open(stdin or os.devnull, "rb") as inp:
        busy0, cpu0 = _busy_jiffies(), _children_cpu()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=inp, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
            rc = -1000 if rc == 0 else rc
        wall = time.perf_counter() - t0
        cpu, busy1 = _children_cpu() - cpu0, _busy_jiffies()
    others = 0.0
    if busy0 is not None and busy1 is not None and wall > 0:
        others = max(0.0, ((busy1 - busy0) / CLK_TCK - cpu) / (wall * ncpu) * 100)
    return Sample(tool, n, wall, cpu, others), rc


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as stream:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
    except OSError:
        return -1


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


# -- the tools -----------------------------------------------------------------------------------


@dataclass
class Setup:
    python: str
    ptf_python: str | None
    ptf_script: str | None
    proc: int
    timeout: float
    ncpu: int
    src: Path | None  # directory holding the mpifarmer package measured; None: the one installed in python
    workroot: Path
    keep: bool
    missing: dict[str, str] = field(default_factory=dict)  # tool -> why it is skipped
    source: str = ""  # where the measured mpifarmer came from, for the report

    def mpifarmer_env(self) -> dict[str, str]:
        """The environment of mpifarmer runs: the package measured first on PYTHONPATH, and a
        HOME of the harness's own that defines one runner, ``sh`` (BasicRunner, shell = sh)."""
        home = self.workroot / "home"
        runners = home / ".mpifarmer" / "runners.d"
        if not runners.is_dir():
            runners.mkdir(parents=True)
            (runners / "sh.ini").write_text("[sh]\nRunner = mpifarmer.runners.BasicRunner\nshell = sh\n")
        env = dict(os.environ, HOME=str(home))
        if self.src is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.src), env.get("PYTHONPATH")]))
        return env


def snapshot(workroot: Path, rev: str | None) -> tuple[Path, str]:
    """Copy the mpifarmer package (the working tree's, or git revision ``rev``'s) out of the repo.

    Every run then uses the same code, however the repo changes while the benchmark runs."""
    src = workroot / "src"
    src.mkdir()
    git = ["git", "-C", str(REPO)]
    if rev:
        commit = subprocess.run([*git, "rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True,
                                text=True, check=True).stdout.strip()
        archive = subprocess.run([*git, "archive", commit, "mpifarmer"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        return src, f"git revision {rev} = {commit[:10]}"
    shutil.copytree(REPO / "mpifarmer", src / "mpifarmer", ignore=shutil.ignore_patterns("__pycache__"))
    head = _first_line([*git, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "mpifarmer"], capture_output=True,
                           text=True).stdout.strip()
    return src, f"working tree at commit {head}" + (" with uncommitted changes in mpifarmer/" if dirty else
                                                      " (mpifarmer/ clean)")


def run_tool(setup: Setup, tool: str, tasks: Path, n: int, run_dir: Path) -> Sample:
    """Run ``tool`` on ``tasks`` (N lines) in the fresh directory ``run_dir`` and check it."""
    run_dir.mkdir(parents=True)
    p = str(setup.proc)
    stdin: Path | None = None
    env: dict[str, str] | None = None
    finished: Path | None = None
    if tool in (XARGS_SH, XARGS_BASH):
        argv = ["xargs", "-P", p, "-I{}", "sh" if tool == XARGS_SH else "bash", "-c", "{}"]
        stdin = tasks
    elif tool == PARALLEL:
        argv = ["parallel", "--will-cite", "-j", p]
        stdin = tasks
    elif tool == PTF:
        assert setup.ptf_python and setup.ptf_script
        workdir = run_dir / "wd"
        argv = [setup.ptf_python, setup.ptf_script, str(tasks), "--proc", p, "--workdir", str(workdir)]
        env = {k: v for k, v in os.environ.items() if k != "SCRATCH"}  # lock file in the work dir
        finished = workdir / "finished"
    elif tool == FLOOR:
        argv = [setup.python, str(BENCH_DIR / "spawn_floor.py"), str(tasks), p]
    elif tool == FLOOR_LOGS:
        argv = [setup.python, str(BENCH_DIR / "spawn_floor.py"), str(tasks), p, "--logs", str(run_dir / "logs")]
    elif tool in (MPIFARMER, MPIFARMER_SH):
        workdir = run_dir / "wd"
        argv = [setup.python, "-m", "mpifarmer", str(tasks), "-n", p, "-w", str(workdir)]
        argv += ["-r", "sh"] if tool == MPIFARMER_SH else []
        env = setup.mpifarmer_env()
        finished = workdir / "finished"
    else:
        raise ValueError(tool)
    sample, rc = measure(tool, n, argv, cwd=run_dir, env=env, stdin=stdin, timeout=setup.timeout,
                         ncpu=setup.ncpu)
    sample.error = _check(rc, finished, n, run_dir)
    return sample


def restart(setup: Setup, tasks: Path, n: int, run_dir: Path) -> Sample:
    """Run mpifarmer again on the finished work directory left in ``run_dir`` by a mpifarmer run."""
    workdir = run_dir / "wd"
    argv = [setup.python, "-m", "mpifarmer", str(tasks), "-n", str(setup.proc), "-w", str(workdir)]
    sample, rc = measure(RESTART, n, argv, cwd=run_dir, env=setup.mpifarmer_env(), timeout=setup.timeout,
                         ncpu=setup.ncpu)
    sample.error = _check(rc, workdir / "finished", n, run_dir)
    return sample


def startup(setup: Setup, run_dir: Path) -> Sample:
    run_dir.mkdir(parents=True)
    argv = [setup.python, "-m", "mpifarmer", "--version"]
    sample, rc = measure(STARTUP, 0, argv, cwd=run_dir, env=setup.mpifarmer_env(), timeout=setup.timeout,
                         ncpu=setup.ncpu)
    sample.error = None if rc == 0 else f"exit code {rc}: {tail(run_dir / 'out.txt')}"
    return sample


def _check(rc: int, finished: Path | None, n: int, run_dir: Path) -> str | None:
    if rc != 0:
        return f"exit code {rc}: {tail(run_dir / 'out.txt')}"
    if finished is not None:
        got = count_lines(finished)
        if got != n:
            return f"{finished.name} has {got} lines, expected {n}"
    return None


def write_tasks(path: Path, n: int) -> Path:
    path.write_text("true\n" * n)
    return path


# -- the benchmarks ------------------------------------------------------------------------------


def rotate(items: list[str], by: int) -> list[str]:
    by %= len(items) if items else 1
    return items[by:] + items[:by]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


def show(sample: Sample) -> str:
    state = "ok" if sample.error is None else f"FAILED: {sample.error}"
    return (f"{sample.tool} N={sample.n}: wall {sample.wall:.3f} s, cpu {sample.cpu:.3f} s, "
            f"others {sample.others:.0f}% - {state}")


def bench_overhead(setup: Setup, tools: list[str], n: int, repeat: int) -> list[Sample]:
    base = setup.workroot / f"overhead-{n}"
    base.mkdir()
    tasks = write_tasks(base / "tasks.txt", n)
    samples: list[Sample] = []
    for rep in range(repeat):
        for tool in rotate(tools, rep):
            if tool in setup.missing:
                continue
            run_dir = base / f"{tool}-{rep}"
            sample = run_tool(setup, tool, tasks, n, run_dir)
            log(show(sample))
            samples.append(sample)
        sample = startup(setup, base / f"startup-{rep}")
        log(show(sample))
        samples.append(sample)
    return samples


def bench_scale(setup: Setup, sizes: list[int], repeat: int, reference: bool) -> list[Sample]:
    base = setup.workroot / "scale"
    base.mkdir()
    samples: list[Sample] = []
    tools = [MPIFARMER] + ([XARGS_SH] if reference else [])
    for rep in range(repeat):
        for n in sizes:
            tasks = base / f"tasks-{n}.txt"
            if not tasks.exists():
                write_tasks(tasks, n)
            for tool in rotate(tools, rep):
                run_dir = base / f"{tool}-{n}-{rep}"
                sample = run_tool(setup, tool, tasks, n, run_dir)
                log(show(sample))
                samples.append(sample)
                if tool == MPIFARMER and sample.error is None:
                    again = restart(setup, tasks, n, run_dir)
                    log(show(again))
                    samples.append(again)
    return samples


def profile(setup: Setup, n: int, top: int) -> str:
    """Run mpifarmer once under cProfile on N tasks; return the top functions by own time."""
    base = setup.workroot / f"profile-{n}"
    base.mkdir()
    tasks = write_tasks(base / "tasks.txt", n)
    out = base / "mpifarmer.prof"
    argv = [setup.python, "-m", "cProfile", "-o", str(out), "-m", "mpifarmer", str(tasks), "-n", str(setup.proc),
            "-w", str(base / "wd")]
    sample, rc = measure(MPIFARMER, n, argv, cwd=base, env=setup.mpifarmer_env(), timeout=setup.timeout,
                         ncpu=setup.ncpu)
    error = _check(rc, base / "wd" / "finished", n, base)
    log(f"profiled run: {show(sample)}" + (f" ({error})" if error else ""))
    stream = _Capture()
    stats = pstats.Stats(str(out), stream=stream)  # type: ignore[arg-type]
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    text = re.sub(r"\n{3,}", "\n\n", stream.text).strip()
    header = (f"cProfile of `python -m mpifarmer` on {n:,} `true` tasks, -n {setup.proc}: wall {sample.wall:.2f} s "
              f"under the profiler (CPU of farmer + tasks {sample.cpu:.2f} s)")
    return f"{header}\n\n```\n{text}\n```\n"


class _Capture:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


# -- the report ----------------------------------------------------------------------------------


@dataclass
class Stats:
    ok: int
    runs: int
    wall_med: float = float("nan")
    wall_min: float = float("nan")
    cpu_med: float = float("nan")
    others_med: float = float("nan")


def stats(samples: list[Sample], tool: str, n: int | None = None) -> Stats:
    mine = [s for s in samples if s.tool == tool and (n is None or s.n == n)]
    good = [s for s in mine if s.error is None]
    if not good:
        return Stats(0, len(mine))
    return Stats(len(good), len(mine), statistics.median(s.wall for s in good), min(s.wall for s in good),
                 statistics.median(s.cpu for s in good), statistics.median(s.others for s in good))


def fmt(value: float, digits: int = 2) -> str:
    return "–" if value != value else f"{value:.{digits}f}"


def ratio(a: float, b: float) -> float:
    return a / b if b and a == a and b == b else float("nan")


def overhead_table(samples: list[Sample], tools: list[str], n: int, proc: int, missing: dict[str, str]) -> str:
    ref = stats(samples, XARGS_SH, n)
    rows = [
        f"### 1. {n:,} `true` tasks, {proc} at a time\n",
        "| tool | ok runs | wall median (s) | wall min (s) | CPU median (s) | wall ÷ xargs sh (median) "
        "| wall ÷ xargs sh (min) | CPU ÷ xargs sh | others' load (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool in tools:
        label = LABELS[tool].format(p=proc)
        if tool in missing:
            rows.append(f"| {label} | skipped: {missing[tool]} | | | | | | | |")
            continue
        s = stats(samples, tool, n)
        rows.append(f"| {label} | {s.ok}/{s.runs} | {fmt(s.wall_med)} | {fmt(s.wall_min)} | {fmt(s.cpu_med)} | "
                    f"{fmt(ratio(s.wall_med, ref.wall_med))} | {fmt(ratio(s.wall_min, ref.wall_min))} | "
                    f"{fmt(ratio(s.cpu_med, ref.cpu_med))} | {fmt(s.others_med, 0)}% |")
    s = stats(samples, STARTUP, 0)
    if s.runs:
        rows.append(f"| {LABELS[STARTUP]} (reference, no tasks) | {s.ok}/{s.runs} | {fmt(s.wall_med, 3)} | "
                    f"{fmt(s.wall_min, 3)} | {fmt(s.cpu_med, 3)} | | | | {fmt(s.others_med, 0)}% |")
    if MPIFARMER in tools and XARGS_SH in tools:
        m = stats(samples, MPIFARMER, n)
        rows.append("")
        for tool, what in ((MPIFARMER, "mpifarmer (default runner, `bash -c`)"),
                           (MPIFARMER_SH, "mpifarmer `-r sh` (`sh -c`, as the reference)")):
            t = stats(samples, tool, n)
            if not t.ok:
                continue
            med, best = ratio(t.wall_med, ref.wall_med), ratio(t.wall_min, ref.wall_min)
            verdict = "met" if med <= 1.5 else ("met on the best runs only" if best <= 1.5 else "missed")
            rows.append(f"- Goal: {what} within 1.5× of `xargs sh` wall time: **{verdict}** "
                        f"(median ratio {fmt(med)}, min ratio {fmt(best)}).")
        b = stats(samples, XARGS_BASH, n)
        if b.ok:
            rows.append(f"- Shell for shell (mpifarmer runs `bash -c`): mpifarmer ÷ `xargs bash` = "
                        f"{fmt(ratio(m.wall_med, b.wall_med))} (median), {fmt(ratio(m.wall_min, b.wall_min))} (min).")
        f = stats(samples, FLOOR, n)
        if f.ok:
            rows.append(f"- Against the Python floor: mpifarmer ÷ `spawn_floor.py` = "
                        f"{fmt(ratio(m.wall_med, f.wall_med))} (median), {fmt(ratio(m.wall_min, f.wall_min))} (min).")
        f = stats(samples, FLOOR_LOGS, n)
        if f.ok:
            rows.append(f"- Against the floor that also writes a log file per task, as mpifarmer must: mpifarmer ÷ "
                        f"`spawn_floor.py --logs` = {fmt(ratio(m.wall_med, f.wall_med))} (median), "
                        f"{fmt(ratio(m.wall_min, f.wall_min))} (min); the floor itself ÷ `xargs sh` = "
                        f"{fmt(ratio(f.wall_med, ref.wall_med))} (median).")
        per_task = []
        for tool, name in ((XARGS_SH, "xargs sh"), (XARGS_BASH, "xargs bash"), (FLOOR, "Python floor"),
                           (FLOOR_LOGS, "floor with logs"), (MPIFARMER, "mpifarmer"),
                           (MPIFARMER_SH, "mpifarmer -r sh")):
            t = stats(samples, tool, n)
            if t.ok:
                per_task.append(f"{name} {fmt(t.wall_med / n * 1000, 3)} ms wall, "
                                f"{fmt(t.cpu_med / n * 1000, 3)} ms CPU")
        if per_task:
            rows.append("- Per task (medians): " + "; ".join(per_task) + ".")
    return "\n".join(rows) + "\n"


def scale_table(samples: list[Sample], sizes: list[int], proc: int, reference: bool) -> str:
    rows = [
        f"### 2. Per-task overhead at {' vs '.join(f'{n:,}' for n in sizes)} `true` tasks, {proc} at a time\n",
        "| tool | tasks | ok runs | wall median (s) | wall min (s) | per task median (ms) | per task min (ms) "
        "| CPU per task median (ms) | others' load (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tools = [MPIFARMER] + ([XARGS_SH] if reference else [])
    for tool in tools:
        for n in sizes:
            s = stats(samples, tool, n)
            rows.append(f"| {LABELS[tool].format(p=proc)} | {n:,} | {s.ok}/{s.runs} | {fmt(s.wall_med)} | "
                        f"{fmt(s.wall_min)} | {fmt(s.wall_med / n * 1000, 3)} | {fmt(s.wall_min / n * 1000, 3)} | "
                        f"{fmt(s.cpu_med / n * 1000, 3)} | {fmt(s.others_med, 0)}% |")
    for n in sizes:
        s = stats(samples, RESTART, n)
        rows.append(f"| {LABELS[RESTART]} | {n:,} done | {s.ok}/{s.runs} | {fmt(s.wall_med, 3)} | {fmt(s.wall_min, 3)} "
                    f"| | | CPU {fmt(s.cpu_med, 3)} s | {fmt(s.others_med, 0)}% |")
    small, large = min(sizes), max(sizes)
    if small != large:
        rows.append("")
        for tool in tools:
            a, b = stats(samples, tool, small), stats(samples, tool, large)
            med = ratio(b.wall_med / large, a.wall_med / small)
            best = ratio(b.wall_min / large, a.wall_min / small)
            cpu = ratio(b.cpu_med / large, a.cpu_med / small)
            goal = ""
            if tool == MPIFARMER:
                verdict = "met" if med <= 1.2 else ("met on the best runs only" if best <= 1.2 else "missed")
                goal = f" Goal ≤ 1.2: **{verdict}**."
            rows.append(f"- Per-task wall at {large:,} ÷ at {small:,}, {LABELS[tool].format(p=proc)}: "
                        f"{fmt(med)} (medians), {fmt(best)} (mins); CPU per task {fmt(cpu)}.{goal}")
        r = stats(samples, RESTART, large)
        rows.append(f"- mpifarmer restart on a finished {large:,}-task work directory: {fmt(r.wall_med, 3)} s "
                    f"(median), {fmt(r.wall_min, 3)} s (min).")
    return "\n".join(rows) + "\n"


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def machine(setup: Setup) -> list[str]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = setup.mpifarmer_env()
    probe = "import sys, mpifarmer; print(sys.version.split()[0], mpifarmer.__version__, mpifarmer.__file__)"
    try:
        out = subprocess.run([setup.python, "-c", probe], capture_output=True, text=True, env=env, timeout=60,
                             cwd=setup.workroot)  # not the caller's directory: `-c` puts it first on sys.path
        mpy, mver, mfile = out.stdout.split() if out.returncode == 0 else ("?", "?", out.stderr.strip()[-200:])
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        mpy, mver, mfile = "?", "?", str(error)
    return [
        f"- machine: `nproc` {setup.ncpu} (os.cpu_count {os.cpu_count()}), CPU {model}, kernel "
        f"{platform.release()}, {_mem()}",
        f"- harness Python {platform.python_version()}; mpifarmer {mver} on Python {mpy} (`{setup.python}`), "
        f"imported from `{_short(mfile)}`: {setup.source}",
        f"- tools: {_first_line(['xargs', '--version'])}; {_first_line(['bash', '--version'])}; sh is "
        f"`{os.path.realpath('/bin/sh')}`; "
        + ("GNU parallel " + _first_line(['parallel', '--will-cite', '--version']).split()[-1]
           if PARALLEL not in setup.missing else "GNU parallel missing")
        + ("; PyTaskFarmer 0.1.0 in `" + str(setup.ptf_python) + "`" if PTF not in setup.missing else ""),
        f"- work directories under `{setup.workroot.parent}` ({_fstype(setup.workroot)})",
    ]


def _mem() -> str:
    try:
        with open("/proc/meminfo") as info:
            kb = int(info.readline().split()[1])
        return f"{kb / 2**20:.0f} GiB memory"
    except (OSError, ValueError, IndexError):
        return "memory ?"


def _fstype(path: Path) -> str:
    best, fstype = "", "?"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                parts = line.split()
                mount = parts[1]
                if str(path).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
                    best, fstype = mount, parts[2]
    except OSError:
        pass
    return fstype


def _short(path: str) -> str:
    return str(Path(path).parent)


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def update_results(path: Path, label: str, section: str) -> None:
    """Append ``section`` to ``path`` between markers named ``label``, replacing an older one."""
    begin, end = f"<!-- bench-run: {label} -->", f"<!-- /bench-run: {label} -->"
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else (
        "# mpifarmer local-mode benchmark results\n\n"
        "Written by `bench/local_overhead.py --write` (see bench/README.md for what is measured and how "
        "to read it). Newest run last.\n\n")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


# -- the command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--python", default=None,
                        help=f"Python that runs `-m mpifarmer` (default: {DEFAULT_PYTHON} if it exists, else "
                        "this Python)")
    parser.add_argument("--use-installed", action="store_true",
                        help="measure the mpifarmer installed in --python (default: a copy of this repo's "
                        "mpifarmer/ taken at the start, first on PYTHONPATH)")
    parser.add_argument("--rev", default=None,
                        help="measure mpifarmer/ as of this git revision (default: the working tree)")
    parser.add_argument("--ptf-venv", default=DEFAULT_PTF_VENV,
                        help="venv with pytaskfarmer==0.1.0 (bin/python, bin/pytaskfarmer.py)")
    parser.add_argument("--tasks", type=int, default=None, help="tasks in benchmark 1 (default 2000; quick 300)")
    parser.add_argument("--scale", default=None,
                        help="comma-separated list sizes for benchmark 2 (default 1000,100000; quick 200,5000); "
                        "'' skips it")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3; quick 1)")
    parser.add_argument("--proc", type=int, default=2, help="tasks at a time, for every tool")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition: checks the harness")
    parser.add_argument("--tools", default=",".join(ALL_TOOLS), help="tools in benchmark 1")
    parser.add_argument("--no-scale-reference", action="store_true",
                        help="do not run xargs sh in benchmark 2")
    parser.add_argument("--skip-overhead", action="store_true", help="skip benchmark 1")
    parser.add_argument("--profile", type=int, nargs="?", const=-1, default=None, metavar="N",
                        help="also run mpifarmer once under cProfile on N tasks (default: --tasks) and report "
                        "the top functions")
    parser.add_argument("--profile-top", type=int, default=20, help="functions shown per profile listing")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before one run is killed")
    parser.add_argument("--tmpdir", default=None, help="where the fresh work directories go (default: $TMPDIR or /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    parser.add_argument("--write", action="store_true", help=f"add the report to {RESULTS.relative_to(REPO)}")
    parser.add_argument("--results", default=str(RESULTS), help="file for --write")
    parser.add_argument("--label", default=None,
                        help="name of the report section; --write replaces a section of the same name "
                        "(default: the start time)")
    parser.add_argument("--note", action="append", default=[], help="a line added to the report (repeatable)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.tasks = args.tasks if args.tasks is not None else (300 if quick else 2000)
    args.repeat = args.repeat if args.repeat is not None else (1 if quick else 3)
    scale = args.scale if args.scale is not None else ("200,5000" if quick else "1000,100000")
    args.sizes = [int(x.replace("_", "")) for x in scale.split(",") if x.strip()]
    args.tool_list = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tool_list) - set(ALL_TOOLS)
    if unknown:
        parser.error(f"unknown tools {sorted(unknown)}; choose from {','.join(ALL_TOOLS)}")
    if args.tasks < 1 or args.repeat < 1 or args.proc < 1 or any(n < 1 for n in args.sizes):
        parser.error("--tasks, --repeat, --proc and the --scale sizes must be at least 1")
    if args.python is None:
        args.python = DEFAULT_PYTHON if os.access(DEFAULT_PYTHON, os.X_OK) else sys.executable
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.UTC)
    label = args.label or started.strftime("%Y-%m-%d %H:%M:%S UTC")
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count() or 1
    workroot = Path(tempfile.mkdtemp(prefix="mpifarmer-bench-", dir=args.tmpdir))
    ptf_python = os.path.join(args.ptf_venv, "bin", "python")
    ptf_script = os.path.join(args.ptf_venv, "bin", "pytaskfarmer.py")
    setup = Setup(args.python, ptf_python, ptf_script, args.proc, args.timeout, ncpu, None, workroot, args.keep)
    if args.use_installed:
        setup.source = f"the package installed for {args.python}"
    else:
        try:
            setup.src, setup.source = snapshot(workroot, args.rev)
        except (OSError, subprocess.CalledProcessError) as error:
            print(f"local_overhead: cannot copy mpifarmer: {error}", file=sys.stderr)
            shutil.rmtree(workroot, ignore_errors=True)
            return 2
        # compile once now, so that the first measured run does not pay for it
        subprocess.run([args.python, "-m", "compileall", "-q", str(setup.src)], check=False)
    if not shutil.which("parallel"):
        setup.missing[PARALLEL] = "`parallel` not found (apt-get install -y parallel)"
    if not (os.access(ptf_python, os.X_OK) and os.path.exists(ptf_script)):
        setup.missing[PTF] = f"no {ptf_script} (see bench/setup-baselines.sh)"
    for tool in (XARGS_SH, XARGS_BASH):
        if not shutil.which("xargs"):
            setup.missing[tool] = "`xargs` not found"
    probe = subprocess.run([args.python, "-c", "import mpifarmer.cli"], env=setup.mpifarmer_env(), capture_output=True,
                           text=True, cwd=workroot)
    if probe.returncode != 0:
        print(f"local_overhead: {args.python} cannot import mpifarmer: {probe.stderr.strip()[-300:]}", file=sys.stderr)
        shutil.rmtree(workroot, ignore_errors=True)
        return 2

    where = machine(setup)  # before the runs: others may commit while they go
    load_before = uptime()
    log(f"work directories under {workroot}; load average {load_before}")
    overhead: list[Sample] = []
    scale: list[Sample] = []
    profiled = None
    try:
        if not args.skip_overhead:
            overhead = bench_overhead(setup, args.tool_list, args.tasks, args.repeat)
        if args.sizes:
            scale = bench_scale(setup, args.sizes, args.repeat, not args.no_scale_reference)
        if args.profile is not None:
            profiled = profile(setup, args.tasks if args.profile < 0 else args.profile, args.profile_top)
    finally:
        if not args.keep:
            shutil.rmtree(workroot, ignore_errors=True)
    load_after = uptime()
    took = (datetime.datetime.now(datetime.UTC) - started).total_seconds()

    mode = "quick" if args.quick else "full"
    parts = [
        f"## {label} ({mode}: --tasks {args.tasks} --scale {','.join(map(str, args.sizes)) or 'none'} "
        f"--repeat {args.repeat} --proc {args.proc})\n",
        *where,
        f"- load average (1, 5, 15 min) before: {load_before}; after: {load_after}; run took {took:.0f} s. "
        "\"others' load\" = share of the machine's CPU time used by processes other than the measured run "
        "while it ran (from /proc/stat), median over the runs.",
        *[f"- note: {note}" for note in args.note],
        "",
    ]
    if overhead:
        parts.append(overhead_table(overhead, args.tool_list, args.tasks, args.proc, setup.missing))
    if scale:
        parts.append(scale_table(scale, args.sizes, args.proc, not args.no_scale_reference))
    failures = [s for s in overhead + scale if s.error is not None]
    if failures:
        parts.append("**Failed runs** (left out of the statistics):\n")
        parts.extend(f"- {show(s)}" for s in failures)
        parts.append("")
    if profiled:
        parts.append("### Profile\n")
        parts.append(profiled)
    report = "\n".join(parts)
    print(report)
    if args.write:
        update_results(Path(args.results), label, report)
        log(f"wrote {args.results}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
