"""Report and timeline at scale: what ``mpifarmer report`` and the timeline's counter track cost.

Makes one work directory of N tasks with a real farmer (the NoopRunner, or with ``--hold S`` the
HoldRunner, ``-n 2``, the journal compacted every ``--compact-bytes``), then measures, each
``--repeat`` times, alternating:

  floor      reading every record through ``store.history.all_records`` (what any reader of the
             whole history pays at least): wall time, peak RSS
  report     ``mpifarmer report --json``: wall time, peak RSS, and its ratio to the floor
  picture    ``mpifarmer report -o report.png``
  timeline   ``write_timeline`` from scratch (every part made again) and with the parts cached
             (what a farmer's rewrite pays), this checkout against ``--baseline DIR`` (another
             checkout, for example main, without the counter track), in the same invocation

Peak RSS is the measured process's own (``wait4``'s ru_maxrss).

    python bench/report_scale.py --tasks 1000000 --baseline /tmp/main-checkout
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of ``argv``, which must exit 0."""
    start = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv} failed: {process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def python_in(checkout: Path, code: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(checkout)!r}); {code}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compact-bytes", type=int, default=32 << 20)
    parser.add_argument("--hold", type=float, default=0.0,
                        help="each task holds its slot this long (the HoldRunner; default 0: the NoopRunner, whose "
                        "runs last 0 s, so that the counter track has almost nothing to show)")
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout without the counter track")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="report-scale-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        (home / ".mpifarmer" / "runners.d").mkdir(parents=True)
        runner = ("[bench]\nRunner = mpifarmer.runners.HoldRunner\nseconds = " + repr(args.hold) + "\n" if args.hold
                  else "[bench]\nRunner = mpifarmer.runners.NoopRunner\n")
        (home / ".mpifarmer" / "runners.d" / "bench.ini").write_text(runner)
        env = dict(os.environ, HOME=str(home), MPIFARMER_COMPACT_BYTES=str(args.compact_bytes))
        env.pop("PYTHONPATH", None)
        tasks = tmp / "tasks.txt"
        with tasks.open("w") as stream:
            stream.writelines(f"task {i}\n" for i in range(args.tasks))
        workdir = tmp / "wd"
        made = measure(python_in(HERE, "from mpifarmer.cli import main; sys.exit(main())") +
                       [str(tasks), "-n", "2", "-r", "bench", "-w", str(workdir)], env)
        generations = len(list((workdir / "history").glob("journal.*.jsonl")))
        what = f"HoldRunner {args.hold:g} s" if args.hold else "NoopRunner"
        print(f"# {args.tasks} tasks, {what} -n 2: farmer {made[0]:.1f} s, peak {made[1]:.0f} MB; "
              f"{generations} compacted generations; load {open('/proc/loadavg').read().split()[:3]}")
        floor = python_in(HERE, "from mpifarmer.store.history import all_records; from mpifarmer.store.workdir "
                          f"import WorkDir; print(sum(1 for _ in all_records(WorkDir({str(workdir)!r}))))")
        cli = python_in(HERE, "from mpifarmer.cli import main; sys.exit(main())")
        timeline = "from mpifarmer.store.views import write_timeline; from mpifarmer.store.workdir import WorkDir; " \
                   f"write_timeline(WorkDir({str(workdir)!r}))"
        checkouts = [("new", HERE)] + ([("baseline", args.baseline)] if args.baseline else [])
        rows: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.repeat):
            rows.setdefault("floor (all_records)", []).append(measure(floor, env))
            rows.setdefault("report --json", []).append(measure(cli + ["report", "-w", str(workdir), "--json"], env))
            rows.setdefault("report -o png", []).append(
                measure(cli + ["report", "-w", str(workdir), "-o", str(tmp / "report.png")], env))
            for name, checkout in checkouts:
                for part in (workdir / "history").glob("timeline.*"):
                    part.unlink()
                rows.setdefault(f"timeline, parts made: {name}", []).append(
                    measure(python_in(checkout, timeline), env))
                rows.setdefault(f"timeline, parts cached: {name}", []).append(
                    measure(python_in(checkout, timeline), env))
                shutil.copy(workdir / "timeline.json", tmp / f"timeline.{name}.json")
        print("| what | wall s (median) | all runs | peak RSS MB (max) |")
        print("| --- | --- | --- | --- |")
        medians = {}
        for what, found in rows.items():
            walls = sorted(w for w, _ in found)
            medians[what] = walls[len(walls) // 2]
            print(f"| {what} | {medians[what]:.2f} | {', '.join(f'{w:.2f}' for w in walls)} | "
                  f"{max(r for _, r in found):.0f} |")
        print(f"report / floor: {medians['report --json'] / medians['floor (all_records)']:.2f}")
        for name, _ in checkouts:
            size = (tmp / f"timeline.{name}.json").stat().st_size / 1e6
            print(f"timeline.json of {name}: {size:.0f} MB")
        if args.baseline:
            for kind in ("made", "cached"):
                new, old = medians[f"timeline, parts {kind}: new"], medians[f"timeline, parts {kind}: baseline"]
                print(f"timeline, parts {kind}: new / baseline = {new / old:.2f}")


if __name__ == "__main__":
    main()
