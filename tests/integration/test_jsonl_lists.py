"""The jsonl task list with real farmers: per-task options end to end, appended and bad lines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from farmhelpers import assert_one_line_error, journal, run_farmer, start_farmer, view, wait_for, write_list


def jsonl(path: Path, items: list[dict | str]) -> Path:
    return write_list(path, [item if isinstance(item, str) else json.dumps(item) for item in items])


def ends(workdir: Path) -> dict[int, list[dict]]:
    found: dict[int, list[dict]] = {}
    for record in journal(workdir):
        if record["e"] == "end":
            found.setdefault(record["id"], []).append(record)
    return found


def test_per_task_options_travel_to_the_run_and_win_over_the_command_line(tmp_path: Path,
                                                                           clean_home: dict[str, str]) -> None:
    (tmp_path / "sub").mkdir()
    runs = tmp_path / "runs"
    tasks = jsonl(tmp_path / "tasks.jsonl", [
        "# comments and blank lines are skipped",
        {"cmd": "pwd > where; echo $COLOUR > colour", "cwd": "sub", "env": {"COLOUR": "teal"}, "name": "first"},
        "",
        {"cmd": "sleep 30", "timeout": 0.3, "retries": 0},  # its own limit, and no retries
        {"cmd": f"echo x >> {runs}; [ $(wc -l < {runs}) -ge 3 ]", "retries": 2},  # more than the default
        {"cmd": "sleep 0.5"},  # the command line's limit of 60 s: ends in time
        {"cmd": "true", "cores": 4},  # more than the pool's 2 slots: failed at once
    ])
    result = run_farmer(tasks, "-t", "jsonl", "-n", "2", "--task-timeout", "60", "--retries", "1", cwd=tmp_path,
                        env=clean_home)
    assert result.returncode == 1, result.stderr
    workdir = tmp_path / "tasks.jsonl_workdir"
    assert (tmp_path / "sub" / "where").read_text().strip() == str(tmp_path / "sub")
    assert (tmp_path / "sub" / "colour").read_text() == "teal\n"
    found = ends(workdir)
    assert [(r["st"], r["why"]) for r in found[1]] == [("failed", "timed-out")]
    assert [r["st"] for r in found[2]] == ["retrying", "retrying", "finished"]
    assert [r["st"] for r in found[3]] == ["finished"]
    assert [(r["st"], r["why"]) for r in found[4]] == [("failed", "unavailable")]
    assert sorted(view(workdir, "failed")) == [1, 4]
    events = json.loads((workdir / "timeline.json").read_text())["traceEvents"]
    assert "first (task 0)" in {event.get("name") for event in events}


def test_a_task_whose_directory_does_not_exist_fails_saying_so(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = jsonl(tmp_path / "tasks.jsonl", [{"cmd": "true", "cwd": "nowhere"}])
    result = run_farmer(tasks, "-t", "jsonl", cwd=tmp_path, env=clean_home)
    assert result.returncode == 1, result.stderr
    assert "cannot run in directory 'nowhere'" in result.stderr


BAD = [
    ('{"cmd": "a"}\n{"cmd": "b"\n', 2, "is not a JSON object"),
    ('{"cmd": "a"}\n# c\n\n["b"]\n', 4, "is a JSON array"),
    ('{"timeout": 3}\n', 1, "key 'cmd' is missing"),
    ('{"cmd": "a", "retry": 2}\n', 1, "key 'retry' is unknown; did you mean 'retries'?"),
    ('{"cmd": "a", "timeout": "3"}\n', 1, "key 'timeout'"),
    ('{"cmd": "a", "retries": -1}\n', 1, "key 'retries'"),
    ('{"cmd": "a", "env": {"A": 1}}\n', 1, "key 'env'"),
    ('{"cmd": "a", "cwd": null}\n', 1, "key 'cwd'"),
    ('{"cmd": "a", "name": 5}\n', 1, "key 'name'"),
    ('{"cmd": "a", "cores": 0}\n', 1, "key 'cores'"),
    ('{"cmd": "a", "gpus": 1.5}\n', 1, "key 'gpus'"),
]


@pytest.mark.parametrize(("content", "line", "expected"), BAD)
def test_a_bad_line_is_exit_2_in_one_line_naming_file_line_and_key_and_nothing_is_written(
        tmp_path: Path, clean_home: dict[str, str], content: str, line: int, expected: str) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(content)
    assert_one_line_error(run_farmer(tasks, "-t", "jsonl", env=clean_home), f"tasks.jsonl:{line}:", expected)
    assert not (tmp_path / "tasks.jsonl_workdir").exists()


def test_a_bad_line_appended_between_runs_leaves_the_work_directory_unchanged(tmp_path: Path,
                                                                              clean_home: dict[str, str]) -> None:
    tasks = jsonl(tmp_path / "tasks.jsonl", [{"cmd": "true"}])
    assert run_farmer(tasks, "-t", "jsonl", env=clean_home).returncode == 0
    workdir = tmp_path / "tasks.jsonl_workdir"
    before = {path.name: path.read_bytes() for path in workdir.iterdir() if path.is_file()}
    with tasks.open("a") as stream:
        stream.write('{"cmd": "true"}\n{"cmd": "true", "timeout": 0}\n')
    assert_one_line_error(run_farmer(tasks, "-t", "jsonl", env=clean_home), "tasks.jsonl:3:", "key 'timeout'")
    assert {path.name: path.read_bytes() for path in workdir.iterdir() if path.is_file()} == before


def test_lines_appended_while_the_farm_runs_are_run_up_to_a_bad_one(tmp_path: Path,
                                                                   clean_home: dict[str, str]) -> None:
    gate = tmp_path / "gate"
    tasks = jsonl(tmp_path / "tasks.jsonl", [{"cmd": f"while [ ! -e {gate} ]; do sleep 0.05; done"}])
    farmer = start_farmer(tasks, "-t", "jsonl", env=clean_home)
    try:
        wait_for(lambda: (tmp_path / "tasks.jsonl_workdir" / "journal.jsonl").exists(), what="the farm's start")
        with tasks.open("a") as stream:
            stream.write(json.dumps({"cmd": "echo appended", "name": "late"}) + "\n"
                         + '{"cmd": "echo never", "bogus": 1}\n' + json.dumps({"cmd": "echo after"}) + "\n")
        time.sleep(0.2)
        gate.touch()
        _, err = farmer.communicate(timeout=60)
    finally:
        farmer.kill()
    assert farmer.returncode == 0, err
    assert "tasks.jsonl:3: key 'bogus' is unknown" in err
    workdir = tmp_path / "tasks.jsonl_workdir"
    assert sorted(view(workdir, "finished")) == [0, 1]  # the bad line and those after it wait for a restart
    assert_one_line_error(run_farmer(tasks, "-t", "jsonl", env=clean_home), "tasks.jsonl:3:", "'bogus'")
