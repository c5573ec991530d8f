"""Cores and GPUs per task with real farmers, real spawners and real mpiexec, on a node without GPUs.

The GPUs are a fake inventory (``--gpus 0,1,2,3``, or a rank's own ``CUDA_VISIBLE_DEVICES``):
nothing here touches a GPU, but each task records the variables it was given, the CPUs it was
bound to (``Cpus_allowed_list`` of its own process) and when it ran, and the test proves that no
two tasks that ran at the same time shared a GPU or a CPU. This machine has 2 CPUs, so CPU
binding is checked with tasks of 1 and 2 cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from farmhelpers import HANG, MPIEXEC, assert_one_line_error, journal, run_farmer, wait_for, write_list

from mpifarmer.scheduling.binding import parse_cpulist

CPUS = sorted(os.sched_getaffinity(0))

#: What each task appends to the output file, one line per run, fields separated by |.
RECORD = ('t0=$(date +%s.%N); sleep {seconds}; echo "$PROC_NUMBER|$t0|$(date +%s.%N)|$CUDA_VISIBLE_DEVICES|'
          '$MPIFARMER_GPUS|$MPIFARMER_CPUS|$OMP_NUM_THREADS|$(grep Cpus_allowed_list /proc/self/status | cut -f2)|'
          '$HIP_VISIBLE_DEVICES|$ROCR_VISIBLE_DEVICES|$ZE_AFFINITY_MASK" >> {out}')


def jsonl_list(path: Path, out: Path, items: list[dict]) -> Path:
    return write_list(path, [json.dumps({"cmd": RECORD.format(seconds=item.pop("seconds"), out=out), **item})
                             for item in items])


def runs(out: Path) -> dict[int, dict]:
    found = {}
    for line in out.read_text().splitlines():
        task, t0, t1, cuda, gpus, cpus, threads, allowed, hip, rocr, ze = line.split("|")
        found[int(task)] = {"t0": float(t0), "t1": float(t1), "cuda": cuda, "gpus": gpus, "cpus": cpus,
                            "threads": threads, "allowed": allowed, "hip": hip, "rocr": rocr, "ze": ze}
    return found


def overlapping_pairs(found: dict[int, dict]) -> list[tuple[int, int]]:
    tasks = sorted(found)
    return [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1:]
            if found[a]["t0"] < found[b]["t1"] and found[b]["t0"] < found[a]["t1"]]


def gpu_set(text: str) -> set[str]:
    return {gpu for gpu in text.split(",") if gpu}


def check_no_gpu_shared(found: dict[int, dict], wanted: dict[int, int]) -> None:
    """Each task had the GPUs it asked for, in every variable, and none that a task running at the
    same time had; a task that asked for none saw none."""
    for task, run in found.items():
        assert len(gpu_set(run["gpus"])) == wanted[task], (task, run)
        assert run["cuda"] == run["hip"] == run["rocr"] == run["ze"] == run["gpus"], (task, run)
    pairs = overlapping_pairs(found)
    assert pairs, "no two tasks ran at the same time: the test proves nothing"
    for a, b in pairs:
        assert not gpu_set(found[a]["gpus"]) & gpu_set(found[b]["gpus"]), (a, found[a], b, found[b])


def check_no_cpu_shared(found: dict[int, dict], wanted: dict[int, int]) -> None:
    """Each task was bound to as many CPUs as it asked for, the ones MPIFARMER_CPUS names, with
    as many OpenMP threads, and no two tasks running at the same time shared a CPU."""
    for task, run in found.items():
        allowed = parse_cpulist(run["allowed"])
        assert allowed == parse_cpulist(run["cpus"]) and len(allowed) == wanted[task], (task, run)
        assert set(allowed) <= set(CPUS) and run["threads"] == str(wanted[task]), (task, run)
    pairs = overlapping_pairs(found)
    assert pairs, "no two tasks ran at the same time: the test proves nothing"
    for a, b in pairs:
        assert not set(parse_cpulist(found[a]["allowed"])) & set(parse_cpulist(found[b]["allowed"])), (a, b)


def check_records(workdir: Path, found: dict[int, dict]) -> None:
    """The journal's end records and the timeline carry each run's CPUs and GPUs."""
    ends = {record["id"]: record for record in journal(workdir) if record["e"] == "end"}
    for task, run in found.items():
        assert ends[task].get("gpus", "") == run["gpus"] and ends[task].get("cpus", "") == run["cpus"], ends[task]
    events = json.loads((workdir / "timeline.json").read_text())["traceEvents"]
    shown = {event["args"]["id"]: event["args"] for event in events if event.get("ph") == "X"}
    for task, run in found.items():
        assert shown[task].get("gpus", "") == run["gpus"] and shown[task].get("cpus", "") == run["cpus"]


#: GPUs asked for: the default of 1, some 2, some none.
GPU_TASKS = [{"seconds": 0.4}, {"seconds": 0.5, "gpus": 2}, {"seconds": 0.3}, {"seconds": 0.4, "gpus": 0},
             {"seconds": 0.5}, {"seconds": 0.3, "gpus": 2}, {"seconds": 0.4}, {"seconds": 0.3},
             {"seconds": 0.5, "gpus": 3}, {"seconds": 0.3}, {"seconds": 0.4, "gpus": 0}, {"seconds": 0.3}]


def gpus_wanted(items: list[dict]) -> dict[int, int]:
    return {task: item.get("gpus", 1) for task, item in enumerate(items)}


def test_tasks_get_gpus_no_running_task_has(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = jsonl_list(tmp_path / "tasks.jsonl", out, [dict(item) for item in GPU_TASKS])
    result = run_farmer(tasks, "-t", "jsonl", "-n", "4", "--gpus", "0,1,2,3", "--gpus-per-task", "1", cwd=tmp_path,
                        env=clean_home)
    assert result.returncode == 0, result.stderr
    assert "found " in result.stderr and "4 GPUs 0,1,2,3 (--gpus)" in result.stderr, result.stderr
    found = runs(out)
    assert sorted(found) == list(range(len(GPU_TASKS)))
    check_no_gpu_shared(found, gpus_wanted(GPU_TASKS))
    check_records(tmp_path / "tasks.jsonl_workdir", found)


#: Cores asked for: the default of 1, and a task that takes both of this machine's CPUs (if it has 2).
CORE_TASKS = [{"seconds": 0.3}, {"seconds": 0.4}, {"seconds": 0.3, "cores": len(CPUS[:2])}, {"seconds": 0.3},
              {"seconds": 0.4}, {"seconds": 0.3}, {"seconds": 0.3, "cores": len(CPUS[:2])}, {"seconds": 0.4},
              {"seconds": 0.3}, {"seconds": 0.3}]


@pytest.mark.skipif(len(CPUS) < 2, reason="binding two tasks apart needs 2 CPUs")
def test_tasks_are_bound_to_cpus_no_running_task_has(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = jsonl_list(tmp_path / "tasks.jsonl", out, [dict(item) for item in CORE_TASKS])
    result = run_farmer(tasks, "-t", "jsonl", "--cores-per-task", "1", cwd=tmp_path, env=clean_home)
    assert result.returncode == 0, result.stderr
    assert f"{len(CPUS)} workers of 1 core each" in result.stderr, result.stderr
    found = runs(out)
    assert sorted(found) == list(range(len(CORE_TASKS)))
    check_no_cpu_shared(found, {task: item.get("cores", 1) for task, item in enumerate(CORE_TASKS)})
    check_records(tmp_path / "tasks.jsonl_workdir", found)


def mpmd(tmp_path: Path, *args: str) -> list[str]:
    """Two ranks, each its own farmer process on a node of its own in small: rank 0 may use CPU 0 and
    GPUs 0 and 1, rank 1 CPU 1 and GPUs 2 and 3 (each learns its GPUs from its own CUDA_VISIBLE_DEVICES,
    as under Slurm, and its CPUs from its affinity mask, set by taskset)."""
    farmer = [sys.executable, "-m", "mpifarmer", *args]
    return [MPIEXEC, "-n", "1", "-env", "CUDA_VISIBLE_DEVICES", "0,1", "taskset", "-c", str(CPUS[0]), *farmer, ":",
            "-n", "1", "-env", "CUDA_VISIBLE_DEVICES", "2,3", "taskset", "-c", str(CPUS[1]), *farmer]


@pytest.mark.skipif(MPIEXEC is None or len(CPUS) < 2, reason="needs mpiexec and 2 CPUs")
@pytest.mark.parametrize("bound", [True, False], ids=["cores-and-gpus", "two-gpu-tasks-per-rank"])
def test_every_rank_hands_out_its_own_node_s_cpus_and_gpus_in_mpi_mode(tmp_path: Path, clean_home: dict[str, str],
                                                                       bound: bool) -> None:
    """Bound: each rank has one CPU, so one task at a time, bound to it, with one of its GPUs.
    Not bound (-n 2): two tasks at a time on each rank, each with a GPU of its own."""
    out = tmp_path / "out"
    items = [{"seconds": 0.3 + (task % 3) / 10} for task in range(12)]
    tasks = jsonl_list(tmp_path / "tasks.jsonl", out, [dict(item) for item in items])
    options = ["--cores-per-task", "1"] if bound else ["-n", "2"]
    argv = mpmd(tmp_path, tasks.name, "-t", "jsonl", *options, "--gpus-per-task", "1")
    result = subprocess.run(argv, cwd=tmp_path, env=clean_home, capture_output=True, text=True, timeout=HANG)
    assert result.returncode == 0, result.stderr
    found = runs(out)
    assert sorted(found) == list(range(len(items)))
    # Globally, across both ranks: the ranks' inventories are disjoint, and so is every pair of runs.
    check_no_gpu_shared(found, dict.fromkeys(found, 1))
    if bound:
        check_no_cpu_shared(found, dict.fromkeys(found, 1))
    ends = {record["id"]: record for record in journal(tmp_path / "tasks.jsonl_workdir") if record["e"] == "end"}
    for task, run in found.items():
        rank = ends[task]["rank"]
        assert run["gpus"] in (("0", "1") if rank == 0 else ("2", "3")), (task, rank, run)
        assert run["allowed"] == str(CPUS[rank]) and run["cpus"] == (str(CPUS[rank]) if bound else ""), (task, run)
    assert {record["rank"] for record in ends.values()} == {0, 1}
    if not bound:  # two at a time on one rank, each with a GPU of its own
        assert any(ends[a]["rank"] == ends[b]["rank"] for a, b in overlapping_pairs(found))
    assert "rank 1 on" in result.stderr and "GPUs 2,3 (CUDA_VISIBLE_DEVICES)" in result.stderr, result.stderr
    check_records(tmp_path / "tasks.jsonl_workdir", found)


def test_a_task_asking_for_more_than_the_node_has_is_an_input_error_at_start(tmp_path: Path,
                                                                             clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.jsonl", ['{"cmd": "true"}', "# the big one:", '{"cmd": "true", "gpus": 5}'])
    result = run_farmer(tasks, "-t", "jsonl", "--gpus", "0,1,2,3", cwd=tmp_path, env=clean_home)
    assert_one_line_error(result, f"{tasks}:3: asks for 5 GPUs, and this farmer has 4 GPUs (--gpus)")
    assert not (tmp_path / "tasks.jsonl_workdir").exists()
    tasks.write_text(f'{{"cmd": "true", "cores": {len(CPUS) + 1}}}\n')
    result = run_farmer(tasks, "-t", "jsonl", "--cores-per-task", "1", cwd=tmp_path, env=clean_home)
    assert_one_line_error(result, f"{tasks}:1: asks for {len(CPUS) + 1} cores, and this farmer may use {len(CPUS)} CPU")
    result = run_farmer(tasks, "-t", "jsonl", "--cores-per-task", str(len(CPUS) + 1), cwd=tmp_path, env=clean_home)
    assert_one_line_error(result, f"--cores-per-task {len(CPUS) + 1}: this farmer may use {len(CPUS)} CPU")
    result = run_farmer(tasks, "--gpus-per-task", "1", cwd=tmp_path, env=dict(clean_home, CUDA_VISIBLE_DEVICES=""))
    assert_one_line_error(result, "--gpus-per-task 1: this farmer has no GPUs (CUDA_VISIBLE_DEVICES is empty)")
    assert not (tmp_path / "tasks.jsonl_workdir").exists()


def test_a_line_appended_asking_for_too_much_is_not_taken(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """As a bad line appended while the farm runs: reported, and neither it nor a line after it runs."""
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.jsonl", [json.dumps({"cmd": f"sleep 1.5; echo 0 >> {out}"})])
    farmer = subprocess.Popen([sys.executable, "-m", "mpifarmer", tasks, "-t", "jsonl", "--gpus", "0"],
                              cwd=tmp_path, env=clean_home, stderr=subprocess.PIPE, text=True)
    try:
        journal_file = tmp_path / "tasks.jsonl_workdir" / "journal.jsonl"
        wait_for(lambda: b'"claim"' in _read(journal_file), what="the first claim")
        with tasks.open("a") as stream:
            stream.write(json.dumps({"cmd": f"echo 1 >> {out}", "gpus": 2}) + "\n")
            stream.write(json.dumps({"cmd": f"echo 2 >> {out}"}) + "\n")
        _, stderr = farmer.communicate(timeout=HANG)
    finally:
        farmer.kill()
    assert farmer.returncode == 0, stderr
    assert f"{tasks}:2: asks for 2 GPUs, and this farmer has 1 GPU (--gpus)" in stderr, stderr
    assert out.read_text().split() == ["0"]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
