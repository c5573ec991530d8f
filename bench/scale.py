"""Scale: a farmer's wall time, peak memory and view lag at 10^4 .. 10^7 tasks.

Every run uses the NoopRunner (no process is started), so what is measured is the farmer
itself: replaying and appending the journal, claiming, writing views. For each size N:

  fresh      a new work directory, N tasks, ``-n 2``: wall time, the farmer's peak RSS, the
             dispatch rate (first start to last end, from the journal) and the largest gap
             between updates of ``finished`` while tasks ran, from the first start to the last
             end (sampled every 50 ms)
  done       the same command again on the finished work directory: wall time, peak RSS
  half       a work directory that finished the first N/2 lines, with the other N/2 appended to
             the list: time from launch to the first task's start record, and peak RSS

Peak RSS is the farmer's own (``wait4``'s ru_maxrss), not its spawner's. Run with
``--revision DIR`` to measure another checkout (its own ``python -m mpifarmer``) in the same
invocation, as a baseline: ratios are printed for every figure.

    python bench/scale.py --sizes 10000 100000 1000000 [--revision /tmp/baseline] [--fresh-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def farmer(checkout: Path) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(checkout)!r}); "
            "from mpifarmer.cli import main; sys.exit(main())"]


def run(argv: list[str], env: dict[str, str], watch: Path | None = None) -> dict[str, Any]:
    """Run ``argv``; return wall time, peak RSS (MB) and, with ``watch``, the wall-clock times at
    which that file was seen to change (sampled every 50 ms)."""
    changes: list[float] = []
    done = threading.Event()

    def sample() -> None:
        last = None
        while not done.wait(0.05):
            try:
                stat = os.stat(watch)
                seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            except FileNotFoundError:
                seen = None
            if seen != last:
                last = seen
                changes.append(time.time())

    start, launched = time.monotonic(), time.time()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = threading.Thread(target=sample, daemon=True) if watch is not None else None
    if sampler is not None:
        sampler.start()
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - start
    done.set()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{argv} exited {process.returncode}:\n{stderr.decode()[-2000:]}")
    return {"wall": wall, "rss": usage.ru_maxrss / 1024, "changes": changes, "launched": launched}


def largest_gap(changes: list[float], first: float, last: float) -> float:
    """The longest time the watched file went unchanged while tasks ran (first start to last end)."""
    inside = [first, *(t for t in changes if first < t < last), last]
    return max(b - a for a, b in zip(inside, inside[1:], strict=False))


def journal_files(workdir: Path) -> list[Path]:
    """The journal's compacted generations (history/), then the journal."""
    history = sorted((workdir / "history").glob("journal.*.jsonl"), key=lambda path: int(path.name.split(".")[1]))
    return [*history, workdir / "journal.jsonl"]


def journal_lines(workdir: Path):
    for path in journal_files(workdir):
        with open(path, "rb") as stream:
            yield from stream


def journal_times(workdir: Path) -> tuple[float, float, float]:
    """(first start t0, last end t1, ends) from the journal and its history, streamed."""
    first, last, ends = float("inf"), 0.0, 0
    for line in journal_lines(workdir):
        if b'"e":"start"' in line or b'"e":"end"' in line:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("e") == "end":
                ends += 1
                last = max(last, record.get("t1", 0.0))
                if "t0" in record:
                    first = min(first, record["t0"])
            else:
                first = min(first, record.get("t", record.get("t0", first)))
    return first, last, ends


def write_lines(path: Path, first: int, end: int, append: bool = False) -> None:
    """Lines ``true I`` for I in first .. end-1, a block at a time. This process must stay small:
    a farmer's peak RSS as wait4 reports it is at least this process's peak at the time it was
    started (Linux counts the memory of the parent whose address space the child's exec left,
    and subprocess starts children with vfork), so building 10M lines in one string here made
    every later figure at least 827 MB (session 7's 10M figures are upper bounds for that reason)."""
    with path.open("a" if append else "w") as stream:
        for block in range(first, end, 100_000):
            stream.write("".join(f"true {i}\n" for i in range(block, min(end, block + 100_000))))


def measure(checkout: Path, size: int, tmp: Path, env: dict[str, str], fresh_only: bool = False) -> dict[str, float]:
    tasks = tmp / f"tasks-{size}.txt"
    write_lines(tasks, 0, size)
    base = [*farmer(checkout), "-r", "noop", "-n", "2"]
    figures: dict[str, float] = {}
    fresh = tmp / f"fresh-{size}"
    result = run([*base, str(tasks), "-w", str(fresh)], env, watch=fresh / "finished")
    first, last, _ = journal_times(fresh)
    figures |= {"fresh wall s": result["wall"], "fresh RSS MB": result["rss"],
                "finished gap s": largest_gap(result["changes"], first, last),
                "dispatch /s": size / max(1e-9, last - first)}
    if fresh_only:
        return figures
    result = run([*base, str(tasks), "-w", str(fresh)], env)
    figures |= {"done wall s": result["wall"], "done RSS MB": result["rss"]}
    half_list = tmp / f"half-{size}.txt"
    half = tmp / f"half-{size}"
    write_lines(half_list, 0, size // 2)
    run([*base, str(half_list), "-w", str(half)], env)
    write_lines(half_list, size // 2, size, append=True)
    done_before = journal_times(half)[2]
    result = run([*base, str(half_list), "-w", str(half)], env)
    first_start = first_start_after(half, done_before)
    figures |= {"half first task s": first_start - result["launched"] if first_start else float("nan"),
                "half RSS MB": result["rss"]}
    return figures


def first_start_after(workdir: Path, ends_before: int) -> float | None:
    """The wall-clock time of the first end record's t0 after the first ``ends_before`` ends."""
    seen = 0
    for line in journal_lines(workdir):
        if b'"e":"end"' in line:
            seen += 1
            if seen > ends_before:
                return json.loads(line).get("t0")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000, 1000000])
    parser.add_argument("--revision", type=Path, help="a baseline checkout, measured in the same invocation")
    parser.add_argument("--fresh-only", action="store_true", help="only the fresh run of each size (no restarts)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mpifarmer-scale-") as name:
        tmp = Path(name)
        home = tmp / "home"
        (home / ".mpifarmer" / "runners.d").mkdir(parents=True)
        (home / ".mpifarmer" / "runners.d" / "noop.ini").write_text("[noop]\nRunner = mpifarmer.runners.NoopRunner\n")
        env = dict(os.environ, HOME=str(home))
        print(f"# {time.strftime('%Y-%m-%d %H:%M')} load {open('/proc/loadavg').read().split()[:3]}")
        for size in args.sizes:
            checkouts = {"this": HERE} | ({"baseline": args.revision.resolve()} if args.revision else {})
            rows = {}
            for name, checkout in checkouts.items():
                (tmp / name).mkdir()
                rows[name] = measure(checkout, size, tmp / name, env, args.fresh_only)
                subprocess.run(["rm", "-rf", str(tmp / name)], check=True)
            print(f"\n## {size:,} tasks")
            print("| figure | " + " | ".join(rows) + (" | ratio |" if len(rows) > 1 else " |"))
            print("|---" * (len(rows) + 1 + (len(rows) > 1)) + "|")
            for key in rows["this"]:
                values = [rows[name][key] for name in rows]
                ratio = f" | {values[0] / values[1]:.3f}" if len(values) > 1 and values[1] else ""
                print(f"| {key} | " + " | ".join(f"{v:,.3g}" for v in values) + ratio + " |")
        print(f"\n# load after {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
