"""mpifarmer report and the timeline's counter track, on real farms (local, MPI, PyTaskFarmer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from farmhelpers import (
    HANG,
    MPIEXEC,
    assert_one_line_error,
    farmer_cmd,
    journal,
    run_farmer,
    start_farmer,
    wait_for,
    write_list,
)

#: PyTaskFarmer 0.1.0's venv, as bench/setup-baselines.sh makes it.
PTF_VENV = Path(os.environ.get("MPIFARMER_PTF_VENV", "/tmp/venv-ptf"))


def report(*args: str | os.PathLike[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_farmer("report", *args, env=env)


def report_json(*args: str | os.PathLike[str], env: dict[str, str]) -> dict[str, Any]:
    result = report(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def state_of(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory`` with its size and modification time."""
    return {str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_the_report_of_a_known_run_has_the_utilization_worked_out_by_hand(tmp_path: Path,
                                                                          clean_home: dict[str, str]) -> None:
    # 4 slots; two tasks of 1 s and one of 3 s start together: 5 of 12 slot-seconds are busy (one
    # slot is never used: only the slots recorded at the start say it was there), and in the last
    # 10% of the span (0.3 s) one slot of 4 is: fewer than half, all of it.
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 1", "sleep 1", "sleep 3"])
    assert run_farmer(tasks, "-n", "4", env=clean_home).returncode == 0
    workdir = tmp_path / "tasks.txt_workdir"
    before = state_of(workdir)
    found = report_json(tasks, env=clean_home)
    overall = found["utilization"]["overall"]
    assert overall["utilization"] == pytest.approx(5 / 12, abs=0.03)
    ends = [r for r in journal(workdir) if r["e"] == "end"]
    first, last = min(r["t0"] for r in ends), max(r["t1"] for r in ends)
    busy = sum(r["t1"] - r["t0"] for r in ends)
    assert (found["first_start"], found["last_end"]) == (first, last)
    assert overall["busy_slot_s"] == pytest.approx(busy, rel=1e-12)
    assert overall["offered_slot_s"] == pytest.approx(4 * (last - first), rel=1e-12), "-n 4 recorded in hello"
    assert [(p["where"], p["slots"], p["runs"]) for p in found["utilization"]["places"]] == [
        (f"{ends[0]['host']} rank 0", 4, 3)]
    assert found["tail"]["window_s"] == pytest.approx(0.3, abs=0.01)
    assert found["tail"]["below_half_s"] == pytest.approx(found["tail"]["window_s"], abs=0.01)
    assert found["durations"]["finished"]["min"] == pytest.approx(1, abs=0.2)
    assert found["durations"]["finished"]["max"] == pytest.approx(3, abs=0.2)
    assert (found["tasks"], found["finished"], found["failed"], found["left"]) == (3, 3, 0, 0)
    text = report(tasks, env=clean_home)
    assert text.returncode == 0 and "utilization: 4" in text.stdout, text.stdout
    for name in ("r.png", "r.svg", "r.html"):
        drawn = report("-w", workdir, "-o", tmp_path / name, env=clean_home)
        assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "r.svg").read_text()
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "utilization: 4" in page and "<script" not in page and "http" not in page.split(
        "<svg")[0], "self-contained"
    assert state_of(workdir) == before, "report writes nothing into the work directory"


def test_the_report_while_the_farm_runs_counts_the_runs_that_ended(tmp_path: Path,
                                                                   clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 0.2"] * 4 + ["sleep 30"] + ["sleep 0.2"] * 3)
    farmer = start_farmer(tasks, "-n", "2", env=clean_home)
    try:
        finished = tmp_path / "tasks.txt_workdir" / "finished"
        wait_for(lambda: finished.exists() and len(finished.read_text().splitlines()) >= 7, what="7 tasks to end")
        found = report_json(tasks, env=clean_home)
        assert (found["tasks"], found["finished"], found["left"]) == (8, 7, 1), "the long task is still running"
        assert found["runs"]["finished"] == 7 and found["utilization"]["places"][0]["slots"] == 2
        assert farmer.poll() is None, "the report did not disturb the farmer"
    finally:
        farmer.terminate()
        farmer.communicate(timeout=HANG)
    assert farmer.returncode == 3


def test_the_report_of_an_mpi_job_has_a_row_per_rank(tmp_path: Path, clean_home: dict[str, str]) -> None:
    if MPIEXEC is None:
        pytest.skip("no mpiexec: pip install mpich")
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 0.{i % 3 + 1}" for i in range(12)])
    result = subprocess.run([MPIEXEC, "-n", "2", *farmer_cmd(tasks, "-n", "2")], env=clean_home,
                            capture_output=True, text=True, timeout=HANG)
    assert result.returncode == 0, result.stderr
    found = report_json(tasks, env=clean_home)
    places = found["utilization"]["places"]
    assert [(p["where"].split()[-1], p["slots"]) for p in places] == [("0", 2), ("1", 2)]
    assert sum(p["runs"] for p in places) == 12 and found["utilization"]["overall"]["slots"] == 4
    assert all(0 < p["utilization"] <= 1 for p in places)


def counter_tracks(events: list[dict[str, Any]]) -> dict[int, list[tuple[int, int]]]:
    tracks: dict[int, list[tuple[int, int]]] = {}
    for event in events:
        if event["ph"] == "C":
            assert event["name"] == "running" and set(event["args"]) == {"tasks"}
            tracks.setdefault(event["pid"], []).append((event["ts"], event["args"]["tasks"]))
    return {pid: sorted(track) for pid, track in tracks.items()}


def test_the_timeline_counts_running_tasks_per_host_and_rank_across_compactions(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    """A long task (counted from its start record) runs while short ones end and the journal is
    compacted again and again; at every change the counter equals the complete events running."""
    lines = ["sleep 2.5"] + [f"sleep 0.0{i % 9 + 1}" for i in range(60)]
    tasks = write_list(tmp_path / "tasks.txt", lines)
    env = clean_home | {"MPIFARMER_COMPACT_BYTES": "3000"}
    assert run_farmer(tasks, "-n", "2", env=env).returncode == 0
    workdir = tmp_path / "tasks.txt_workdir"
    assert list((workdir / "history").glob("timeline.*.part")), "the journal was compacted"

    def generation_of(kind: str) -> int:
        for path in [*(workdir / "history").glob("journal.*.jsonl"), workdir / "journal.jsonl"]:
            records = [json.loads(line) for line in path.read_text().splitlines()]
            if any(r["e"] == kind and r.get("id") == 0 for r in records):
                return int(path.name.split(".")[1]) if path.parent.name == "history" else 1 << 30
        raise AssertionError(f"no {kind} record of task 0")

    assert generation_of("start") < generation_of("end"), "the long run crosses a compaction"
    events = json.loads((workdir / "timeline.json").read_text())["traceEvents"]
    runs = [(e["pid"], e["ts"], e["ts"] + e["dur"]) for e in events if e["ph"] == "X"]
    assert len(runs) == 61
    (pid, track), = counter_tracks(events).items()
    for ts, value in track:
        assert value == sum(1 for p, t0, t1 in runs if p == pid and t0 <= ts < t1), ts
    assert max(value for _, value in track) == 2 and track[-1][1] == 0
    x = [e for e in events if e["ph"] == "X"]
    assert all({"id", "status", "rc", "reason", "attempt"} <= set(e["args"]) for e in x)
    assert {e["args"]["attempt"] for e in x} == {1}


def test_a_pytaskfarmer_work_directory_made_by_pytaskfarmer_itself(tmp_path: Path,
                                                                  clean_home: dict[str, str]) -> None:
    script = PTF_VENV / "bin" / "pytaskfarmer.py"
    if not script.exists():
        pytest.skip(f"no PyTaskFarmer 0.1.0 in {PTF_VENV}: bash bench/setup-baselines.sh")
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 1", "sleep 1", "sleep 0.5", "false"])
    ran = subprocess.run([PTF_VENV / "bin" / "python", script, tasks, "--proc", "2"], cwd=tmp_path, env=clean_home,
                         capture_output=True, text=True, timeout=HANG)
    assert ran.returncode == 0, ran.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    assert not (workdir / "journal.jsonl").exists()
    before = state_of(workdir)
    found = report_json(tasks, env=clean_home)
    assert (found["tasks"], found["finished"], found["failed"]) == (4, 3, 1)
    assert found["runs"]["finished"] == 3 and found["runs"]["failed"] == 1
    (place,) = found["utilization"]["places"]
    assert place["where"].startswith("PyTaskFarmer pid") and place["slots"] == 2 and place["runs"] == 4
    assert place["busy_slot_s"] == pytest.approx(2.5, abs=0.3)
    assert found["wall_s"] == pytest.approx(1.5, abs=0.4)
    assert report("-w", workdir, "-o", tmp_path / "ptf.png", env=clean_home).returncode == 0
    assert state_of(workdir) == before


def test_o_without_matplotlib_says_how_to_install_it(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    assert run_farmer(tasks, env=clean_home).returncode == 0
    # A stand-in for a Python without matplotlib: a package of that name that cannot be imported.
    stub = tmp_path / "no-matplotlib" / "matplotlib"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError(\"No module named 'matplotlib'\")\n")
    env = clean_home | {"PYTHONPATH": os.pathsep.join(filter(None, [str(stub.parent),
                                                                     clean_home.get("PYTHONPATH")]))}
    result = report(tasks, "-o", tmp_path / "r.png", env=env)
    assert_one_line_error(result, "-o needs matplotlib", "pip install 'mpifarmer[report]'")
    assert result.stdout == "" and not (tmp_path / "r.png").exists()
    assert report(tasks, env=env).returncode == 0, "the text needs no matplotlib"


def test_bad_report_input_is_one_line_and_exit_2(tmp_path: Path, clean_home: dict[str, str]) -> None:
    assert_one_line_error(report(tmp_path / "none.txt", env=clean_home), "none.txt_workdir", "does not exist")
    assert_one_line_error(report(env=clean_home), "give the task list or -w/--workdir")
    assert_one_line_error(report("-w", tmp_path, env=clean_home), "is not a work directory")
    assert_one_line_error(report("-w", tmp_path, "-o", "x.pdf", env=clean_home), "-o x.pdf", ".png, .svg, .html")
    assert_one_line_error(report("-w", tmp_path, "--bogus", env=clean_home), "--bogus")


def imported_modules(*args: str | os.PathLike[str], env: dict[str, str], cwd: Path) -> set[str]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "mpifarmer", *map(str, args)], env=env,
                            cwd=cwd, capture_output=True, text=True, timeout=HANG)
    assert result.returncode in (0, 1), result.stderr
    return {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


def test_neither_the_farmer_nor_the_text_report_imports_matplotlib(tmp_path: Path,
                                                                   clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true", "true"])
    farmer = imported_modules(tasks, env=clean_home, cwd=tmp_path)
    assert "mpifarmer.store.views" in farmer, "importtime lists the farmer's modules"
    # The farmer imports the light progress modules of mpifarmer.observe (its progress line), never the report's.
    report_modules = ("matplotlib", "numpy", "mpifarmer.observe.report", "mpifarmer.observe.plots",
                      "mpifarmer.observe.usage", "mpifarmer.observe.runs")
    assert not {name for name in farmer if name.startswith(report_modules)}
    text = imported_modules("report", tasks, env=clean_home, cwd=tmp_path)
    assert "mpifarmer.observe.report" in text
    assert not {name for name in text if name.startswith(("matplotlib", "numpy", "mpifarmer.observe.plots"))}
